"""Tests of the robust transform estimation (sarcoreg.core.estimation)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from sarcoreg.core.estimation import (
    TRANSFORM_KINDS,
    FitResult,
    GeometricModel,
    PolynomialModel,
    ShiftModel,
    fit_transform,
    min_points,
    model_from_dict,
    radial_stats,
)
from sarcoreg.core.estimation.refit import fit_homography, fit_polynomial, fit_similarity, fit_tps
from scipy.interpolate import RBFInterpolator

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
VISNIR = DATA / "vis-nir" / "registration"

Refit = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[GeometricModel, np.ndarray]]

SIZE = 1000.0
NOISE = 0.1


def _truth(kind: str, xy: np.ndarray) -> np.ndarray:
    """Known target -> reference maps of every family, on a 1000 x 1000 px raster."""
    x, y = xy[:, 0], xy[:, 1]
    a = np.array([[1.01, 0.02, 5.0], [-0.03, 0.99, -4.0]])
    if kind == "shift":
        return xy + [3.3, -7.1]
    if kind in ("affine", "poly1"):
        return xy @ a[:, :2].T + a[:, 2]
    if kind == "similarity":  # 8 deg and a scale of 1.27, as between two sensors' pixel grids
        c, s = 1.27 * np.cos(np.radians(8.0)), 1.27 * np.sin(np.radians(8.0))
        return xy @ np.array([[c, -s], [s, c]]).T + [-60.0, 25.0]
    if kind == "homography":
        h = np.array([[1.01, 0.02, 5.0], [-0.03, 0.99, -4.0], [2e-5, -1e-5, 1.0]])
        p = np.column_stack([xy, np.ones(len(xy))]) @ h.T
        return p[:, :2] / p[:, 2:]
    u, v = (x - 500.0) / 500.0, (y - 500.0) / 500.0
    if kind == "poly2":
        return np.column_stack([x + 3 + 2 * u + 1.5 * u * v, y - 2 + 1.2 * v**2 - 0.7 * u])
    if kind == "poly3":
        return np.column_stack([x + 3 + 1.5 * u * v + 0.8 * u**3, y - 2 + 0.5 * u * v**2])
    # tps: affine plus a smooth local bump no polynomial of low degree describes
    bump = 4.0 * np.exp(-((x - 600.0) ** 2 + (y - 400.0) ** 2) / (2 * 220.0**2))
    return np.column_stack([1.01 * x + 0.02 * y + 5 + bump, -0.015 * x + 0.99 * y - 3 + 0.5 * bump])


def _synthetic(
    kind: str, n: int = 200, outlier_frac: float = 0.3, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points with NOISE px Gaussian noise and a fraction of 15..80 px gross outliers."""
    rng = np.random.default_rng(seed)
    src = rng.uniform(0.0, SIZE, (n, 2))
    dst = _truth(kind, src) + rng.normal(0.0, NOISE, (n, 2))
    out = rng.random(n) < outlier_frac
    ang = rng.uniform(0.0, 2 * np.pi, out.sum())
    rad = rng.uniform(15.0, 80.0, out.sum())
    dst[out] += np.column_stack([rad * np.cos(ang), rad * np.sin(ang)])
    return src, dst, out


def _grid(lo: float = 0.0, hi: float = SIZE, n: int = 21) -> np.ndarray:
    g = np.meshgrid(np.linspace(lo, hi, n), np.linspace(lo, hi, n))
    return np.column_stack([g[0].ravel(), g[1].ravel()])


def _fit(kind: str, src: np.ndarray, dst: np.ndarray, **kw: object) -> FitResult:
    if kind == "tps":
        kw.setdefault("tps_smoothing", 0.01)
    return fit_transform(src, dst, kind, **kw)


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_recovers_known_transform_and_flags_outliers(kind: str) -> None:
    n = 300 if kind == "tps" else 200
    src, dst, out = _synthetic(kind, n)
    fit = _fit(kind, src, dst)
    # The spline is judged inside the point cloud; slightly looser, it interpolates noise.
    grid, tol = (_grid(100.0, 900.0), 0.35) if kind == "tps" else (_grid(), 0.3)
    err = np.hypot(*(fit.model.apply(grid) - _truth(kind, grid)).T)
    assert err.max() < tol, f"{kind}: max error {err.max():.3f} px"
    assert not fit.inliers[out].any(), "a gross outlier was kept"
    assert (~fit.inliers[~out]).sum() <= 0.02 * (~out).sum(), "too many good points rejected"
    assert fit.n_inliers == int(fit.inliers.sum())
    assert fit.model.kind == kind and fit.inverse.kind == kind
    if kind != "tps":  # the noise level is what the residuals show
        assert 0.05 < fit.rmse_px < 0.25
    assert 0.05 < fit.loo_rmse_px < 0.3
    assert fit.loo_rmse_px >= fit.rmse_px


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_same_seed_same_result(kind: str) -> None:
    src, dst, _ = _synthetic(kind, 120, seed=7)
    a, b = _fit(kind, src, dst, seed=3), _fit(kind, src, dst, seed=3)
    assert np.array_equal(a.inliers, b.inliers)
    assert np.array_equal(a.residuals, b.residuals, equal_nan=True)
    assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_inverse_undoes_model(kind: str) -> None:
    src, dst, _ = _synthetic(kind, 200, seed=2)
    fit = _fit(kind, src, dst)
    grid = _grid(100.0, 900.0, 15)
    # Exact for the matrix kinds; the poly/tps inverse is a separate reverse fit.
    tol = 1e-6 if kind in ("shift", "similarity", "affine", "homography") else 0.05
    assert np.abs(fit.inverse.apply(fit.model.apply(grid)) - grid).max() < tol


@pytest.mark.parametrize("kind", TRANSFORM_KINDS)
def test_to_dict_is_json_and_rebuilds_model(kind: str) -> None:
    src, dst, _ = _synthetic(kind, 80, seed=4)
    fit = _fit(kind, src, dst)
    d = fit.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["kind"] == kind and back["n_inliers"] == fit.n_inliers
    assert np.asarray(back["model"]["matrix_px"]).shape == (3, 3)
    rebuilt = model_from_dict(back["model"])
    grid = _grid(n=7)
    np.testing.assert_allclose(rebuilt.apply(grid), fit.model.apply(grid), atol=1e-9)


def test_nan_rows_are_ignored() -> None:
    src, dst, _ = _synthetic("affine", 100, seed=5)
    ref = fit_transform(src, dst, "affine")
    # Four extra rows, each with a NaN on one side only (the other side looks valid).
    bad = np.zeros(104, bool)
    bad[[0, 30, 61, 103]] = True
    src_n, dst_n = np.zeros((104, 2)), np.zeros((104, 2))
    src_n[~bad], dst_n[~bad] = src, dst
    src_n[bad] = [[np.nan, 1.0], [2.0, 3.0], [np.nan, np.nan], [4.0, 5.0]]
    dst_n[bad] = [[1.0, 1.0], [2.0, np.nan], [6.0, 7.0], [np.nan, 0.0]]
    fit = fit_transform(src_n, dst_n, "affine")
    assert not fit.inliers[bad].any()
    assert np.isnan(fit.residuals[bad]).all()
    assert np.isfinite(fit.residuals[~bad]).all()
    assert fit.n_valid == 100
    np.testing.assert_allclose(fit.model.matrix_px, ref.model.matrix_px, atol=1e-9)
    assert np.array_equal(fit.inliers[~bad], ref.inliers)


def test_too_few_points_message() -> None:
    src = np.array([[0.0, 0.0], [10.0, 0.0], [np.nan, 3.0], [5.0, 5.0], [7.0, 1.0]])
    dst = src + 1.0
    with pytest.raises(ValueError) as info:
        fit_transform(src, dst, "poly2")
    msg = str(info.value)
    assert "found 4 valid" in msg and "needs at least 6" in msg and "poly2" in msg
    assert "denser" in msg and "search" in msg and "simpler" in msg
    fit = fit_transform(src, dst, "affine")  # 4 valid points are enough for an affine
    assert fit.n_valid == 4 and fit.rmse_px < 1e-9
    assert [min_points(k) for k in TRANSFORM_KINDS] == [1, 3, 4, 3, 6, 10, 3, 2]


def test_bad_arguments() -> None:
    src, dst, _ = _synthetic("affine", 20, 0.0)
    with pytest.raises(ValueError, match="shift, affine"):
        fit_transform(src, dst, "spline")
    with pytest.raises(ValueError, match="weights must be >= 0"):
        fit_transform(src, dst, weights=-np.ones(20))
    with pytest.raises(ValueError, match=r"weights must have shape \(20,\)"):
        fit_transform(src, dst, weights=np.ones(3))
    with pytest.raises(ValueError, match="differ in shape"):
        fit_transform(src, dst[:5])
    line = np.column_stack([np.arange(10.0), 2 * np.arange(10.0)])
    with pytest.raises(ValueError):  # collinear: no affine / poly1 is determined
        fit_transform(line, line + 1, "poly1")


def test_weights_pull_the_least_squares_refit() -> None:
    # Two consistent groups 1 px apart (both within the threshold): the shift is their
    # weighted mean.
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (40, 2))
    dst = src + [2.0, 0.0]
    dst[20:, 0] += 1.0
    w = np.r_[np.ones(20), 3 * np.ones(20)]
    plain = fit_transform(src, dst, "shift")
    weighted = fit_transform(src, dst, "shift", weights=w)
    assert isinstance(weighted.model, ShiftModel)
    assert plain.model.shift_px == pytest.approx((2.5, 0.0))
    assert weighted.model.shift_px == pytest.approx((2.75, 0.0))
    assert weighted.n_inliers == 40
    # NaN weights drop the row; zero weights keep it out of the fit but it stays evaluated.
    w0 = w.copy()
    w0[:20] = 0.0
    w0[0] = np.nan
    only_heavy = fit_transform(src, dst, "shift", weights=w0)
    assert only_heavy.model.shift_px == pytest.approx((3.0, 0.0))
    assert not only_heavy.inliers[0] and only_heavy.n_valid == 39


def test_shift_and_affine_matrices() -> None:
    src, dst, _ = _synthetic("shift", 30, 0.0)
    fit = fit_transform(src, dst, "shift")
    assert fit.model.is_affine and fit.inverse.is_affine
    m = fit.model.matrix_px
    np.testing.assert_allclose(m[:2, :2], np.eye(2))
    np.testing.assert_allclose(m[2], [0, 0, 1])
    np.testing.assert_allclose(m[:2, 2], [3.3, -7.1], atol=0.05)
    single = fit_transform(src[:1], dst[:1], "shift")  # one point determines a shift
    np.testing.assert_allclose(single.model.matrix_px[:2, 2], dst[0] - src[0])
    for kind in ("homography", "poly1", "poly2", "tps"):
        assert not _fit(kind, *_synthetic(kind, 60, 0.0)[:2]).model.is_affine
    # poly1's affine approximation is exact; poly2's is its least-squares affine part.
    p1 = fit_transform(*_synthetic("poly1", 60, 0.0)[:2], "poly1")
    m1, grid = p1.model.matrix_px, _grid(-500.0, 1500.0, 5)
    np.testing.assert_allclose(grid @ m1[:2, :2].T + m1[:2, 2], p1.model.apply(grid), atol=1e-8)
    np.testing.assert_allclose(m1[:2, :2], [[1.01, 0.02], [-0.03, 0.99]], atol=1e-3)
    src2, dst2, _ = _synthetic("poly2", 200, 0.0)
    p2 = fit_transform(src2, dst2, "poly2")
    assert isinstance(p2.model, PolynomialModel)
    approx = src2 @ p2.model.matrix_px[:2, :2].T + p2.model.matrix_px[:2, 2]
    assert np.hypot(*(approx - dst2).T).max() < 3.0  # the quadratic terms are ~1-2 px


def test_radial_stats_by_hand() -> None:
    res = np.array([[3.0, 4.0], [0.0, 0.0], [6.0, -8.0], [np.nan, 1.0]])
    s = radial_stats(res)  # radial errors 5, 0, 10
    assert s["n"] == 3
    assert s["rmse"] == pytest.approx(np.sqrt(125.0 / 3.0))
    assert s["rmse_x"] == pytest.approx(np.sqrt(45.0 / 3.0))
    assert s["rmse_y"] == pytest.approx(np.sqrt(80.0 / 3.0))
    assert s["mean"] == pytest.approx(5.0) and s["median"] == pytest.approx(5.0)
    assert s["max"] == pytest.approx(10.0)
    assert s["ce90"] == pytest.approx(9.0)  # 5 + 0.8 * (10 - 5)
    assert np.isnan(radial_stats(np.full((2, 2), np.nan))["rmse"])


def test_fit_statistics_match_its_residuals() -> None:
    src, dst, _ = _synthetic("affine", 150, seed=9)
    fit = fit_transform(src, dst, "affine")
    r = fit.residuals[fit.inliers]
    np.testing.assert_allclose(r, fit.model.apply(src[fit.inliers]) - dst[fit.inliers])
    rad = np.hypot(r[:, 0], r[:, 1])
    assert fit.rmse_px == pytest.approx(np.sqrt(np.mean(rad**2)))
    assert fit.rmse_x_px == pytest.approx(np.sqrt(np.mean(r[:, 0] ** 2)))
    assert fit.rmse_y_px == pytest.approx(np.sqrt(np.mean(r[:, 1] ** 2)))
    assert fit.ce90_px == pytest.approx(np.percentile(rad, 90))
    # The refine step leaves the inliers consistent with the threshold.
    radial_all = np.hypot(*fit.residuals.T)
    assert (radial_all[fit.inliers] <= fit.threshold_px + 0.2).all()
    assert (radial_all[~fit.inliers] > fit.threshold_px - 0.2).all()


def test_leave_one_out_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    n = 25
    src = rng.uniform(0, 500, (n, 2))
    dst = src + 0.001 * src**1.5 + rng.normal(0, 1, (n, 2))
    w = rng.uniform(0.5, 2.0, n)

    def brute(fn: Refit) -> np.ndarray:
        rows = [
            fn(np.delete(src, i, 0), np.delete(dst, i, 0), np.delete(w, i))[0].apply(src[i : i + 1])
            for i in range(n)
        ]
        return np.vstack(rows) - dst

    def poly2(s: np.ndarray, d: np.ndarray, ww: np.ndarray) -> tuple[GeometricModel, np.ndarray]:
        return fit_polynomial(s, d, 2, ww)

    def tps(s: np.ndarray, d: np.ndarray, ww: np.ndarray) -> tuple[GeometricModel, np.ndarray]:
        return fit_tps(s, d, 0.0, ww, np.random.default_rng(0))

    for fn, tol in ((poly2, 1e-8), (tps, 1e-6), (fit_homography, 0.02)):
        np.testing.assert_allclose(fn(src, dst, w)[1], brute(fn), atol=tol)
    # The TPS model itself is scipy's thin-plate spline through the points.
    model, _ = tps(src, dst, w)
    ref = RBFInterpolator(src, dst, kernel="thin_plate_spline")
    grid = _grid(0.0, 500.0, 9)
    np.testing.assert_allclose(model.apply(grid), ref(grid), atol=1e-6)


def test_tps_merges_duplicate_keypoints_and_reports_honest_error() -> None:
    src, dst, _ = _synthetic("tps", 150, 0.0, seed=3)
    src = np.vstack([src, src[:5]])  # SIFT-style duplicate locations, slightly different dst
    dst = np.vstack([dst, dst[:5] + 0.2])
    fit = fit_transform(src, dst, "tps")
    assert fit.n_inliers == 155
    assert fit.rmse_px < 0.15  # ~0 except the duplicates' half-offset
    assert fit.loo_rmse_px > 0.1  # held-out points see the noise
    assert fit.robust_method.startswith("RANSAC poly2")


def test_real_vis_nir_sift_matches_give_the_ground_truth_affine() -> None:
    # RGB (target) -> NIR (reference) with a known 2x3 affine (OpenCV convention: pixel centres
    # on integers), matched with SIFT: real cross-spectral matches with real outliers.
    stem = VISNIR / "urban" / "0003"
    rgb = cv2.imread(f"{stem}_rgb.jpg", cv2.IMREAD_GRAYSCALE)
    nir = cv2.imread(f"{stem}_nir.jpg", cv2.IMREAD_GRAYSCALE)
    m_cv = np.vstack([np.load(f"{stem}_nir.npy"), [0.0, 0.0, 1.0]])
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    m_gdal = half @ m_cv @ np.linalg.inv(half)
    cv2.setRNGSeed(0)
    sift = cv2.SIFT.create(nfeatures=1500)
    k1, d1 = sift.detectAndCompute(rgb, np.full(rgb.shape, 255, np.uint8))
    k2, d2 = sift.detectAndCompute(nir, np.full(nir.shape, 255, np.uint8))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    good = [a for a, b in pairs if a.distance < 0.85 * b.distance]
    src = np.array([k1[g.queryIdx].pt for g in good]) + 0.5
    dst = np.array([k2[g.trainIdx].pt for g in good]) + 0.5
    true_res = np.hypot(*(src @ m_gdal[:2, :2].T + m_gdal[:2, 2] - dst).T)
    assert (true_res > 10).sum() > 50  # there are real gross outliers to reject
    h, w = rgb.shape
    grid = np.column_stack([g.ravel() for g in np.meshgrid(np.linspace(0, w, 9),
                                                           np.linspace(0, h, 9))])
    truth = grid @ m_gdal[:2, :2].T + m_gdal[:2, 2]
    for kind in ("affine", "homography", "poly1"):
        fit = fit_transform(src, dst, kind)
        err = np.hypot(*(fit.model.apply(grid) - truth).T)
        assert err.max() < 1.0 and err.mean() < 0.5, f"{kind}: {err.max():.2f} px"
        assert not (fit.inliers & (true_res > 3.0)).any()
        assert fit.rmse_px < 0.7


def test_similarity_leave_one_out_residuals_are_exact() -> None:
    """The 2 x 2 hat-matrix blocks give the same residuals as refitting without each point (weighted too)."""
    rng = np.random.default_rng(11)
    src = rng.uniform(0.0, SIZE, (25, 2))
    dst = _truth("similarity", src) + rng.normal(0.0, 0.5, src.shape)
    w = rng.uniform(0.5, 2.0, len(src))
    model, loo = fit_similarity(src, dst, w)
    assert model.kind == "similarity" and model.scale == pytest.approx(1.27, abs=2e-3)
    assert model.rotation_deg == pytest.approx(8.0, abs=0.1)
    for i in range(len(src)):
        keep = np.arange(len(src)) != i
        alone, _ = fit_similarity(src[keep], dst[keep], w[keep])
        np.testing.assert_allclose(loo[i], alone.apply(src[i:i + 1])[0] - dst[i], atol=1e-8)


def test_a_similarity_matrix_is_checked() -> None:
    from sarcoreg.core.estimation import SimilarityModel

    with pytest.raises(ValueError, match="not a similarity"):
        SimilarityModel(np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert SimilarityModel(np.array([[0.0, -2.0, 1.0], [2.0, 0.0, 3.0]])).rotation_deg == pytest.approx(90.0)
