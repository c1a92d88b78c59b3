"""The registration protocol of the RRL-Net benchmark (bench/registration_protocol.py) on real pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from patch_scorers import CFOGScorer, NCCScorer, SiftDescScorer  # noqa: E402
from registration_protocol import (  # noqa: E402
    DATA_ROOT,
    ProtocolConfig,
    apply_affine,
    cut_patches,
    detect_keypoints,
    estimate_affine,
    list_pairs,
    load_pair,
    match_nearest,
    prefilter_candidates,
    register_pair,
    rmse_grid,
    rmse_inliers,
    score_matrix,
    summarise,
)


@pytest.fixture(scope="module")
def urban_pair():
    return load_pair("urban", "0003")


def test_data_has_160_test_pairs():
    assert DATA_ROOT.is_dir(), f"shared data missing: {DATA_ROOT}"
    pairs = list_pairs()
    assert len(pairs) == 160
    assert len({s for s, _ in pairs}) == 8


def test_rmse_of_ground_truth_is_zero_and_of_a_shift_is_the_shift(urban_pair):
    shape = urban_pair.target.shape
    m = urban_pair.m_gt
    assert rmse_grid(m, m, shape) == pytest.approx(0.0, abs=1e-9)
    shifted = m.copy()
    shifted[:, 2] += [3.0, 4.0]
    assert rmse_grid(shifted, m, shape) == pytest.approx(5.0, abs=1e-9)


def test_rmse_of_a_rotation_about_the_image_centre_matches_the_formula():
    # Rotating by t about the grid's mean point moves a point at radius r by 2 r sin(t/2), so the
    # RMSE is 2 sin(t/2) sqrt(mean r^2).
    h, w, step = 101, 201, 1
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    c = np.array([xs.mean(), ys.mean()])
    t = np.deg2rad(2.0)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    m_est = np.hstack([rot, (c - rot @ c)[:, None]])
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    r2 = ((xs - c[0]) ** 2 + (ys - c[1]) ** 2).mean()
    assert rmse_grid(m_est, ident, (h, w), step) == pytest.approx(2 * np.sin(t / 2) * np.sqrt(r2), rel=1e-9)
    # Failure (None) counts as identity.
    assert rmse_grid(None, m_est, (h, w), step) == pytest.approx(rmse_grid(ident, m_est, (h, w), step))


def test_rmse_inliers_on_exact_and_shifted_points(urban_pair):
    pts = np.array([[100.0, 100.0], [500.0, 300.0], [800.0, 600.0]])
    ref = apply_affine(urban_pair.m_gt, pts)
    assert rmse_inliers(urban_pair.m_gt, pts, ref) == pytest.approx(0.0, abs=1e-9)
    assert rmse_inliers(urban_pair.m_gt, pts, ref + [0.0, 2.0]) == pytest.approx(2.0)
    assert np.isnan(rmse_inliers(urban_pair.m_gt, pts[:0], ref[:0]))


def test_ransac_recovers_the_ground_truth_from_true_and_false_matches(urban_pair):
    rng = np.random.default_rng(1)
    tgt = rng.uniform([0, 0], [1000, 650], size=(200, 2))
    ref = apply_affine(urban_pair.m_gt, tgt) + rng.normal(0, 0.3, size=(200, 2))
    ref[:80] = rng.uniform([0, 0], [1000, 650], size=(80, 2))  # 40 % outliers
    m, inl = estimate_affine(tgt, ref, 3.0)
    assert m is not None
    assert inl[80:].mean() > 0.95 and inl[:80].mean() < 0.1
    assert rmse_grid(m, urban_pair.m_gt, urban_pair.target.shape) < 0.5
    assert estimate_affine(tgt[:2], ref[:2])[0] is None


def test_summarise_on_hand_made_numbers():
    s = summarise([0.5, 0.8, 2.0, 4.99, 5.0, 100.0], times=[1.0, 2.0, 3.0, 1.0, 1.0, 4.0])
    assert (s["n"], s["n_lt1"], s["n_1to5"], s["n_gt5"], s["n_registered"]) == (6, 2, 2, 2, 4)
    assert s["i_rr_pct"] == pytest.approx(400 / 6)
    assert s["mrmse_all"] == pytest.approx((0.5 + 0.8 + 2.0 + 4.99 + 5.0 + 100.0) / 6)
    assert s["mrmse_registered"] == pytest.approx((0.5 + 0.8 + 2.0 + 4.99) / 4)
    assert s["time_total_s"] == pytest.approx(12.0)
    with pytest.raises(ValueError):
        summarise([1.0, float("nan")])


def test_nearest_neighbour_threshold_and_mutual():
    sim = np.array([[0.9, 0.1, -np.inf], [0.8, 0.2, 0.3], [0.0, 0.1, 0.05]], dtype=np.float32)
    r, t, s = match_nearest(sim, threshold=0.25)
    assert r.tolist() == [0, 1] and t.tolist() == [0, 0]
    r, t, _ = match_nearest(sim, threshold=0.25, mutual=True)
    assert r.tolist() == [0] and t.tolist() == [0]


def test_keypoints_patches_and_prefilter(urban_pair):
    kp = detect_keypoints(urban_pair.target, 150, 64)
    assert len(kp) == 150
    h, w = urban_pair.target.shape
    assert kp.xy[:, 0].min() >= 32 and kp.xy[:, 0].max() <= w - 33
    assert kp.xy[:, 1].min() >= 32 and kp.xy[:, 1].max() <= h - 33
    assert np.all(np.diff(kp.response) <= 0)
    patches = cut_patches(urban_pair.target, kp.xy, 64)
    assert patches.shape == (150, 64, 64) and patches.dtype == np.float32
    x, y = np.rint(kp.xy[0]).astype(int)
    if np.allclose(kp.xy[0], [x, y]):
        assert np.allclose(patches[0][32, 32], urban_pair.target[y, x], atol=1e-5)
    cand = prefilter_candidates(kp.descriptors, kp.descriptors, 5)
    assert cand.shape == (150, 5)
    assert np.all(cand[:, 0] == np.arange(150))  # a descriptor is nearest to itself


@pytest.mark.parametrize("scorer", [NCCScorer(), CFOGScorer(), SiftDescScorer()], ids=["ncc", "cfog", "sift"])
def test_score_matrix_shortcut_equals_pairwise_scores(urban_pair, scorer):
    kp = detect_keypoints(urban_pair.target, 12, 64)
    p = cut_patches(urban_pair.target, kp.xy, 64)
    q = cut_patches(urban_pair.reference, kp.xy, 64)
    full = scorer.score_matrix(p, q)
    rows, cols = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    pair = scorer.score(p[rows.ravel()], q[cols.ravel()]).reshape(12, 12)
    assert np.allclose(full, pair, atol=1e-4)
    # Through the protocol: batched pairwise path (a plain object with only score) gives the same.

    class Plain:
        patch_size = 64

        def score(self, a, b):
            return scorer.score(a, b)

    s_plain, n = score_matrix(Plain(), p, q, batch_size=50)
    assert n == 144 and np.allclose(s_plain, full, atol=1e-4)
    cand = prefilter_candidates(kp.descriptors, kp.descriptors, 3)
    s_cheap, n_cheap = score_matrix(Plain(), p, q, candidates=cand, batch_size=7)
    assert n_cheap == 36 and np.isfinite(s_cheap).sum() == 36


def test_protocol_registers_a_real_pair_in_both_modes(urban_pair):
    for top_k in (None, 10):
        cfg = ProtocolConfig(max_keypoints=200, top_k=top_k, threshold=0.2)
        res = register_pair(urban_pair, NCCScorer(), cfg)
        assert res.registered, res
        assert res.rmse < 3.0 and res.n_inliers >= 10
        assert res.n_scored == (200 * 200 if top_k is None else 200 * 10)
    ident = rmse_grid(None, urban_pair.m_gt, urban_pair.target.shape)
    assert ident > 20  # the unregistered pair is far off, so success is not trivial


def test_protocol_with_cfog_on_a_second_subset():
    pair = load_pair("street", "0005")
    res = register_pair(pair, CFOGScorer(), ProtocolConfig(max_keypoints=300, top_k=10, threshold=0.2))
    assert res.registered and res.rmse < 5.0


def test_implausible_affines_are_rejected(urban_pair):
    from registration_protocol import plausible_affine

    m = urban_pair.m_gt
    assert plausible_affine(m, 20)
    assert not plausible_affine(m, 5)  # too few inliers
    assert not plausible_affine(None, 100)
    flip = m.copy()
    flip[:, 0] *= -1
    assert not plausible_affine(flip, 100)  # reflection
    assert not plausible_affine(m * [[10.0], [10.0]], 100)  # scale 10
