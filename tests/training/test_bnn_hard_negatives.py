"""BNN hard negatives (the same place shifted by 2-8 px) on real volkov Sentinel-1/2 crops (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sarcoreg.models.bnn import BNN
from sarcoreg.training.bnn_dense import BNNDescriptors, dense_matching
from sarcoreg.training.bnn_losses import balanced_indices, bnn_loss, to_tensor
from sarcoreg.training.bnn_train import make_batch, pair_distances
from sarcoreg.training.metrics import auc
from sarcoreg.training.pair_datasets import AlignedPatches, eval_pairs_near, shift_offsets, with_margin
from sarcoreg.training.patches import AlignedPair

from tests.conftest import shared_data

torch.set_num_threads(1)

MARGIN = 8


def _scene(scene_id: str = "003") -> AlignedPair:
    """One refined volkov training scene prepared as ``pairs_from_spec("volkov")`` prepares it."""
    from sarcoreg.training.real_pairs import _prepare
    from sarcoreg.training.refine_alignment import aligned_pair

    sc = aligned_pair(scene_id, shared_data("s1s2", "volkov-1024"))
    sar = np.where(sc.valid & (sc.sar > 0), sc.sar.astype(np.float32), np.nan)
    return _prepare(sc.optical.transpose(2, 0, 1).astype(np.float32), sar, f"volkov/{scene_id}")


def _pool(pair: AlignedPair, patch: int, crops: int, seed: int = 0) -> AlignedPatches:
    from sarcoreg.training.real_pairs import crop_pool

    return with_margin(crop_pool([pair], patch + 2 * MARGIN, crops, seed), MARGIN)


def _offset_of(window: np.ndarray, context: np.ndarray, m: int) -> tuple[int, int] | None:
    """The ``(dx, dy)`` with ``context[m + dy :, m + dx :]`` equal to ``window`` (searched over ``|d| <= m``)."""
    p = window.shape[0]
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            if np.array_equal(context[m + dy : m + dy + p, m + dx : m + dx + p], window):
                return dx, dy
    return None


def test_shift_offsets_cover_the_ring() -> None:
    d = shift_offsets(4000, np.random.default_rng(0), 2, 8)
    cheb = np.abs(d).max(axis=1)
    assert cheb.min() == 2 and cheb.max() == 8
    assert set(np.unique(d[:, 0])) == set(range(-8, 9)) and set(np.unique(d[:, 1])) == set(range(-8, 9))
    assert abs(float((d[:, 0] > 0).mean()) - 0.5) < 0.05  # every direction


def test_hard_negatives_are_the_same_place_shifted_and_positives_identical() -> None:
    pair = _scene()
    real = _pool(pair, 32, 24)
    # SAR = optical: a positive must be two pixel-identical crops, a hard negative the same image moved
    same = AlignedPatches(real.opt, real.opt.copy(), np.r_[np.zeros(12, np.int64), np.ones(12, np.int64)],
                          margin=MARGIN)
    rng = np.random.default_rng(1)
    sar, opt, y, shift = make_batch(same, 32, rng, hard_negatives=0.5)
    assert sar.shape == opt.shape == (32, 32, 32) and int(y.sum()) == 16
    assert all(np.array_equal(sar[k], opt[k]) for k in np.flatnonzero(y == 1))
    hard = np.flatnonzero(np.abs(shift).max(axis=1) > 0)
    assert len(hard) == 8 and np.all(y[hard] == 0)
    for k in hard:
        assert not np.array_equal(sar[k], opt[k])
        # find where the optical crop sits in the SAR patch's own context (SAR = optical here)
        i = next(i for i in range(len(same)) if np.array_equal(same.sar[i, MARGIN:-MARGIN, MARGIN:-MARGIN], sar[k]))
        found = _offset_of(opt[k], same.opt[i], MARGIN)
        assert found is not None and 2 <= max(abs(found[0]), abs(found[1])) <= 8
        assert found == tuple(shift[k])
    far = np.flatnonzero((y == 0) & (np.abs(shift).max(axis=1) == 0))
    assert len(far) == 8
    # on the real pool the positives are the aligned centre crops
    s2, o2, y2, _ = make_batch(real, 8, np.random.default_rng(2), hard_negatives=1.0)
    c = real.centre()
    for k in np.flatnonzero(y2 == 1):
        i = next(i for i in range(len(c)) if np.array_equal(c.sar[i], s2[k]))
        assert np.array_equal(c.opt[i], o2[k])


def test_no_hard_negatives_draws_the_batches_of_before() -> None:
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    groups = np.repeat(np.arange(4), 5)
    img = np.random.default_rng(0).integers(0, 256, (20, 16, 16), dtype=np.uint8)
    pool = AlignedPatches(img, img[:, ::-1].copy(), groups)
    for _ in range(3):
        sar, opt, y, shift = make_batch(pool, 12, rng_a, hard_negatives=0.0)
        s, o, y0 = balanced_indices(20, 12, rng_b, groups)
        assert np.array_equal(sar, img[s]) and np.array_equal(opt, pool.opt[o]) and np.array_equal(y, y0)
        assert not shift.any()
    with pytest.raises(ValueError, match="margin"):
        make_batch(pool, 12, rng_a, hard_negatives=0.5)


def test_augmentation_keeps_pairs_aligned_for_hard_negatives() -> None:
    """With hard negatives the per-patch jitter must not shift one patch against the other."""
    from sarcoreg.training.augment import augment_pairs

    pool = _pool(_scene(), 32, 16)
    c = pool.centre()
    same = np.stack([c.opt, c.opt], axis=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = augment_pairs(same, rng, independent_geometry=False)
        for k in range(len(out)):  # blur / gamma / noise only: the best integer offset stays 0
            a, b = out[k, 0].astype(np.float32), out[k, 1].astype(np.float32)
            scores = {(dx, dy): float(np.corrcoef(a[4:-4, 4:-4].ravel(),
                                                  np.roll(b, (dy, dx), (0, 1))[4:-4, 4:-4].ravel())[0, 1])
                      for dx in (-2, -1, 0, 1, 2) for dy in (-2, -1, 0, 1, 2)}
            assert max(scores, key=lambda d: scores[d]) == (0, 0)


def test_descriptor_inner_product_is_minus_h_squared() -> None:
    torch.manual_seed(0)
    net = BNN("vgg11", patch_size=32, width=4).eval()
    x = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    y = np.random.default_rng(1).random((6, 32, 32)).astype(np.float32)
    d = BNNDescriptors(net)
    dot = (d.embed_optical(x) * d.embed_sar(y)).sum(axis=1)
    with torch.no_grad():
        h = net.distance(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]).numpy()
    np.testing.assert_allclose(dot, -(h**2), atol=1e-5)


def test_overfits_scene_003_with_hard_negatives_only() -> None:
    """64 crops of one scene, every negative near-shifted: training-set AUC (positives vs near) > 0.9."""
    scene = _scene()
    pool = _pool(scene, 32, 64)
    torch.manual_seed(0)
    net = BNN("vgg11", patch_size=32, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    rng = np.random.default_rng(0)
    dev = torch.device("cpu")

    def near_auc() -> float:
        c = pool.centre()
        h_pos = pair_distances(net, c.sar, c.opt, dev)
        s, o, _ = eval_pairs_near(pool, 0)
        h_near = pair_distances(net, s, o, dev)
        return auc(np.r_[np.ones(len(h_pos)), np.zeros(len(h_near))], -np.r_[h_pos, h_near])

    before = near_auc()
    for _ in range(150):
        sar, optical, y, _ = make_batch(pool, 32, rng, hard_negatives=1.0)
        loss, _ = bnn_loss(net.distance(to_tensor(optical, dev), to_tensor(sar, dev)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = near_auc()
    assert before < 0.8 and after > 0.9, (before, after)
    # the trained net also finds the true shift in search windows of its training scene
    res = dense_matching(net.eval(), [(scene.a, scene.b)], template=32, search=48, per_pair=8, seed=3)
    assert res.cases == 8 and np.isfinite(res.median_error)
