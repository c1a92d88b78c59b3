"""Correspondence map and Train a model in a real QGIS, through ``processing.run`` and the worker.

Real data: the Sentinel-1/2 demo pair with a known offset (maps) and the VIS-NIR "country" pairs
(a tiny RRL-Net training run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)
from sarcoreg.core.demo import make_demo_inputs

from tests.conftest import shared_data

pytestmark = pytest.mark.qgis

SHIFT = (3.4, -2.6)
MAP_ID = "sarcoreg:correspondencemap"
TRAIN_ID = "sarcoreg:trainmodel"
TINY = {"EPOCHS": 1, "STEPS_PER_EPOCH": 2, "PAIRS_PER_IMAGE": 4}


def _run(alg: str, params: dict[str, Any], feedback: QgsProcessingFeedback | None = None) -> dict[str, Any]:
    import processing

    return processing.run(alg, params, feedback=feedback or QgsProcessingFeedback())


@pytest.fixture(scope="module")
def demo(sarcoreg_provider, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    return make_demo_inputs(tmp_path_factory.mktemp("more") / "inputs", SHIFT)


def _pixel_to_wgs84(ref: Path, col: float, row: float) -> QgsPointXY:
    x0, dx, _, y0, _, dy = gdal.Open(str(ref)).GetGeoTransform()
    utm, wgs = QgsCoordinateReferenceSystem("EPSG:32633"), QgsCoordinateReferenceSystem("EPSG:4326")
    tr = QgsCoordinateTransform(utm, wgs, QgsProject.instance())
    return tr.transform(QgsPointXY(x0 + col * dx, y0 + row * dy))


def test_correspondence_map_of_a_point_layer_in_another_crs(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    layer = QgsVectorLayer("Point?crs=EPSG:4326", "pts", "memory")
    grid = [(c, r) for c in (40, 56, 72) for r in (40, 56, 72)]
    feats = []
    for c, r in grid:
        f = QgsFeature()
        f.setGeometry(QgsGeometry.fromPointXY(_pixel_to_wgs84(ref, c, r)))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    out = tmp_path / "maps.tif"
    res = _run(MAP_ID, {"REFERENCE": str(ref), "TARGET": str(tgt), "POINTS": layer, "WINDOW": 64,
                        "SEARCH_RADIUS": 8, "OUTPUT": str(out), "PNG_FOLDER": str(tmp_path / "png")})
    assert res["N_POINTS"] == 9
    assert len(list((tmp_path / "png").glob("map_*.png"))) == 9
    ds = gdal.Open(str(out))
    rgt, mgt = gdal.Open(str(ref)).GetGeoTransform(), ds.GetGeoTransform()
    assert (ds.RasterXSize, ds.RasterYSize) == (32 + 17, 32 + 17)
    arr = ds.GetRasterBand(1).ReadAsArray()
    # Each point's 17 x 17 block: its peak cell lies at point + known shift (within 1 px on most points).
    hits = 0
    for c, r in grid:
        col0 = int(round((rgt[0] + (c - 8.5) * rgt[1] - mgt[0]) / mgt[1]))
        row0 = int(round((rgt[3] + (r - 8.5) * rgt[5] - mgt[3]) / mgt[5]))
        block = arr[row0:row0 + 17, col0:col0 + 17]
        i, j = np.unravel_index(np.nanargmax(block), block.shape)
        hits += int(abs(j - 8 - SHIFT[0]) <= 1.0 and abs(i - 8 - SHIFT[1]) <= 1.0)
    assert hits >= 5, hits


def test_correspondence_map_single_point_and_validation(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    pt = _pixel_to_wgs84(ref, 60, 60)
    out = tmp_path / "one.tif"
    res = _run(MAP_ID, {"REFERENCE": str(ref), "TARGET": str(tgt), "POINT": f"{pt.x()},{pt.y()} [EPSG:4326]",
                        "SEARCH_RADIUS": 8, "OUTPUT": str(out)})
    assert res["N_POINTS"] == 1
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (17, 17)
    rgt = gdal.Open(str(ref)).GetGeoTransform()
    assert ds.GetGeoTransform()[0] == pytest.approx(rgt[0] + 51.5 * rgt[1], abs=1e-3)
    base = {"REFERENCE": str(ref), "TARGET": str(tgt), "OUTPUT": str(tmp_path / "x.tif")}
    with pytest.raises(QgsProcessingException, match="No point given"):
        _run(MAP_ID, base)
    with pytest.raises(QgsProcessingException, match="outside"):
        _run(MAP_ID, {**base, "POINT": "0,0 [EPSG:4326]"})
    with pytest.raises(QgsProcessingException, match="MODEL"):
        _run(MAP_ID, {**base, "POINT": f"{pt.x()},{pt.y()} [EPSG:4326]", "MODEL": "x"})


class _CancelAfter(QgsProcessingFeedback):
    """Cancels at the first progress text that starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.texts: list[str] = []

    def setProgressText(self, text: str) -> None:  # noqa: N802
        self.texts.append(text)
        if text.startswith(self.prefix):
            self.cancel()
        super().setProgressText(text)


def test_train_validation_and_cancel(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = str(shared_data("vis-nir", "registration", "country"))
    models = tmp_path / "models"
    base = {"DATA": data, "OUTPUT_FOLDER": str(tmp_path / "run"), "MODEL_FOLDER": str(models)}
    with pytest.raises(QgsProcessingException, match="MODEL_NAME"):
        _run(TRAIN_ID, {**base, "MODEL_NAME": "bad name"})
    with pytest.raises(QgsProcessingException, match="DATA"):
        _run(TRAIN_ID, {**base, "DATA": str(tmp_path / "missing"), "MODEL_NAME": "m"})
    feedback = _CancelAfter("sarcoreg-train")  # the job's first progress report
    with pytest.raises(QgsProcessingException, match="cancel"):
        _run(TRAIN_ID, {**base, "MODEL_NAME": "cancelled", **TINY, "EPOCHS": 3}, feedback)
    assert feedback.texts and feedback.texts[0].startswith("sarcoreg-train rrlnet --data")
    assert not (models / "cards" / "cancelled.json").exists()
    assert not (models / "cancelled.onnx").exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # about 35 s: a real training run (data loading, 2 steps, ONNX export)
def test_train_tiny_rrlnet_then_use_it(demo: tuple[Path, Path], tmp_path: Path) -> None:
    from processing.core.ProcessingConfig import ProcessingConfig
    from sarcoreg.plugin.settings import SETTING_MODEL_FOLDERS, model_folders

    data = str(shared_data("vis-nir", "registration", "country"))
    models = tmp_path / "models"
    before = ProcessingConfig.getSetting(SETTING_MODEL_FOLDERS)
    try:
        res = _run(TRAIN_ID, {"DATA": data, "OUTPUT_FOLDER": str(tmp_path / "run"), "MODEL_FOLDER": str(models),
                              "MODEL_NAME": "tiny-rrlnet", **TINY})
        card = json.loads(Path(res["CARD"]).read_text())
        assert card["method"] == "rrlnet" and card["name"] == "tiny-rrlnet"
        assert Path(res["MODEL_FILE"]).stat().st_size > 10000
        assert str(models.resolve()) in model_folders()
        history = json.loads((tmp_path / "run" / "history.json").read_text())
        assert len(history["history"]) == 1
        # The new model is selectable by name: the worker gets the folder as SARCOREG_MODEL_PATH.
        ref, tgt = demo
        pt = _pixel_to_wgs84(ref, 60, 60)
        out = _run(MAP_ID, {"REFERENCE": str(ref), "TARGET": str(tgt), "POINT": f"{pt.x()},{pt.y()} [EPSG:4326]",
                            "METHOD": 3, "MODEL": "tiny-rrlnet", "SEARCH_RADIUS": 2, "OUTPUT": str(tmp_path / "r.tif")})
        ds = gdal.Open(out["OUTPUT"])
        arr = ds.GetRasterBand(1).ReadAsArray()
        assert arr.shape == (5, 5) and np.isfinite(arr).any()
        with pytest.raises(QgsProcessingException, match="already exists"):
            _run(TRAIN_ID, {"DATA": data, "OUTPUT_FOLDER": str(tmp_path / "run2"), "MODEL_FOLDER": str(models),
                            "MODEL_NAME": "tiny-rrlnet", **TINY})
        feedback = _CancelAfter("epoch 1/")
        with pytest.raises(QgsProcessingException, match="cancel"):
            _run(TRAIN_ID, {"DATA": data, "OUTPUT_FOLDER": str(tmp_path / "run3"), "MODEL_FOLDER": str(models),
                            "MODEL_NAME": "cancelled", **TINY, "EPOCHS": 3}, feedback)
        assert not (models / "cards" / "cancelled.json").exists() and not (tmp_path / "run3").exists()
    finally:
        ProcessingConfig.setSettingValue(SETTING_MODEL_FOLDERS, before or "")
