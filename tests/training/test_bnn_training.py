"""BNN loss, balanced batches, MoCo queue / momentum / augmentation, and smoke training on real S1/S2 pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models import load
from sarcoreg.models.bnn import BNN
from sarcoreg.training.bnn_losses import balanced_indices, bnn_loss
from sarcoreg.training.bnn_train import BNNTrainConfig, best_threshold, classification_metrics, train_bnn
from sarcoreg.training.moco import MoCo, MoCoConfig, moco_augment, pretrain_moco, transfer_to_bnn
from sarcoreg.training.pair_datasets import AlignedPatches, bigearthnet_npz, split_pool

from tests.conftest import shared_data

torch.set_num_threads(1)


def test_bnn_loss_on_hand_made_distances() -> None:
    h = torch.tensor([0.0, 0.5, 1.0, 0.2])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss, parts = bnn_loss(h, y)
    # l_p = (0 + 0.25) / 2 = 0.125, l_n = (0 + 0.64) / 2 = 0.32, alpha = 1 -> (0.125 + 0.32) / 2
    assert parts["l_p"] == pytest.approx(0.125)
    assert parts["l_n"] == pytest.approx(0.32)
    assert float(loss) == pytest.approx(0.2225)
    loss3, _ = bnn_loss(h, y, alpha=3.0)
    assert float(loss3) == pytest.approx((0.125 + 3 * 0.32) / 4)
    perfect, _ = bnn_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert float(perfect) == 0.0
    with pytest.raises(ValueError, match="distances and labels"):
        bnn_loss(h, y[:3])


def test_balanced_indices() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(5), 4)
    s, o, y = balanced_indices(20, 32, rng, groups)
    assert s.shape == o.shape == y.shape == (32,)
    assert y.sum() == 16
    assert np.array_equal(s[y == 1], o[y == 1])
    assert np.all(groups[s[y == 0]] != groups[o[y == 0]])
    with pytest.raises(ValueError, match="one source image"):
        balanced_indices(4, 8, rng, np.zeros(4, int))


def test_threshold_and_metrics() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    h = np.array([0.1, 0.2, 0.6, 0.5, 0.9, 1.0])
    t = best_threshold(labels, h)
    m = classification_metrics(labels, h, t)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert classification_metrics(labels, h, 0.55) == pytest.approx(
        {"accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3}
    )


def test_moco_momentum_update_and_queue() -> None:
    torch.manual_seed(0)
    moco = MoCo("vgg11", dim=16, queue_size=10, m=0.99, shuffle_groups=2)
    k_before = [p.detach().clone() for p in moco.encoder_k.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(k_before, moco.encoder_q.parameters(), strict=True))
    with torch.no_grad():  # move the query encoder away from the key encoder
        for p in moco.encoder_q.parameters():
            p.add_(1.0)
    moco.momentum_update()
    for kb, pk in zip(k_before, moco.encoder_k.parameters(), strict=True):
        torch.testing.assert_close(pk - kb, torch.full_like(kb, 0.01), atol=1e-6, rtol=0)  # (1 - m) * 1
    assert not any(p.requires_grad for p in moco.encoder_k.parameters())
    q0 = moco.queue.clone()
    keys = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    moco.enqueue(keys)
    assert int(moco.queue_ptr) == 6
    torch.testing.assert_close(moco.queue[:, :6], keys.T)
    torch.testing.assert_close(moco.queue[:, 6:], q0[:, 6:])
    moco.enqueue(keys)  # wraps: slots 6..9 then 0..1
    assert int(moco.queue_ptr) == 2
    torch.testing.assert_close(moco.queue[:, 6:], keys[:4].T)
    torch.testing.assert_close(moco.queue[:, :2], keys[4:].T)
    with pytest.raises(ValueError, match="larger than the queue"):
        moco.enqueue(torch.randn(11, 16))


def test_moco_forward_logits_and_augment() -> None:
    torch.manual_seed(1)
    moco = MoCo("vgg11", dim=16, queue_size=32, tau=0.07, shuffle_groups=4)
    x = torch.rand(8, 1, 64, 64)
    gen = torch.Generator().manual_seed(0)
    v1, v2 = moco_augment(x, gen), moco_augment(x, gen)
    assert v1.shape == x.shape and float(v1.min()) >= 0.0 and float(v1.max()) <= 1.0
    assert not torch.allclose(v1, v2)
    logits, labels = moco(v1, v2)
    assert logits.shape == (8, 33) and labels.shape == (8,) and int(labels.abs().sum()) == 0
    assert float(logits.detach().abs().max()) <= 1.0 / 0.07 + 1e-3  # cosine / tau
    assert int(moco.queue_ptr) == 8


def _real_pools() -> tuple[AlignedPatches, AlignedPatches]:
    """Tiny real pools: one 32 x 32 crop per S1/S2 scene, 12 validation scenes."""
    pool = bigearthnet_npz(shared_data("s1s2", "bigearthnet-configilm"), patch_size=32, crops_per_pair=1, seed=0)
    return split_pool(pool, 12 / 54, seed=0)


def test_smoke_training_np_and_moco_on_real_pairs(tmp_path: Path) -> None:
    train, val = _real_pools()
    assert len(np.unique(val.groups)) >= 2 and not set(train.groups) & set(val.groups)
    mcfg = MoCoConfig(queue_size=32, batch_size=8, epochs=1, max_steps=3, threads=1, device="cpu")
    res_s = pretrain_moco(train.sar, tmp_path / "moco", "sar", mcfg, progress=False, log=lambda s: None)
    res_o = pretrain_moco(train.opt, tmp_path / "moco", "opt", mcfg, progress=False, log=lambda s: None)
    assert res_s.steps == 3 and np.isfinite(res_s.final_loss)
    # the transferred backbone is the pre-trained one, the projection head stays as it was
    net = BNN("vgg11")
    head_before = net.sar_tower.head.weight.detach().clone()
    transfer_to_bnn(net, res_s.encoder_path, res_o.encoder_path)
    enc = torch.load(res_s.encoder_path, weights_only=True)["state"]
    torch.testing.assert_close(net.sar_tower.backbone.state_dict()["features.0.0.weight"], enc["features.0.0.weight"])
    assert torch.equal(net.sar_tower.head.weight, head_before)
    with pytest.raises(ValueError, match="SAR and an optical"):
        transfer_to_bnn(net, res_o.encoder_path, res_s.encoder_path)
    for init in ("np", "moco"):
        cfg = BNNTrainConfig(init=init, moco_sar=res_s.encoder_path, moco_opt=res_o.encoder_path, batch_size=8,
                             epochs=1, max_steps=3, threads=1, device="cpu")
        res = train_bnn(train, val, tmp_path / init, cfg, progress=False, log=lambda s: None)
        assert res.steps == 3 and res.best_epoch == 1
        for k in ("accuracy", "precision", "recall", "fpr95", "auc", "threshold"):
            assert np.isfinite(res.best_metrics[k])
        for f in ("best.onnx", "best_inference.pt", "last.pt", "roc_val.png", "history.json"):
            assert (tmp_path / init / f).is_file()
        assert load(tmp_path / init / "best.onnx", device="cpu").patch_size == 32
    hist = json.loads((tmp_path / "moco" / "history_opt.json").read_text())["history"]
    assert hist[-1]["step"] == 3


def test_bnn_training_resumes(tmp_path: Path) -> None:
    train, val = _real_pools()
    cfg = BNNTrainConfig(batch_size=4, epochs=1, steps_per_epoch=2, threads=1, device="cpu", export_onnx=False)
    train_bnn(train, val, tmp_path, cfg, progress=False, log=lambda s: None)
    cfg.epochs = 2
    res = train_bnn(train, val, tmp_path, cfg, resume=tmp_path / "last.pt", progress=False, log=lambda s: None)
    assert res.epochs_run == 2 and res.steps == 4 and len(res.history) == 2

