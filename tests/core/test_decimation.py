"""The one-pass decimated base of large rasters (core/decimation.py) against GDAL's own decimated reads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal, osr
from sarcoreg.core.decimation import base_factor, build_base
from sarcoreg.core.raster_io import common_grid, open_raster

from tests.conftest import shared_data

W, H = 2600, 2300  # larger than BASE_SIDE: cells of 2 x 2 pixels
NODATA = -1.0


def _scene() -> np.ndarray:
    """``(H, W)`` float32 tiled from the real WHU optical image (flipped copies), values 1..1000."""
    img = cv2.imread(str(shared_data("sar-optical", "whu-opt-sar", "data", "optical", "WHU-OPT-SAR.tif")),
                     cv2.IMREAD_GRAYSCALE)
    assert img is not None
    row = np.concatenate([img, img[:, ::-1], img], axis=1)
    tiled = np.concatenate([row, row[::-1], row], axis=0)[:H, :W]
    return 1.0 + tiled.astype(np.float32) * (999.0 / 255.0)


def _write(path: Path, data: np.ndarray, origin: tuple[float, float], overviews: bool = False) -> Path:
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), data.shape[1], data.shape[0], 1, gdal.GDT_Float32,
                    ["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform((origin[0], 10.0, 0.0, origin[1], 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(NODATA)
    band.WriteArray(data)
    if overviews:
        ds.BuildOverviews("AVERAGE", [2, 4, 8])
    ds = None
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = _scene()
    data[:, :137] = NODATA  # a nodata margin on the left, not on a cell boundary
    data[1500:1700, 900:1300] = NODATA
    return _write(tmp_path_factory.mktemp("decimation") / "large.tif", data, (500000.0, 5200000.0))


def test_base_factor_is_one_up_to_the_base_side() -> None:
    assert base_factor(2048, 1000) == 1
    assert base_factor(2049, 10) == 2
    assert base_factor(10980, 10980) == 6


def test_build_base_averages_and_picks_cells_exactly() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((2, 103, 151)).astype(np.float32)
    img[0, 10:14, 20:33] = np.nan
    base = build_base(lambda y, rows: img[:, y:y + rows], 151, 103, 2, 4)
    assert base.mean.shape == (2, 26, 38)
    # Whole cells: the mean of the valid pixels, and the centre pixel.
    cell = img[:, 8:12, 20:24]
    np.testing.assert_allclose(base.mean[:, 2, 5], np.nanmean(cell, axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(base.count[:, 2, 5], np.isfinite(cell).sum(axis=(1, 2)))
    np.testing.assert_array_equal(base.picked[:, 2, 5], img[:, 10, 22])
    # The partial last cell (rows 100..102, columns 148..150) keeps its own pixels only.
    np.testing.assert_allclose(base.mean[:, -1, -1], img[:, 100:, 148:].mean(axis=(1, 2)), rtol=1e-6)
    # Rows 12..15 of columns 20..23 are half NaN: the mean of the other half, 8 pixels counted.
    np.testing.assert_allclose(base.mean[0, 3, 5], img[0, 14:16, 20:24].mean(), rtol=1e-6)
    assert base.count[0, 3, 5] == 8
    assert base.picked[0, 3, 5] == img[0, 14, 22]  # its centre pixel is a valid one
    assert np.isnan(base.picked[0, 2, 6])  # cell rows 8..11, columns 24..27: centre (26, 10) is NaN

def test_overview_of_an_aligned_window_is_the_block_mean() -> None:
    rng = np.random.default_rng(2)
    img = rng.random((1, 240, 360)).astype(np.float32)
    base = build_base(lambda y, rows: img[:, y:y + rows], 360, 240, 1, 3)
    ov = base.overview((60, 30, 240, 180), (15, 20), average=True)
    want = img[0, 30:210, 60:300].reshape(15, 12, 20, 12).mean(axis=(1, 3))
    np.testing.assert_allclose(ov[0], want, rtol=1e-5)
    # Outside the raster: NaN, as a GDAL read of such a window gives.
    out = base.overview((-120, 0, 240, 240), (10, 10), average=True)
    assert np.isnan(out[0, :, :5]).all() and np.isfinite(out[0, :, 5:]).all()


def test_large_raster_overviews_come_from_one_pass_and_match_gdal(large: Path) -> None:
    src = open_raster(large)
    assert src.overview_base() is not None
    base = src.overview_base()
    ov, factor = src.read_overview(512)
    assert src.overview_base() is base  # read once, kept
    gdal_ov = src.read(0, 0, W, H, out_shape=ov.shape[1:], average=True)
    assert ov.shape == gdal_ov.shape and factor == pytest.approx(W / 512)
    both = np.isfinite(ov) & np.isfinite(gdal_ov)
    # Validity follows the picked mask as GDAL's does: they differ at most along the nodata edges.
    assert (np.isfinite(ov) != np.isfinite(gdal_ov)).mean() < 0.01
    rel = np.abs(ov[both] - gdal_ov[both]) / np.abs(gdal_ov[both])
    assert np.median(rel) < 0.02
    # Picked pixels: real pixels of the raster, with the statistics of GDAL's picked ones.
    picked, _ = src.read_overview(1024, (300, 200, 2200, 2000), average=False)
    gdal_picked = src.read(300, 200, 2200, 2000, out_shape=picked.shape[1:], average=False)
    assert np.isin(picked[np.isfinite(picked)], _scene()).all()
    for q in (0.5, 50.0, 99.5):
        assert np.nanpercentile(picked, q) == pytest.approx(np.nanpercentile(gdal_picked, q), rel=0.03)


def test_finer_overviews_small_rasters_and_rasters_with_overviews_read_through_gdal(
        large: Path, tmp_path: Path) -> None:
    src = open_raster(large)
    assert src.overview_base((0, 0, 600, 600), (600, 600)) is None  # finer than the 2 x 2 cells
    assert src._base is None
    small = _write(tmp_path / "small.tif", _scene()[:1000, :1500], (500000.0, 5200000.0))
    assert open_raster(small).overview_base() is None
    pyramid = _write(tmp_path / "pyramid.tif", _scene(), (500000.0, 5200000.0), overviews=True)
    assert open_raster(pyramid).overview_base() is None


def test_common_grid_of_a_large_shifted_pair_finds_the_overlap(large: Path, tmp_path: Path) -> None:
    data = _scene()
    data[:, :137] = NODATA
    # The target's origin moved by (+23.4, -17.6) reference pixels: it starts 23.4 columns right of
    # the reference and 17.6 rows above it.
    target = _write(tmp_path / "target.tif", data, (500000.0 + 234.0, 5200000.0 + 176.0))
    grid = common_grid(open_raster(large, role="reference"), open_raster(target, role="target"))
    x0, y0, w, h = grid.overlap
    factor = W / 512
    # The target's own nodata margin ends 23.4 + 137 px in, the reference's at 137: the later one.
    assert abs(x0 - 160.4) <= factor + 1 and y0 == 0
    assert abs((x0 + w) - W) <= factor + 1 and abs((y0 + h) - (H - 17.6)) <= factor + 1
    assert grid.reference._base is not None and grid.target_on_grid._base is not None
