"""Generate shared-modality layers, the shared method of Co-register, and the shipped shared chain.

Real QGIS, the real Sentinel-1/2 demo pair, the shipped ``shared-v2`` model run in the worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProcessingModelAlgorithm
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.methods import method_names
from sarcoreg.plugin.algorithms import coregister as coreg_module

from tests.conftest import REPO, shared_data

pytestmark = pytest.mark.qgis

SHIFT = (3.4, -2.6)
CHAIN = REPO / "plugin" / "models" / "shared_chain.model3"


class LogFeedback(QgsProcessingFeedback):
    """Feedback that keeps the log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.lines.append(info)
        super().pushInfo(info)


def _run(alg: Any, params: dict[str, Any], feedback: QgsProcessingFeedback | None = None) -> dict[str, Any]:
    import processing

    return processing.run(alg, params, feedback=feedback or QgsProcessingFeedback())


@pytest.fixture(scope="module")
def pair(sarcoreg_provider, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    return make_demo_inputs(tmp_path_factory.mktemp("shared") / "inputs", SHIFT)


def test_generate_shared_layers(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = pair
    feedback = LogFeedback()
    result = _run("sarcoreg:sharedmodalitylayers", {
        "SAR": str(tgt), "SAR_BANDS": [1], "OPTICAL": str(ref), "OPTICAL_BANDS": [1, 2, 3],
        "SAR_OUTPUT": str(tmp_path / "sar_shared.tif"), "OPTICAL_OUTPUT": str(tmp_path / "opt_shared.tif"),
    }, feedback)
    for key, source in (("SAR_OUTPUT", tgt), ("OPTICAL_OUTPUT", ref)):
        ds, src = gdal.Open(result[key]), gdal.Open(str(source))
        assert ds.RasterCount == 3 and (ds.RasterXSize, ds.RasterYSize) == (src.RasterXSize, src.RasterYSize)
        assert ds.GetGeoTransform() == src.GetGeoTransform()  # the SAR layer keeps its own (offset) grid
        data = ds.ReadAsArray()
        assert data.dtype == np.uint8 and (data > 0).mean() > 0.95 and data.std() > 2.0
    log = "\n".join(feedback.lines)
    assert "on cpu" in log.lower() or "CPUExecutionProvider" in log  # the device used is logged
    assert not list(tmp_path.glob(".*partial*"))


def test_generate_shared_layers_checks_its_inputs(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = pair
    with pytest.raises(QgsProcessingException, match=r"SAR raster \(SAR\), an Optical raster \(OPTICAL\) or both"):
        _run("sarcoreg:sharedmodalitylayers", {"SAR_OUTPUT": str(tmp_path / "a.tif")})
    with pytest.raises(QgsProcessingException, match=r"OPTICAL_BANDS.*band\(s\) \[7\] do not exist"):
        _run("sarcoreg:sharedmodalitylayers", {"OPTICAL": str(ref), "OPTICAL_BANDS": [7],
                                               "OPTICAL_OUTPUT": str(tmp_path / "b.tif")})
    with pytest.raises(QgsProcessingException, match=r"TILE.*multiple of 32"):
        _run("sarcoreg:sharedmodalitylayers", {"SAR": str(tgt), "TILE": 100, "SAR_OUTPUT": str(tmp_path / "c.tif")})
    with pytest.raises(QgsProcessingException, match="unknown model 'no-such-model'"):
        _run("sarcoreg:sharedmodalitylayers", {"SAR": str(tgt), "MODEL": "no-such-model",
                                               "SAR_OUTPUT": str(tmp_path / "d.tif")})
    assert not list(tmp_path.iterdir())


def test_coregister_with_the_shared_method(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real SAR scene against itself with the georeferencing moved by (5, -3) px."""
    scene = sorted(shared_data("sar-only", "spatialist").rglob("*.tif"))[0]
    ref = tmp_path / "ref.tif"
    gdal.Translate(str(ref), str(scene))
    ds = gdal.Translate(str(tmp_path / "tgt.tif"), str(scene))
    gt = list(ds.GetGeoTransform())
    gt[0] += 5.0 * gt[1]
    gt[3] -= 3.0 * gt[5]
    ds.SetGeoTransform(gt)
    ds = None
    feedback = LogFeedback()
    sar = coreg_module.MODALITIES.index("sar")
    result = _run("sarcoreg:coregister", {
        "REFERENCE": str(ref), "TARGET": str(tmp_path / "tgt.tif"), "REFERENCE_MODALITY": sar, "TARGET_MODALITY": sar,
        "METHOD": method_names().index("shared"), "TRANSFORM": coreg_module.TRANSFORMS.index("shift"),
        "KEYPOINTS": coreg_module.KEYPOINT_MATCHERS.index("sift"), "DEVICE": 1, "COARSE": False,
        "OUTPUT": str(tmp_path / "coreg.tif"), "OUTPUT_FOLDER": str(tmp_path / "out"),
    }, feedback)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["shared_modality"]["model"] == "shared-v2" and report["method"] == "shared"
    assert result["N_INLIERS"] >= 10
    np.testing.assert_allclose(report["median_shift_px"], [5.0, -3.0], atol=0.5)
    assert any("Device:" in line for line in feedback.lines)


def test_shipped_shared_chain_model(pair: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = pair
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(CHAIN))
    children = {c.algorithmId() for c in model.childAlgorithms().values()}
    assert children == {"sarcoreg:sharedmodalitylayers", "sarcoreg:extracttiepoints", "sarcoreg:exportgcps",
                        "sarcoreg:warpwithtiepoints"}
    params = {
        "OPTICAL": str(ref), "SAR": str(tgt), "MODEL": "shared-v2",
        "TRANSFORM": coreg_module.TRANSFORMS.index("shift"), "SPACING": 8, "WINDOW": 64, "SEARCH_RADIUS": 8,
        "shared_layers:SAR_OUTPUT": str(tmp_path / "sar_shared.tif"),
        "shared_layers:OPTICAL_OUTPUT": str(tmp_path / "opt_shared.tif"),
        "extract_tie_points:OUTPUT": "TEMPORARY_OUTPUT",
        "export_gcps:OUTPUT_POINTS": str(tmp_path / "m.points"), "export_gcps:OUTPUT_VRT": str(tmp_path / "m.vrt"),
        "warp_with_tie_points:OUTPUT": str(tmp_path / "m.tif"),
    }
    result = _run(model, params)
    assert result["extract_tie_points:OUTPUT"].featureCount() > 0
    assert gdal.Open(str(tmp_path / "m.vrt")).GetGCPCount() >= 3
    warped = gdal.Open(str(tmp_path / "m.tif"))
    assert warped.RasterCount == 2  # the original SAR bands, warped
    # The correction's accuracy depends on the model (reduced CPU run): only its plumbing is asserted.
    assert (tmp_path / "sar_shared.tif").is_file() and (tmp_path / "opt_shared.tif").is_file()
    # The provider ships the model too (its id is the model name).
    again = _run("sarcoreg:Shared-modality co-registration chain",
                 {**params, "warp_with_tie_points:OUTPUT": str(tmp_path / "m2.tif")})
    assert Path(again["warp_with_tie_points:OUTPUT"]).is_file()
