"""Correspondence maps at points on the real Sentinel-1/2 demo pair with a known offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core.correspondence_maps import correspondence_maps_at, run_from_params, snap_points
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.engine import CoregOptions
from sarcoreg.core.jobs import get_job
from sarcoreg.core.progress import Progress
from sarcoreg.core.train_job import train_argv

SHIFT = np.array([3.4, -2.6])
OPTS = CoregOptions(method="structural", window=64, search_radius=8)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_demo_inputs(tmp_path_factory.mktemp("cmaps"), (float(SHIFT[0]), float(SHIFT[1])))


def test_peaks_sit_at_the_known_shift(demo: tuple[Path, Path]) -> None:
    ref, tgt = demo
    pts = np.array([[x, y] for x in (40, 52, 64, 76) for y in (40, 52, 64, 76)], float)
    pm = correspondence_maps_at(ref, tgt, pts, OPTS)
    assert pm.maps.shape == (16, 17, 17)
    err = np.hypot(*(pm.peak_shift - SHIFT).T)
    assert np.isfinite(err).all()
    assert (err <= 1.0).mean() >= 0.6, err
    assert np.median(err) < 1.0
    # The map itself peaks where the matcher's peak is (whole pixels).
    r = 8
    argmax = np.array([np.unravel_index(np.nanargmax(m), m.shape)[::-1] for m in pm.maps]) - r
    assert (np.abs(argmax - np.round(pm.peak_shift)) <= 1).all()


def test_geotiff_cells_sit_at_their_displacement(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    out = tmp_path / "map.tif"
    res = run_from_params({"reference": str(ref), "target": str(tgt), "output": str(out),
                           "points_px": [[60.4, 59.6]], "png_dir": str(tmp_path / "png"),
                           "options": {"window": 64, "search_radius": 8}}, Progress())
    assert res["points"][0]["col"] == 60 and res["points"][0]["row"] == 60
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (17, 17)
    rgt, mgt = gdal.Open(str(ref)).GetGeoTransform(), ds.GetGeoTransform()
    # Cell [0, 0] is displacement (-8, -8): its centre is point - 8 px, its corner half a pixel before.
    assert mgt[0] == pytest.approx(rgt[0] + (60 - 8.5) * rgt[1])
    assert mgt[3] == pytest.approx(rgt[3] + (60 - 8.5) * rgt[5])
    arr = ds.GetRasterBand(1).ReadAsArray()
    row, col = np.unravel_index(np.nanargmax(arr), arr.shape)
    peak_map_x = mgt[0] + (col + 0.5) * mgt[1]
    peak_px = (peak_map_x - rgt[0]) / rgt[1]
    assert abs(peak_px - 60 - SHIFT[0]) <= 1.0
    assert Path(res["pngs"][0]).stat().st_size > 1000


def test_mosaic_of_several_points_and_errors(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    x0, dx, _, y0, _, dy = gdal.Open(str(ref)).GetGeoTransform()
    pts_map = [[x0 + 40 * dx, y0 + 40 * dy], [x0 + 80 * dx, y0 + 70 * dy]]
    res = get_job("correspondence_map")({"reference": str(ref), "target": str(tgt), "output": str(tmp_path / "m.tif"),
                                         "points_map": pts_map, "options": {"search_radius": 8}}, Progress())
    ds = gdal.Open(res["output"])
    assert (ds.RasterXSize, ds.RasterYSize) == (40 + 17, 30 + 17)
    arr = ds.GetRasterBand(1).ReadAsArray()
    assert np.isfinite(arr).sum() == 2 * 17 * 17
    assert res["overlapped_points"] == 0
    with pytest.raises(ValueError, match="gives no correspondence maps"):
        correspondence_maps_at(ref, tgt, np.array([[60, 60]]), CoregOptions(method="sift"))
    with pytest.raises(ValueError, match="outside the reference"):
        correspondence_maps_at(ref, tgt, np.array([[500, 60]]), OPTS)
    with pytest.raises(ValueError, match="finite"):
        snap_points(np.array([[np.nan, 1.0]]))


def test_train_argv_and_checks() -> None:
    argv = train_argv({"method": "rrlnet", "data": "d", "out_dir": "o", "epochs": 2, "steps_per_epoch": 3,
                       "pairs_per_image": 4, "max_minutes": 0.5})
    assert argv[:5] == ["rrlnet", "--data", "d", "--out", "o"]
    assert "--steps-per-epoch" in argv and "--pairs-per-image" in argv and "--max-minutes" in argv
    with pytest.raises(ValueError, match="cannot be trained"):
        train_argv({"method": "sift", "data": "d", "out_dir": "o"})
    with pytest.raises(ValueError, match="model_name"):
        get_job("train")({"method": "rrlnet", "data": "d", "out_dir": "o", "model_name": "a b",
                          "model_folder": "f"}, Progress())
