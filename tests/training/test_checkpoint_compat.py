"""Checkpoints of the hand-written loops (before training/loop.py) still resume, and --init still starts from them.

Each test writes ``last.pt`` exactly as the old loop of its method wrote it (the dict built here
is the old code's ``torch.save`` payload, key by key), then resumes it with today's trainer.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sarcoreg.models.bnn import BNN
from sarcoreg.models.rrlnet import RRLNet
from sarcoreg.models.safe_load import plain_data
from sarcoreg.training.bnn_train import BNNTrainConfig, train_bnn
from sarcoreg.training.loop import CHECKPOINT_FORMAT
from sarcoreg.training.pair_datasets import bigearthnet_npz, split_pool
from sarcoreg.training.patches import PatchSet
from sarcoreg.training.rrlnet_train import TrainConfig, load_initial_weights, train_rrlnet

from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[2]


def _tiny(seed: int, n: int) -> PatchSet:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 2, 64, 64), dtype=np.uint8)
    imgs[: n // 2, 1] = imgs[: n // 2, 0]
    return PatchSet(imgs, np.r_[np.ones(n // 2), np.zeros(n - n // 2)].astype(np.uint8))


def test_rrlnet_resumes_a_last_pt_of_the_hand_written_loop(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, threads=1, export_onnx=False, device="cpu",
                      bn_recalibrate_batches=0)
    net = RRLNet()
    opt = torch.optim.NAdam(net.parameters(), lr=cfg.lr, momentum_decay=4e-3, eps=1e-7)
    rng = np.random.default_rng(cfg.seed)
    rng.random(17)
    row = {"epoch": 1, "step": 2, "loss": 1.5, "val_fpr95": 0.75, "val_auc": 0.6, "val_ncc_fpr95": 0.9, "seconds": 3.0}
    old = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 0, "step": 2,
           "best": {"fpr95": 0.75, "auc": 0.6, "epoch": 1}, "history": [row],
           "rng": plain_data(rng.bit_generator.state), "seconds": 3.0, "config": plain_data(asdict(cfg))}
    torch.save(old, tmp_path / "last.pt")
    cfg.epochs = 2
    lines: list[str] = []
    res = train_rrlnet(_tiny(0, 8), _tiny(1, 4), tmp_path, cfg, resume=tmp_path / "last.pt", progress=False,
                       log=lines.append)
    assert any("resumed" in s and "step 2" in s for s in lines)
    assert res.steps == 4 and res.epochs_run == 2 and [h["epoch"] for h in res.history] == [1, 2]
    assert res.history[0] == row  # the old history is kept
    assert res.best_fpr95 == min(0.75, res.history[1]["val_fpr95"])
    assert res.best_epoch == (2 if res.history[1]["val_fpr95"] < 0.75 else 1)
    new = torch.load(tmp_path / "last.pt", weights_only=True)
    assert new["format"] == CHECKPOINT_FORMAT and new["method"] == "rrlnet" and new["epochs_done"] == 2
    assert new["seconds"] > 3.0  # the old run's time goes on


def test_rrlnet_init_from_the_committed_warm_start_and_an_old_best_pt(tmp_path: Path) -> None:
    """``--init checkpoints/rrlnet-visnir-warmstart.pt`` (fp16) and an old ``best.pt`` start a run."""
    warm = REPO / "checkpoints" / "rrlnet-visnir-warmstart.pt"
    net = RRLNet()
    load_initial_weights(net, warm)
    assert all(v.dtype != torch.float16 for v in net.state_dict().values())
    torch.save({"model": net.state_dict(), "epoch": 3, "metrics": {"val_fpr95": 0.2}}, tmp_path / "old-best.pt")
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, threads=1, export_onnx=False, device="cpu",
                      bn_recalibrate_batches=0, lr=0.0)
    for init in (warm, tmp_path / "old-best.pt"):
        out = tmp_path / init.stem
        res = train_rrlnet(_tiny(0, 4), _tiny(1, 4), out, cfg, init=init, progress=False, log=lambda _s: None)
        assert res.steps == 1
        got = torch.load(out / "best.pt", weights_only=True)["model"]
        # lr 0: the weights are the initial ones (BatchNorm statistics move in a training step)
        key = "tower_a.stages.0.0.0.weight"
        expect = net.state_dict() if init == warm else torch.load(init, weights_only=True)["model"]
        torch.testing.assert_close(got[key], expect[key])


def test_bnn_resumes_a_last_pt_of_the_hand_written_loop(tmp_path: Path) -> None:
    pool = bigearthnet_npz(shared_data("s1s2", "bigearthnet-configilm"), patch_size=32, crops_per_pair=1, seed=0)
    train, val = split_pool(pool, 12 / 54, seed=0)
    cfg = BNNTrainConfig(width=8, batch_size=4, epochs=1, steps_per_epoch=2, threads=1, device="cpu",
                         export_onnx=False)
    net = BNN(cfg.backbone, patch_size=32, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    metrics = {"threshold": 0.5, "accuracy": 0.55, "precision": 0.5, "recall": 0.5, "fpr95": 0.9, "auc": 0.55}
    row = {"epoch": 1, "step": 2, "loss": 1.0, **{f"val_{k}": v for k, v in metrics.items()}, "seconds": 2.0}
    old = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 0, "step": 2,
           "best": {"accuracy": 0.55, "epoch": 1, "metrics": metrics}, "history": [row],
           "rng": plain_data(np.random.default_rng(1).bit_generator.state), "seconds": 2.0,
           "config": plain_data(asdict(cfg))}
    torch.save(old, tmp_path / "last.pt")
    cfg.epochs = 2
    res = train_bnn(train, val, tmp_path, cfg, resume=tmp_path / "last.pt", progress=False, log=lambda _s: None)
    assert res.steps == 4 and res.epochs_run == 2 and len(res.history) == 2
    second = res.history[1]["val_accuracy"]
    assert res.best_metrics["accuracy"] == max(0.55, second)
    assert math.isfinite(res.best_metrics["fpr95"])
    assert torch.load(tmp_path / "last.pt", weights_only=True)["method"] == "bnn"
