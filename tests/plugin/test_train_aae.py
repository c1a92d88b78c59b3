"""Train a model (method aae) in a real QGIS: a tiny run on the real OSMNet pairs, then its map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingFeedback

from tests.conftest import shared_data

pytestmark = pytest.mark.qgis

TRAIN_ID = "sarcoreg:trainmodel"
MAP_ID = "sarcoreg:correspondencemap"


def _run(alg: str, params: dict[str, Any]) -> dict[str, Any]:
    import processing

    return processing.run(alg, params, feedback=QgsProcessingFeedback())


def test_train_tiny_aae_then_map_with_it(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from processing.core.ProcessingConfig import ProcessingConfig
    from sarcoreg.core.demo import make_demo_inputs
    from sarcoreg.plugin.algorithms.correspondence_map import map_methods
    from sarcoreg.plugin.algorithms.train_model import train_methods
    from sarcoreg.plugin.settings import SETTING_MODEL_FOLDERS

    models = tmp_path / "models"
    before = ProcessingConfig.getSetting(SETTING_MODEL_FOLDERS)
    try:
        res = _run(TRAIN_ID, {
            "METHOD": train_methods().index("aae"), "DATA": str(shared_data("sar-optical", "osmnet")),
            "OUTPUT_FOLDER": str(tmp_path / "run"), "MODEL_FOLDER": str(models), "MODEL_NAME": "tiny-aae",
            "EPOCHS": 1, "STEPS_PER_EPOCH": 2, "PAIRS_PER_IMAGE": 1, "PATCH_SIZE": 32, "SEARCH_SIZE": 64,
            "WIDTH": 2,
        })
        card = json.loads(Path(res["CARD"]).read_text())
        assert card["method"] == "aae" and card["inputs"]["patch_size"] == 32
        assert card["training"]["config"]["width"] == 2
        assert sorted(card["files"]) == ["main", "optical_encoder", "sar_encoder"]  # the typed card layout
        assert (models / "tiny-aae-sar-encoder.onnx").is_file()
        ref, tgt = make_demo_inputs(tmp_path / "inputs", (3.4, -2.6))
        ds = gdal.Open(str(ref))
        x0, dx, _, y0, _, dy = ds.GetGeoTransform()
        epsg = ds.GetSpatialRef().GetAuthorityCode(None)
        point = f"{x0 + 60.5 * dx},{y0 + 60.5 * dy} [EPSG:{epsg}]"
        out = _run(MAP_ID, {"REFERENCE": str(ref), "TARGET": str(tgt), "POINT": point,
                            "METHOD": map_methods().index("aae"), "MODEL": "tiny-aae", "WINDOW": 32,
                            "SEARCH_RADIUS": 3, "OUTPUT": str(tmp_path / "aae-map.tif")})
        mds = gdal.Open(out["OUTPUT"])  # keep the dataset alive while its band is read
        arr = mds.GetRasterBand(1).ReadAsArray()
        assert arr.shape == (7, 7) and np.isfinite(arr).any()
    finally:
        ProcessingConfig.setSettingValue(SETTING_MODEL_FOLDERS, before or "")


def test_train_tiny_shared_model_then_generate_layers_with_it(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Train a model (method shared) on the real S1/S2 pairs, then use it by name in the toolbox."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from sarcoreg.core.demo import make_demo_inputs
    from sarcoreg.plugin.algorithms.train_model import train_methods
    from sarcoreg.plugin.settings import SETTING_MODEL_FOLDERS

    models = tmp_path / "models"
    before = ProcessingConfig.getSetting(SETTING_MODEL_FOLDERS)
    try:
        res = _run(TRAIN_ID, {
            "METHOD": train_methods().index("shared"), "DATA": str(shared_data("s1s2", "bigearthnet-configilm")),
            "OUTPUT_FOLDER": str(tmp_path / "run"), "MODEL_FOLDER": str(models), "MODEL_NAME": "tiny-shared",
            "EPOCHS": 1, "STEPS_PER_EPOCH": 2, "PATCH_SIZE": 64, "DEVICE": 1,
        })
        card = json.loads(Path(res["CARD"]).read_text())
        assert card["method"] == "shared" and card["files"]["optical"]["path"] == "tiny-shared-optical.onnx"
        assert (models / "tiny-shared-sar.onnx").is_file() and (models / "tiny-shared-optical.onnx").is_file()
        _, tgt = make_demo_inputs(tmp_path / "inputs", (0.0, 0.0))
        out = _run("sarcoreg:sharedmodalitylayers", {"SAR": str(tgt), "SAR_BANDS": [1], "MODEL": "tiny-shared",
                                                     "SAR_OUTPUT": str(tmp_path / "sar_shared.tif")})
        assert gdal.Open(out["SAR_OUTPUT"]).RasterCount == 3
    finally:
        ProcessingConfig.setSettingValue(SETTING_MODEL_FOLDERS, before or "")
