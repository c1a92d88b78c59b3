"""The co-registration engine end to end on real imagery written as real GeoTIFFs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal, osr
from sarcoreg.core.engine import OUTPUT_NAMES, CoregOptions, coregister
from sarcoreg.core.exports import read_points, read_tiepoints_gpkg
from sarcoreg.core.output_set import MANIFEST_NAME, read_output_set
from sarcoreg.core.progress import Cancelled, Progress
from sarcoreg.core.raster_io import RasterInputError
from sarcoreg.core.synthetic import write_geotiff
from scipy.ndimage import shift as nd_shift

from tests.conftest import shared_data

gdal.UseExceptions()


def _optical(size: int = 320) -> np.ndarray:
    """A real optical image (EPFL RGB-NIR 'country' scene), gray float32 in [0, 255]."""
    img = cv2.imread(str(shared_data("vis-nir", "registration", "country", "0003_rgb.jpg")), cv2.IMREAD_GRAYSCALE)
    return img[100:100 + size, 200:200 + size].astype(np.float32)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def optical_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, tuple[float, float]]:
    """Reference + the same scene moved by a known sub-pixel shift (same grid, EPSG:32633)."""
    d = tmp_path_factory.mktemp("optpair")
    img = _optical()
    true = (2.3, -1.6)  # content displacement in the target, pixels (x, y)
    moved = nd_shift(img, (true[1], true[0]), order=3, mode="nearest")
    ref = write_geotiff(d / "ref.tif", img.astype(np.uint16))
    tgt = write_geotiff(d / "tgt.tif", moved.astype(np.float32))
    return ref, tgt, true


@pytest.mark.parametrize("method", ["ncc", "structural"])
def test_optical_optical_subpixel_shift(optical_pair, method: str) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, true = optical_pair
    res = coregister(ref, tgt, None, CoregOptions(method=method, transform="shift", spacing=48, window=64,
                                                  search_radius=8, reference_modality="optical",
                                                  target_modality="optical"))
    # The model maps target pixels to reference pixels: content at target x sits at reference x - shift.
    moved = res.fit.model.apply(np.array([[100.0, 100.0]]))[0] - [100.0, 100.0]
    assert np.hypot(*(moved + np.asarray(true))) < 0.2
    assert res.report["n_inliers"] >= 0.6 * res.report["n_candidates"], res.tiepoints.errors
    assert res.report["rmse_px"] < 0.3


def test_all_outputs_written_and_inputs_untouched(optical_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, true = optical_pair
    before = (_sha(ref), _sha(tgt))
    out = tmp_path / "out"
    res = coregister(ref, tgt, out, CoregOptions(transform="affine", spacing=48, window=64, search_radius=8))
    assert (_sha(ref), _sha(tgt)) == before
    assert set(res.outputs) == set(OUTPUT_NAMES)
    # The set and its manifest; no partial files, staging folder or lock file.
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_NAMES.values(), MANIFEST_NAME])
    assert read_output_set(out) is not None

    report = json.loads((out / "report.json").read_text())
    for key in ("rmse_px", "n_tiepoints", "n_inliers", "runtime_s", "device", "method"):
        assert key in report
    assert report["transform"]["type"] == "affine" and np.asarray(report["transform"]["matrix_px"]).shape == (3, 3)

    # The co-registered raster is a COG whose corrected geotransform puts the content where the
    # reference has it (geotransform update, no resampling for an affine model).
    ds = gdal.Open(str(out / "coregistered.tif"))
    assert ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    assert report["coregistered_by"] == "geotransform"
    gt = ds.GetGeoTransform()
    assert gt[0] == pytest.approx(500000.0 - true[0] * 10.0, abs=2.0)
    assert gt[3] == pytest.approx(5000000.0 + true[1] * 10.0, abs=2.0)

    crs, rows, enabled = read_points(out / "gcps.points")
    assert "32633" in crs or "UTM zone 33N" in crs
    assert len(rows) == report["n_tiepoints"] and enabled.sum() == report["n_inliers"]
    cols = read_tiepoints_gpkg(out / "tiepoints.gpkg")
    assert len(cols["X_SHIFT_PX"]) == report["n_candidates"]
    inl = ~np.asarray(cols["OUTLIER"], bool)
    assert np.median(np.asarray(cols["X_SHIFT_PX"])[inl]) == pytest.approx(true[0], abs=0.2)
    vrt = gdal.Open(str(out / "gcps.vrt"))
    assert vrt.GetGCPCount() == report["n_inliers"]
    shifts = gdal.Open(str(out / "shifts.tif"))
    assert shifts.RasterCount == 2
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "http://" not in html


def test_target_in_another_crs_is_brought_onto_the_reference_grid(optical_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, true = optical_pair
    geo = tmp_path / "tgt_4326.tif"
    gdal.Warp(str(geo), str(tgt), dstSRS="EPSG:4326", resampleAlg="cubic")
    res = coregister(ref, geo, tmp_path / "out", CoregOptions(transform="affine", spacing=48, window=64,
                                                              search_radius=8, target_modality="optical"))
    assert res.report["grid"]["mode"] == "georeferenced"
    assert np.median(res.tiepoints.shift_px[res.tiepoints.inlier], axis=0) == pytest.approx(true, abs=0.35)
    assert res.report["coregistered_by"] == "warp"  # other CRS: warped onto the reference grid
    out = gdal.Open(str(tmp_path / "out" / "coregistered.tif"))
    srs = osr.SpatialReference(wkt=out.GetProjection())
    assert srs.GetAuthorityCode(None) == "32633"


def test_plain_png_pair_in_pixel_coordinates(tmp_path: Path) -> None:
    img = _optical(256).astype(np.uint8)
    moved = np.roll(img, (3, -5), axis=(0, 1))  # content moves by dx=-5, dy=+3
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "b.png"), moved)
    res = coregister(tmp_path / "a.png", tmp_path / "b.png", tmp_path / "out",
                     CoregOptions(transform="shift", spacing=40, window=48, search_radius=10,
                                  reference_modality="optical", target_modality="optical"))
    assert res.report["grid"]["mode"] == "pixel"
    assert np.median(res.tiepoints.shift_px[res.tiepoints.inlier], axis=0) == pytest.approx([-5, 3], abs=0.1)
    crs, rows, enabled = read_points(tmp_path / "out" / "gcps.points")
    assert crs == ""
    # Plain images: sourceX/Y are (col, -row) of the target; mapX/Y (col, -row) of the reference.
    assert np.allclose(rows[:, 2] - rows[:, 0], -5, atol=0.2)
    assert np.allclose(rows[:, 3] - rows[:, 1], -3, atol=0.2)


def test_nodata_edges_shrink_the_overlap_and_holes_are_skipped(tmp_path: Path) -> None:
    img = _optical(256)
    tgt = img.copy()
    tgt[:, :64] = -9999.0  # a nodata edge: outside the overlap
    tgt[120:200, 120:200] = -9999.0  # a nodata hole: candidates there are skipped with a reason
    ref = write_geotiff(tmp_path / "ref.tif", img)
    tgtp = write_geotiff(tmp_path / "tgt.tif", tgt, nodata=-9999.0)
    res = coregister(ref, tgtp, None, CoregOptions(transform="shift", spacing=24, window=32, search_radius=6,
                                                   target_modality="optical", coarse=False))
    assert res.report["grid"]["overlap_px"][0] >= 64
    xy = res.tiepoints.ref_xy
    in_hole = (xy[:, 0] > 130) & (xy[:, 0] < 190) & (xy[:, 1] > 130) & (xy[:, 1] < 190)
    assert in_hole.any()
    assert all("nodata" in res.tiepoints.errors[k] for k in np.nonzero(in_hole)[0])
    assert res.report["n_inliers"] > 0


def test_cancel_leaves_no_output_behind(optical_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, _ = optical_pair
    progress = Progress()
    calls: list[float] = []

    def cb(f: float, m: str) -> None:
        calls.append(f)
        if m.startswith("writing"):
            progress.cancel()

    progress.callback = cb
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        coregister(ref, tgt, out, CoregOptions(spacing=48, window=64, search_radius=8), progress)
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert not any(".partial" in n for n in leftovers)
    assert calls == sorted(calls)


def test_clear_errors(optical_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, _ = optical_pair
    with pytest.raises(RasterInputError, match="does not exist"):
        coregister(tmp_path / "nope.tif", tgt, None)
    with pytest.raises(RasterInputError, match=r"band\(s\) \[4\] do not exist"):
        coregister(ref, tgt, None, target_bands=[4])
    with pytest.raises(ValueError, match="method 'magic' is unknown; choose one of: .*structural"):
        coregister(ref, tgt, None, method="magic")
    far = write_geotiff(tmp_path / "far.tif", _optical(64), origin=(900000, 1000000))
    with pytest.raises(RasterInputError, match="do not overlap"):
        coregister(ref, far, None)


def test_reproducible(optical_pair) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, _ = optical_pair
    opts = CoregOptions(transform="affine", spacing=48, window=64, search_radius=8)
    a, b = coregister(ref, tgt, None, opts), coregister(ref, tgt, None, opts)
    assert np.array_equal(a.fit.model.matrix_px, b.fit.model.matrix_px)


def test_demo_recovers_the_offset_on_real_sentinel_data(tmp_path: Path) -> None:
    from sarcoreg.core.demo import run_demo

    summary = run_demo(tmp_path / "demo")
    assert summary["ok"], summary["text"]
    assert summary["error_px"] < 1.0
    assert (tmp_path / "demo" / "report.html").is_file()


def test_cli_coregister_and_error_exit(optical_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt, _ = optical_pair
    cmd = [sys.executable, "-m", "sarcoreg.core.cli", "coregister", str(ref), str(tgt), "--out", str(tmp_path / "o"),
           "--transform", "shift", "--spacing", "64", "--window", "64", "--radius", "8", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RMSE" in done.stdout and (tmp_path / "o" / "report.html").is_file()
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "missing.tif"), str(tgt), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing.tif" in bad.stderr and "does not exist" in bad.stderr


def test_worker_job_coregister(optical_pair, tmp_path: Path, worker_python: str) -> None:  # type: ignore[no-untyped-def]
    from sarcoreg.core.worker_client import WorkerClient

    ref, tgt, _ = optical_pair
    fractions: list[float] = []
    result = WorkerClient(python=worker_python, on_progress=lambda f, m: fractions.append(f)).run(
        "coregister", {"reference": str(ref), "target": str(tgt), "out_dir": str(tmp_path / "w"),
                       "options": {"transform": "shift", "spacing": 64, "window": 64, "search_radius": 8}})
    assert result["report"]["n_inliers"] > 0 and Path(result["outputs"]["coregistered"]).is_file()
    assert fractions and fractions == sorted(fractions)


def test_keypoint_candidates_and_speckle_filter_on_real_sar(tmp_path: Path) -> None:
    """Real Sentinel-1 dB onto Sentinel-2, keypoint + grid candidates, Lee filter on."""
    from sarcoreg.core.demo import make_demo_inputs

    ref, tgt = make_demo_inputs(tmp_path, (2.0, 1.0))
    res = coregister(ref, tgt, None, CoregOptions(transform="shift", candidates="both", spacing=8, window=64,
                                                  search_radius=8, speckle_filter=True, reference_bands=[1, 2, 3],
                                                  reference_modality="auto", target_modality="auto"))
    assert res.report["reference"]["modality"] == "optical" and res.report["target"]["modality"] == "sar"
    assert res.report["options"]["speckle_filter"] is True
    assert res.report["n_candidates"] > 25  # keypoints came on top of the 5 x 5 grid
    assert np.hypot(*(np.asarray(res.report["median_shift_px"]) - [2.0, 1.0])) < 1.5


def test_cli_lists_matchers() -> None:
    done = subprocess.run([sys.executable, "-m", "sarcoreg.core.cli", "matchers"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert {"structural", "ncc", "mi", "sift"} <= set(names)
