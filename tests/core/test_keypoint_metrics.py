"""The paper's matching indicators on constructed point sets whose values are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sarcoreg.core.keypoints.estimation import estimate_homography, transform_points
from sarcoreg.core.keypoints.metrics import aggregate, corner_error, pair_metrics


def _grid(n: int = 10, size: float = 200.0) -> np.ndarray:
    g = np.linspace(10, size - 10, n)
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel()], 1)


def test_transform_points_and_homography_recovery() -> None:
    T = np.array([[0.98, -0.17, 12.0], [0.17, 0.98, -7.0], [1e-5, -2e-5, 1.0]])
    a = _grid()
    b = transform_points(T, a)
    H, inl = estimate_homography(a, b)
    assert H is not None and inl.all()
    np.testing.assert_allclose(H / H[2, 2], T, atol=1e-6)
    assert estimate_homography(a[:3], b[:3])[0] is None


def test_corner_error_known_values() -> None:
    shift = np.array([[1, 0, 3.0], [0, 1, 4.0], [0, 0, 1]])
    assert corner_error(shift, (100, 100)) == pytest.approx(5.0)
    assert corner_error(shift, (100, 100), T=shift) == pytest.approx(0.0)
    assert corner_error(None, (100, 100)) == math.inf
    # scale 1.1 about the origin: corners (0,0),(0,H),(W,0),(W,H) with H = W = 100 move 0, 10, 10, 10*sqrt(2)
    scale = np.diag([1.1, 1.1, 1.0])
    assert corner_error(scale, (100, 100)) == pytest.approx((0 + 10 + 10 + 10 * math.sqrt(2)) / 4)
    # the reference code's corners (W - 1, H - 1)
    assert corner_error(scale, (101, 101), corners="pixel-centres") == pytest.approx(
        (0 + 10 + 10 + 10 * math.sqrt(2)) / 4
    )


def test_pair_metrics_identity_with_known_errors() -> None:
    rng = np.random.default_rng(0)
    a = _grid(10)  # 100 points
    b = a.copy()
    # 60 exact, 20 off by 2 px, 10 off by 4.5 px, 10 outliers far away
    b[60:80, 0] += 2.0
    b[80:90, 1] -= 4.5
    b[90:] += rng.uniform(50, 80, size=(10, 2))
    m = pair_metrics(a, b, (200, 200))
    assert m.n_matches == 100
    assert m.success and m.ace < 3.0  # the 2-px matches are RANSAC inliers too and pull the refit a little
    assert m.mma == pytest.approx(0.8)  # |t(p1, T^) - p2| <= 3 for the exact and the 2-px ones
    err = np.r_[np.zeros(60), np.full(20, 2.0), np.full(10, 4.5), np.linalg.norm(b[90:] - a[90:], axis=1)]
    assert m.delta_p == pytest.approx(err.mean())
    assert m.cmr == pytest.approx({1: 0.6, 2: 0.8, 3: 0.8, 4: 0.8, 5: 0.9})
    assert m.n_correct == {1: 60, 2: 80, 3: 80, 4: 80, 5: 90}
    assert m.le[1] == pytest.approx(0.0)
    assert m.le[2] == pytest.approx(40 / 80)
    assert m.le[5] == pytest.approx((40 + 45) / 90)


def test_pair_metrics_with_true_transform() -> None:
    T = np.array([[1, 0, -15.0], [0, 1, 8.0], [0, 0, 1]])
    a = _grid(8)
    b = transform_points(T, a)
    b[:8, 0] += 1.5  # one row 1.5 px off
    m = pair_metrics(a, b, (200, 200), T=T)
    assert m.success and m.ace < 0.5
    assert m.cmr[1] == pytest.approx(56 / 64) and m.cmr[2] == pytest.approx(1.0)
    assert m.le[2] == pytest.approx(8 * 1.5 / 64)
    # the same matches judged against the identity are all wrong by about 17 px
    wrong = pair_metrics(a, b, (200, 200))
    assert wrong.cmr[5] == 0.0 and math.isnan(wrong.le[5])
    assert wrong.ace == pytest.approx(17.0, abs=0.5)


def test_failure_and_aggregate() -> None:
    a = _grid(6)
    fail = pair_metrics(a[:3], a[:3] + 1, (200, 200))  # 3 matches: no homography
    assert fail.ace == math.inf and not fail.success and math.isnan(fail.mma)
    assert fail.cmr[1] == pytest.approx(0.0) and fail.cmr[2] == pytest.approx(1.0)
    empty = pair_metrics(np.zeros((0, 2)), np.zeros((0, 2)), (200, 200))
    assert empty.n_matches == 0 and empty.cmr[5] == 0.0 and math.isnan(empty.le[5]) and math.isnan(empty.delta_p)
    far = pair_metrics(a, a + 50.0, (200, 200))  # a consistent but wrong estimate: ACE 70.7 >= 40
    assert far.ace == pytest.approx(50 * math.sqrt(2)) and not far.success and far.mma == pytest.approx(1.0)
    good = pair_metrics(a, a + 0.5, (200, 200))
    row = aggregate([fail, empty, far, good])
    assert row["SR"] == pytest.approx(0.25)
    assert row["ACE"] == pytest.approx(good.ace)  # successful pairs only
    assert row["MMA"] == pytest.approx(1.0)
    assert row["P"] == pytest.approx((3 + 0 + 36 + 36) / 4)
    assert row["P5_correct"] == pytest.approx((3 + 0 + 0 + 36) / 4)
    assert row["CMR1"] == pytest.approx((0 + 0 + 0 + 1) / 4)
    assert row["LE5"] == pytest.approx(np.mean([math.sqrt(2), 0.5 * math.sqrt(2)]))  # NaN pairs left out
    assert row["delta_p"] == pytest.approx(np.mean([math.sqrt(2), 50 * math.sqrt(2), 0.5 * math.sqrt(2)]))
    with pytest.raises(ValueError):
        aggregate([])
