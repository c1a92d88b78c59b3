"""Tests of sarcoreg.core.synthetic on a real Sentinel-2 scene."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal, osr
from sarcoreg.core.prepare import PercentileStretch, optical_to_gray
from sarcoreg.core.synthetic import (
    Distortion,
    corner_error,
    gamma_speckle,
    make_pair,
    random_distortion,
    sar_like,
    sar_like_db,
    write_geotiff,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MOSAIC = DATA / "s1s2" / "bigearthnet-configilm" / "benv2_mosaic_T33UUP_x33-34_y69-70.npz"


@pytest.fixture(scope="module")
def optical() -> np.ndarray:
    """A real 240 x 240 Sentinel-2 scene (B02, B03, B04 -> luma gray), stretched to [0, 1]."""
    s2 = np.load(MOSAIC)["s2_10m"]
    gray = optical_to_gray(s2, [0.114, 0.587, 0.299, 0.0])
    return PercentileStretch.fit(gray, 1, 99).apply(gray)


def test_sar_like_reproducible_and_sar_range(optical: np.ndarray) -> None:
    a = sar_like(optical, seed=7)
    b = sar_like(optical, seed=7)
    c = sar_like(optical, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.shape == optical.shape and (a > 0).all()
    db = sar_like_db(optical, seed=7)
    np.testing.assert_allclose(db, 10 * np.log10(a), atol=1e-4)
    p1, p50, p99 = np.percentile(db, [1, 50, 99])
    assert -40 < p1 < p50 < p99 < 15 and -25 < p50 < -3
    # not a monotone copy of the optical: rank correlation well below 1
    clean = sar_like(optical, seed=7, speckle=False)
    ranks = [np.argsort(np.argsort(v.ravel())) for v in (optical, clean)]
    rho = np.corrcoef(ranks[0], ranks[1])[0, 1]
    assert rho < 0.95


def test_speckle_statistics() -> None:
    rng = np.random.default_rng(0)
    for looks in (1, 4, 10):
        n = gamma_speckle((200, 200), looks, rng)
        assert n.mean() == pytest.approx(1.0, abs=0.02)
        assert n.var() == pytest.approx(1.0 / looks, rel=0.05)
    flat = np.full((200, 200), 0.5, np.float32)
    img = sar_like(flat, looks=4, seed=1, radiometry=False)
    assert img.mean() == pytest.approx(0.5, rel=0.02)
    assert (img / 0.5).var() == pytest.approx(0.25, rel=0.06)


def test_pure_integer_shift_is_exact(optical: np.ndarray) -> None:
    pair = make_pair(
        optical, distortion=Distortion.shift(12, -7), radiometry=False, speckle=False
    )
    # content at reference pixel [i, j] sits at target pixel [i - 7, j + 12]
    np.testing.assert_allclose(pair.target[20:200, 30:220], optical[27:207, 18:208], atol=1e-5)
    assert not pair.target_valid[:, :12].any() and pair.target_valid[:-7, 12:].all()
    assert not pair.target_valid[-7:].any()


def test_fractional_shift_by_phase_correlation(optical: np.ndarray) -> None:
    dx, dy = 12.25, -7.5
    pair = make_pair(
        optical, distortion=Distortion.shift(dx, dy), radiometry=False, speckle=False
    )
    # compare the valid part of the target with the reference shifted back by the integer part
    tgt = pair.target[16:-16, 24:-8].astype(np.float64)
    ref = optical[16 + 8 : -16 + 8, 24 - 12 : -8 - 12].astype(np.float64)
    (sx, sy), _ = cv2.phaseCorrelate(ref, tgt)
    assert sx == pytest.approx(dx - 12, abs=0.1) and sy == pytest.approx(dy + 8, abs=0.1)
    # and the whole images, as a matcher would see them
    win = cv2.createHanningWindow(optical.shape[::-1], cv2.CV_64F)
    ref64, tgt64 = optical.astype(np.float64), pair.target.astype(np.float64)
    (sx, sy), _ = cv2.phaseCorrelate(ref64, tgt64, win)
    assert np.hypot(sx - dx, sy - dy) < 0.35


@pytest.mark.parametrize("kind", ["shift", "rotation", "scale", "affine", "nonrigid"])
def test_gt_functions_consistent(kind: str, optical: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    dist = random_distortion(kind, rng, shape=optical.shape, max_shift=10, max_displacement=6)  # type: ignore[arg-type]
    pair = make_pair(optical, distortion=dist, seed=2)
    pts = np.random.default_rng(0).uniform(0, 240, (200, 2))
    back = pair.gt_reference_to_target(pair.gt_target_to_reference(pts))
    np.testing.assert_allclose(back, pts, atol=1e-6)
    assert corner_error(pair.gt_target_to_reference, pair.gt_target_to_reference, 240, 240) == 0.0
    field = dist.displacement_field(240, 240)
    assert field.shape == (2, 240, 240)
    centre = np.array([[100.5, 50.5]])
    np.testing.assert_allclose(
        centre + field[:, 50, 100], pair.gt_target_to_reference(centre), atol=1e-4
    )
    assert pair.target_valid.mean() > 0.6
    assert (pair.target[~pair.target_valid] == 0).all()
    if kind == "nonrigid":
        assert np.hypot(field[0], field[1]).max() < 6 + 10 / 4 * np.sqrt(2) + 1e-3
        assert field.std() > 0.5


def test_warp_follows_gt_for_rotation(optical: np.ndarray) -> None:
    """A bright dot in the reference lands where gt_reference_to_target says."""
    img = np.zeros((240, 240), np.float32)
    img[99:102, 149:152] = 1.0  # centre of the dot: GDAL (150.5, 100.5)
    dist = random_distortion("rotation", np.random.default_rng(11), shape=(240, 240))
    pair = make_pair(img, distortion=dist, radiometry=False, speckle=False)
    rows, cols = np.mgrid[0:240, 0:240]
    w = np.clip(pair.target, 0, None)
    found = np.array([(w * (cols + 0.5)).sum() / w.sum(), (w * (rows + 0.5)).sum() / w.sum()])
    expected = pair.gt_reference_to_target(np.array([[150.5, 100.5]]))[0]
    assert np.hypot(*(found - expected)) < 0.1


def test_corner_error_of_identity_is_shift_size() -> None:
    dist = Distortion.shift(3.0, 4.0)
    assert corner_error(lambda xy: xy, dist.target_to_reference, 300, 200) == pytest.approx(5.0)
    rot = Distortion.affine(cv2.getRotationMatrix2D((0.0, 0.0), 90.0, 1.0))
    # corners (W, 0) and (0, H) move by W*sqrt(2) and H*sqrt(2), (W, H) by |(W, H)| * sqrt(2)
    ace = corner_error(lambda xy: xy, rot.target_to_reference, 30, 40)
    assert ace == pytest.approx((30 + 40 + 50) * np.sqrt(2) / 4)


def test_pair_reproducible_and_params(optical: np.ndarray) -> None:
    dist = random_distortion("affine", np.random.default_rng(5), shape=optical.shape)
    a = make_pair(optical, distortion=dist, seed=4, out_shape=(200, 220))
    b = make_pair(optical, distortion=dist, seed=4, out_shape=(200, 220))
    np.testing.assert_array_equal(a.target, b.target)
    assert a.target.shape == (200, 220) and a.target_valid.shape == (200, 220)
    assert a.params["distortion"] == "affine" and a.params["looks"] == 4.0
    with pytest.raises(ValueError, match="unknown distortion kind"):
        random_distortion("warp", np.random.default_rng(0))  # type: ignore[arg-type]


def test_write_geotiff_roundtrip(tmp_path: Path) -> None:
    arr = np.arange(2 * 30 * 40, dtype=np.uint16).reshape(2, 30, 40)
    path = write_geotiff(tmp_path / "a.tif", arr, nodata=0)
    ds = gdal.Open(str(path))
    assert (ds.RasterCount, ds.RasterYSize, ds.RasterXSize) == (2, 30, 40)
    assert ds.GetGeoTransform() == (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    assert srs.GetAuthorityCode(None) == "32633"
    assert ds.GetRasterBand(1).GetNoDataValue() == 0
    np.testing.assert_array_equal(ds.ReadAsArray(), arr)
    f = write_geotiff(tmp_path / "b.tif", np.ones((5, 6), np.float32), crs="EPSG:4326",
                      origin=(10.0, 50.0), pixel_size=0.001)
    assert gdal.Open(str(f)).GetRasterBand(1).DataType == gdal.GDT_Float32
