"""The engine's ``shared`` method: match tiles, options, and real runs with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.shared_matching import SharedMatchOptions, match_tiles

from tests.conftest import shared_data


def test_match_tiles_cover_the_overlap_within_the_budget() -> None:
    tiles = match_tiles((10, 20, 5000, 3000), 1024, 16)
    assert 1 < len(tiles) <= 16
    xs = [t[0] for t in tiles]
    ys = [t[1] for t in tiles]
    assert min(xs) == 10 and max(xs) + 1024 == 5010  # first and last tiles touch the overlap's edges
    assert min(ys) == 20 and max(ys) + 1024 == 3020
    assert all(t[2] == 1024 and t[3] == 1024 for t in tiles)


def test_a_small_overlap_is_one_clipped_tile() -> None:
    assert match_tiles((3, 4, 120, 90), 1024, 16) == [(3, 4, 120, 90)]
    assert len(match_tiles((0, 0, 3000, 3000), 1024, 1)) == 1


def test_options_are_checked_early() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\] for method 'shared'"):
        SharedMatchOptions.from_matcher_options({"colour": "red"})
    with pytest.raises(ValueError, match="unknown keypoint matcher 'surf'"):
        CoregOptions(method="shared", matcher_options={"keypoints": "surf"}).validate()
    with pytest.raises(ValueError, match="match_tile must be at least 64"):
        CoregOptions(method="shared", matcher_options={"match_tile": 10}).validate()
    CoregOptions(method="shared", matcher_options={"keypoints": "sift", "device": "cpu"}).validate()


def _shifted_copy(src: Path, out: Path, dx: float, dy: float) -> Path:
    ds = gdal.Translate(str(out), str(src))
    gt = list(ds.GetGeoTransform())
    gt[0] += dx * gt[1]
    gt[3] += dy * gt[5]
    ds.SetGeoTransform(gt)
    ds = None
    return out


def test_sar_to_sar_shift_through_the_shared_modality(tmp_path: Path) -> None:
    """The same SAR scene with its georeferencing moved by (5, -3) px: the shared method finds it."""
    scene = sorted(shared_data("sar-only", "spatialist").rglob("*.tif"))[0]
    ref = Path(gdal.Translate(str(tmp_path / "ref.tif"), str(scene)).GetDescription())
    tgt = _shifted_copy(scene, tmp_path / "tgt.tif", 5.0, -3.0)
    res = coregister(ref, tgt, tmp_path / "out", CoregOptions(
        method="shared", transform="shift", reference_modality="sar", target_modality="sar", coarse=False,
        matcher_options={"keypoints": "sift", "device": "cpu"}))
    assert res.report["n_inliers"] >= 10
    np.testing.assert_allclose(res.report["median_shift_px"], [5.0, -3.0], atol=0.5)
    info = res.report["shared_modality"]
    assert info["model"] == "shared-v2" and info["keypoints"] == "sift" and "previews" not in info
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Shared-modality images of match tile 1" in html
    json.loads((tmp_path / "out" / "report.json").read_text())  # still plain JSON


def test_sar_to_optical_demo_pair_runs_end_to_end(tmp_path: Path) -> None:
    """The demo's Sentinel-1 onto Sentinel-2 through the shipped model and DISK + LightGlue.

    Only the plumbing is asserted here (matches found, inside the images, recorded in the report):
    on this 120 x 120 pair the reduced CPU-trained model is not accurate enough to assert the
    offset (see bench/README.md, shared-modality Table 2).
    """
    ref, tgt = make_demo_inputs(tmp_path / "inputs", (3.4, -2.6))
    res = coregister(ref, tgt, None, CoregOptions(
        method="shared", transform="shift", reference_modality="optical", target_modality="sar",
        reference_bands=[1, 2, 3], target_bands=[1], coarse=False,
        matcher_options={"keypoints": "disk-lightglue", "device": "cpu"}))
    info = res.report["shared_modality"]
    assert info["keypoints"] == "disk-lightglue" and info["model_device"] in ("cpu", "CPUExecutionProvider")
    assert info["kept_matches"] >= 5 and res.report["n_inliers"] >= 1
    tp = res.tiepoints
    assert tp.matcher == "shared+disk-lightglue"
    assert (tp.ref_xy >= 0).all() and (tp.ref_xy <= 120).all()
