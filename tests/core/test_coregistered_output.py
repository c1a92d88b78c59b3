"""coregistered.tif, written by its own thread beside the other outputs: the target's pixels, corrected geotransform."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal, osr
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.outputs import coregistered_recipe

from tests.conftest import shared_data

OFFSET_PX = (3.4, -2.6)  # error put into the target's origin, reference pixels


def _write(path: Path, data: np.ndarray, origin: tuple[float, float]) -> Path:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[1], data.shape[0], 1, gdal.GDT_Float32,
                                              ["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform((origin[0], 10.0, 0.0, origin[1], 0.0, -10.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(data)
    ds = None
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    img = cv2.imread(str(shared_data("sar-optical", "whu-opt-sar", "data", "optical", "WHU-OPT-SAR.tif")),
                     cv2.IMREAD_GRAYSCALE)
    assert img is not None
    img = img[:600, :600].astype(np.float32)
    d = tmp_path_factory.mktemp("cog")
    ref = _write(d / "ref.tif", img, (600000.0, 5300000.0))
    # The target: a crop of the same pixels whose origin is off by OFFSET_PX.
    crop = img[20:580, 30:570]
    origin = (600000.0 + (30 + OFFSET_PX[0]) * 10.0, 5300000.0 - (20 + OFFSET_PX[1]) * 10.0)
    return ref, _write(d / "tgt.tif", crop, origin), crop


def test_coregistered_holds_the_target_pixels_under_the_corrected_geotransform(
        pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    ref, tgt, crop = pair
    out = tmp_path / "out"
    res = coregister(ref, tgt, out, CoregOptions(method="structural", transform="shift", spacing=64))
    ds = gdal.Open(str(res.outputs["coregistered"]))
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    np.testing.assert_array_equal(ds.GetRasterBand(1).ReadAsArray(), crop)  # not resampled
    recipe = coregistered_recipe(res.grid, res.fit, "bilinear")  # type: ignore[arg-type]
    assert recipe.how == "geotransform" and res.report["coregistered_by"] == "geotransform"
    assert ds.GetGeoTransform() == pytest.approx(recipe.geotransform)
    # The corrected origin is the true one: the crop's corner on the reference grid.
    gt = ds.GetGeoTransform()
    assert gt[0] == pytest.approx(600000.0 + 30 * 10.0, abs=1.0)
    assert gt[3] == pytest.approx(5300000.0 - 20 * 10.0, abs=1.0)
    # The report's "after" checkerboard was made from the same pixels while the file was written.
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 2


def test_a_failed_cog_write_fails_the_run_and_leaves_no_output_set(
        pair: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    ref, tgt, _ = pair
    out = tmp_path / "out"
    # A COG of this target cannot be written with a creation option GDAL refuses: the thread's error
    # must reach the caller, and the output folder must hold no partial set.
    from sarcoreg.core import outputs

    saved = list(outputs.COG_OPTIONS)
    outputs.COG_OPTIONS[:] = [*saved, "BLOCKSIZE=7"]  # not a multiple of 16: the COG driver refuses it
    try:
        with pytest.raises(RuntimeError):
            coregister(ref, tgt, out, CoregOptions(method="structural", transform="shift", spacing=64))
    finally:
        outputs.COG_OPTIONS[:] = saved
    assert not (out / "coregistered.tif").exists() and not (out / "report.json").exists()
