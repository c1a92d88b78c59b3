"""Tiled, blended shared-modality inference over real rasters (core/shared_layers.py).

The tiling is checked with a pixel-wise transform (a fixed colour mapping): any tiling of it must
reproduce the whole-image result exactly, so a seam, a gap or a wrong blend weight shows at once.
The shipped model itself is exercised in the model tests and in the plugin test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core.progress import Cancelled, Progress
from sarcoreg.core.raster_io import RasterInputError, open_raster
from sarcoreg.core.shared_layers import (
    blend_weights,
    fit_input_scaling,
    shared_array,
    write_shared_layer,
)

from tests.conftest import shared_data

SAR_SCENE = shared_data("sar-only", "spatialist")


def _vv_scene() -> Path:
    tifs = sorted(p for p in SAR_SCENE.rglob("*.tif"))
    if not tifs:
        pytest.fail(f"no GeoTIFF under {SAR_SCENE}: the shared data folder is incomplete")
    return tifs[0]


class PixelwiseModel:
    """A shared-modality 'model' that maps each pixel on its own: out_k = sigmoid(w_k . x + b_k)."""

    name = "pixelwise"
    channels = 3
    multiple = 32
    device = "cpu"
    backend = "numpy"
    card = None

    def __init__(self, sar_bands: int = 1, optical_bands: int = 3) -> None:
        self.sar_bands = sar_bands
        self.optical_bands = optical_bands
        self.calls = 0
        self.tiles = 0

    def transform(self, batch: np.ndarray, modality: str) -> np.ndarray:
        assert batch.ndim == 4 and batch.shape[2] % 32 == 0 and batch.shape[3] % 32 == 0
        self.calls += 1
        self.tiles += batch.shape[0]
        c = batch.shape[1]
        w = np.linspace(-2.0, 3.0, 3 * c, dtype=np.float32).reshape(3, c)
        z = np.einsum("kc,bchw->bkhw", w, batch) + np.array([0.1, -0.2, 0.3], np.float32)[None, :, None, None]
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def test_blend_weights_are_positive_and_symmetric() -> None:
    w = blend_weights(64, 16)
    assert w.shape == (64, 64) and w.min() > 0 and w.max() == pytest.approx(1.0)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    # Two neighbours overlapping by 16 px: their normalised weights sum to one across the overlap.
    ramp = w[32, :]
    np.testing.assert_allclose(ramp[-16:] + ramp[:16], np.full(16, 1.0), atol=1e-6)


@pytest.mark.parametrize(("tile", "overlap", "batch"), [(64, 16, 3), (96, 0, 1), (128, 40, 8)])
def test_tiling_reproduces_the_whole_image(tile: int, overlap: int, batch: int) -> None:
    src = open_raster(_vv_scene())
    model = PixelwiseModel()
    scaling = fit_input_scaling(src, model, "sar")
    whole = shared_array(src, model, scaling, tile=512, overlap=0)
    tiled = shared_array(src, model, scaling, tile=tile, overlap=overlap, batch_size=batch)
    assert tiled.shape == (3, src.height, src.width)
    both = np.isfinite(whole) & np.isfinite(tiled)
    assert both.mean() > 0.9
    np.testing.assert_allclose(tiled[both], whole[both], atol=1e-5)
    assert (np.isnan(tiled) == np.isnan(whole)).all()  # nodata in the same places
    assert 0.0 <= np.nanmin(tiled) and np.nanmax(tiled) <= 1.0


def test_a_window_of_the_raster(tmp_path: Path) -> None:
    src = open_raster(_vv_scene())
    model = PixelwiseModel()
    scaling = fit_input_scaling(src, model, "sar")
    whole = shared_array(src, model, scaling, tile=64, overlap=8)
    part = shared_array(src, model, scaling, window=(30, 40, 100, 70), tile=64, overlap=8)
    np.testing.assert_allclose(part, whole[:, 40:110, 30:130], atol=1e-5, equal_nan=True)


def test_layer_keeps_the_georeferencing_and_marks_nodata(tmp_path: Path) -> None:
    raster = _vv_scene()
    out = tmp_path / "shared.tif"
    facts = write_shared_layer(raster, out, "sar", PixelwiseModel(), tile=64, overlap=16, dtype="uint8")
    src, dst = gdal.Open(str(raster)), gdal.Open(str(out))
    assert (dst.RasterXSize, dst.RasterYSize, dst.RasterCount) == (src.RasterXSize, src.RasterYSize, 3)
    assert dst.GetGeoTransform() == src.GetGeoTransform()
    assert dst.GetProjection() == src.GetProjection()
    assert dst.GetRasterBand(1).GetNoDataValue() == 0
    assert dst.GetMetadataItem("SARCOREG_MODALITY") == "sar"
    data = dst.GetRasterBand(1).ReadAsArray()
    vv = src.GetRasterBand(1).ReadAsArray()
    nodata = src.GetRasterBand(1).GetNoDataValue()
    invalid = ~np.isfinite(vv) | ((vv == nodata) if nodata is not None else False)
    assert (data[invalid] == 0).all() and (data[~invalid] > 0).all()
    assert facts["device"] == "cpu" and facts["width"] == src.RasterXSize
    assert not list(tmp_path.glob(".*partial*"))


def test_gray_optical_feeds_all_three_bands_and_float_output(tmp_path: Path) -> None:
    gray = shared_data("sar-optical", "osmnet", "ims", "opt1.png")
    out = tmp_path / "opt_shared.tif"
    write_shared_layer(gray, out, "optical", PixelwiseModel(), tile=128, overlap=32, dtype="float32")
    src = open_raster(gray)
    scaling = fit_input_scaling(src, PixelwiseModel(), "optical")
    assert scaling.band_index == (0, 0, 0) or len(src.bands) >= 3
    ds = gdal.Open(str(out))
    arr = ds.ReadAsArray()
    assert arr.dtype == np.float32 and arr.shape[0] == 3 and np.isfinite(arr).all()


def test_too_few_sar_bands_names_the_raster() -> None:
    with pytest.raises(RasterInputError, match=r"needs 2 SAR band\(s\).*1 was selected"):
        fit_input_scaling(open_raster(_vv_scene()), PixelwiseModel(sar_bands=2), "sar")


def test_bad_tiling_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        write_shared_layer(_vv_scene(), tmp_path / "x.tif", "sar", PixelwiseModel(), tile=100)
    with pytest.raises(ValueError, match="overlap must be between"):
        write_shared_layer(_vv_scene(), tmp_path / "x.tif", "sar", PixelwiseModel(), tile=64, overlap=32)
    assert not list(tmp_path.iterdir())


def test_cancel_leaves_no_file(tmp_path: Path) -> None:
    progress = Progress()
    seen: list[float] = []

    def stop_after_first(fraction: float, message: str) -> None:
        seen.append(fraction)
        if "tile" in message:
            progress.cancel()

    progress.callback = stop_after_first
    with pytest.raises(Cancelled):
        write_shared_layer(_vv_scene(), tmp_path / "shared.tif", "sar", PixelwiseModel(), tile=64, overlap=8,
                           batch_size=1, progress=progress)
    assert list(tmp_path.iterdir()) == []
