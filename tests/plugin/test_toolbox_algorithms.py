"""The tie-point tools in a real QGIS on the real Sentinel-1/2 demo pair with a known offset.

Extract tie points -> Export GCPs -> Warp with tie points -> Evaluate, the shipped model, a batch
loop, ``qgis_process`` and an offscreen map render.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor, QImage
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.exports import read_points
from sarcoreg.core.sample_data import bigearthnet_pairs
from sarcoreg.plugin.algorithms import coregister as coreg_module

from tests.conftest import REPO

pytestmark = pytest.mark.qgis

SHIFT = (3.4, -2.6)
SHIFT_INDEX = coreg_module.TRANSFORMS.index("shift")
SMALL = {"TRANSFORM": SHIFT_INDEX, "SPACING": 8, "WINDOW": 64, "SEARCH_RADIUS": 8, "REFERENCE_BANDS": [1, 2, 3]}
MODEL = REPO / "plugin" / "models" / "coregister_chain.model3"
MODEL_ID = "sarcoreg:Co-registration chain"
TOOL_IDS = ["sarcoreg:extracttiepoints", "sarcoreg:exportgcps", "sarcoreg:warpwithtiepoints", "sarcoreg:evaluate"]


def _run(alg: str, params: dict[str, Any]) -> dict[str, Any]:
    import processing

    return processing.run(alg, params, feedback=QgsProcessingFeedback())


@pytest.fixture(scope="module")
def demo(sarcoreg_provider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The demo pair and one Extract tie points run written to a GeoPackage."""
    root = tmp_path_factory.mktemp("tools")
    ref, tgt = make_demo_inputs(root / "inputs", SHIFT)
    tiepoints = root / "tiepoints.gpkg"
    result = _run("sarcoreg:extracttiepoints", {"REFERENCE": str(ref), "TARGET": str(tgt), **SMALL,
                                               "OUTPUT": str(tiepoints)})
    return {"root": root, "ref": ref, "tgt": tgt, "tiepoints": tiepoints, "result": result}


def _check_layer(ref: Path, step: int = 20) -> tuple[QgsVectorLayer, list[tuple[float, float, float, float]]]:
    """Check points with known truth: a feature at reference pixel p is at target pixel p (same index).

    ``make_demo_inputs`` moves only the target's georeferencing, so the true map position of target
    pixel p is the reference's map position of p.
    """
    x0, dx, _, y0, _, dy = gdal.Open(str(ref)).GetGeoTransform()
    layer = QgsVectorLayer("Point?crs=EPSG:32633", "check", "memory")
    layer.dataProvider().addAttributes([QgsField("COL", QVariant.Double), QgsField("ROW", QVariant.Double)])
    layer.updateFields()
    rows = []
    for c in range(10, 110, step):
        for r in range(10, 110, step):
            col, row = c + 0.5, r + 0.5
            mx, my = x0 + col * dx, y0 + row * dy
            feat = QgsFeature(layer.fields())
            feat.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(mx, my)))
            feat.setAttributes([col, row])
            layer.dataProvider().addFeature(feat)
            rows.append((mx, my, col, row))
    return layer, rows


def test_algorithms_registered_with_help(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    registry = QgsApplication.processingRegistry()
    for alg_id in [*TOOL_IDS, MODEL_ID]:
        alg = registry.algorithmById(alg_id)
        assert alg is not None, alg_id
    for alg_id in TOOL_IDS:
        alg = registry.algorithmById(alg_id)
        assert len(alg.shortHelpString()) > 300 and alg.shortDescription(), alg_id
    extract = registry.algorithmById("sarcoreg:extracttiepoints")
    coreg = registry.algorithmById("sarcoreg:coregister")
    inputs = {d.name() for d in coreg.parameterDefinitions()} - {"OUTPUT", "OUTPUT_TIEPOINTS", "OUTPUT_FOLDER"}
    assert {d.name() for d in extract.parameterDefinitions()} == inputs | {"OUTPUT"}
    assert not [o for o in extract.outputDefinitions() if o.type() == "outputRaster"]
    warp = registry.algorithmById("sarcoreg:warpwithtiepoints")
    assert warp.parameterDefinition("TRANSFORM").options() == coreg_module.TRANSFORMS


def test_extract_writes_only_tie_points(demo: dict[str, Any]) -> None:
    result = demo["result"]
    layer = QgsVectorLayer(str(demo["tiepoints"]), "tp", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    names = set(layer.fields().names())
    assert {"TGT_X_IM", "TGT_Y_IM", "X_IM", "Y_IM", "OUTLIER", "RESIDUAL_PX"} <= names
    inliers = [f for f in layer.getFeatures() if not f["OUTLIER"]]
    assert len(inliers) == result["N_INLIERS"] >= 5
    dx = statistics.median(f["X_SHIFT_PX"] for f in inliers)
    dy = statistics.median(f["Y_SHIFT_PX"] for f in inliers)
    assert abs(dx - SHIFT[0]) < 1.0 and abs(dy - SHIFT[1]) < 1.0, (dx, dy)
    worker_dir = Path(result["REPORT_JSON"]).parent
    # No raster; the hidden manifest of the output set (core.output_set) is the only other file.
    assert sorted(p.name for p in worker_dir.iterdir()) == [".sarcoreg-set.json", "report.json", "tiepoints.gpkg"]
    report = json.loads(Path(result["REPORT_JSON"]).read_text(encoding="utf-8"))
    assert report["options"]["write_outputs"] == ["tiepoints", "report_json"] and report["device"] == "cpu"


def test_export_gcps_files_text_and_outliers(demo: dict[str, Any]) -> None:
    root, tgt = demo["root"], demo["tgt"]
    result = _run("sarcoreg:exportgcps", {"INPUT": str(demo["tiepoints"]), "TARGET": str(tgt),
                                          "OUTPUT_POINTS": str(root / "g.points"), "OUTPUT_VRT": str(root / "g.vrt")})
    n = int(result["N_GCPS"])
    assert n == demo["result"]["N_INLIERS"]
    crs, rows, enabled = read_points(root / "g.points")
    assert "32633" in crs and rows.shape == (n, 4) and enabled.all()
    vrt = gdal.Open(result["OUTPUT_VRT"])
    assert vrt.GetGCPCount() == n and "32633" in vrt.GetGCPProjection()
    # The -gcp text works with gdal_translate as documented.
    args = result["GCP_ARGS"]
    assert args.count("-gcp ") == n and args.endswith("-a_srs EPSG:32633")
    translated = gdal.Translate(str(root / "from_args.vrt"), str(tgt), options=f"-of VRT {args}")
    assert translated.GetGCPCount() == n
    gcp = translated.GetGCPs()[0]
    assert (gcp.GCPPixel, gcp.GCPX) == pytest.approx((vrt.GetGCPs()[0].GCPPixel, vrt.GetGCPs()[0].GCPX))

    layer = QgsVectorLayer(str(demo["tiepoints"]), "tp", "ogr")
    placed = sum(1 for f in layer.getFeatures() if f["TGT_X_IM"] != -9999)
    with_outliers = _run("sarcoreg:exportgcps", {"INPUT": str(demo["tiepoints"]), "TARGET": str(tgt),
                                                 "INCLUDE_OUTLIERS": True, "OUTPUT_POINTS": str(root / "all.points"),
                                                 "OUTPUT_VRT": "TEMPORARY_OUTPUT"})
    _, rows_all, enabled_all = read_points(root / "all.points")
    assert len(rows_all) == placed == int(with_outliers["N_GCPS"]) and int(enabled_all.sum()) == n


def test_warp_shift_corrects_the_georeferencing(demo: dict[str, Any]) -> None:
    out = demo["root"] / "warped_shift.tif"
    result = _run("sarcoreg:warpwithtiepoints", {"INPUT": str(demo["tiepoints"]), "TARGET": str(demo["tgt"]),
                                                 "TRANSFORM": SHIFT_INDEX, "OUTPUT": str(out)})
    ref_gt = gdal.Open(str(demo["ref"])).GetGeoTransform()
    ds = gdal.Open(result["OUTPUT"])
    after = (ds.GetGeoTransform()[0] - ref_gt[0], ds.GetGeoTransform()[3] - ref_gt[3])
    assert abs(after[0]) < 10.0 and abs(after[1]) < 10.0, after  # was (34, 26) m before
    assert ds.RasterCount == 2 and ds.GetMetadataItem("LAYOUT", "IMAGE_STRUCTURE") == "COG"
    assert result["N_INLIERS"] >= 5 and result["RMSE_PX"] < 2.0
    assert not list(demo["root"].glob(".*partial*"))


def test_warp_poly1_onto_the_reference_grid(demo: dict[str, Any]) -> None:
    result = _run("sarcoreg:warpwithtiepoints", {
        "INPUT": str(demo["tiepoints"]), "TARGET": str(demo["tgt"]), "REFERENCE": str(demo["ref"]),
        "TRANSFORM": coreg_module.TRANSFORMS.index("poly1"), "RESAMPLING": 0, "OUTPUT": "TEMPORARY_OUTPUT"})
    ref, ds = gdal.Open(str(demo["ref"])), gdal.Open(result["OUTPUT"])
    assert ds.GetGeoTransform() == pytest.approx(ref.GetGeoTransform())
    assert (ds.RasterXSize, ds.RasterYSize) == (ref.RasterXSize, ref.RasterYSize)


def test_evaluate_before_and_after_with_layer_and_points_file(demo: dict[str, Any]) -> None:
    root = demo["root"]
    warped = root / "for_eval.tif"
    _run("sarcoreg:warpwithtiepoints", {"INPUT": str(demo["tiepoints"]), "TARGET": str(demo["tgt"]),
                                        "TRANSFORM": SHIFT_INDEX, "OUTPUT": str(warped)})
    layer, rows = _check_layer(demo["ref"])
    before = _run("sarcoreg:evaluate", {"RASTER": str(demo["tgt"]), "CHECKPOINTS": layer, "PIXEL_X_FIELD": "COL",
                                        "PIXEL_Y_FIELD": "ROW", "OUTPUT": "TEMPORARY_OUTPUT",
                                        "OUTPUT_HTML": str(root / "before.html")})
    assert before["RMSE"] == pytest.approx(math.hypot(34.0, 26.0), abs=1e-6)  # the applied offset, metres
    assert before["RMSE_X"] == pytest.approx(34.0) and before["RMSE_PX"] == pytest.approx(math.hypot(3.4, 2.6))
    assert before["N_CHECKPOINTS"] == len(rows) == before["OUTPUT"].featureCount()
    feat = next(before["OUTPUT"].getFeatures())
    assert feat["DX"] == pytest.approx(34.0) and feat["DY"] == pytest.approx(26.0)
    assert "check-point evaluation" in (root / "before.html").read_text(encoding="utf-8")

    after = _run("sarcoreg:evaluate", {"RASTER": str(warped), "CHECKPOINTS": layer, "PIXEL_X_FIELD": "COL",
                                       "PIXEL_Y_FIELD": "ROW", "OUTPUT": "TEMPORARY_OUTPUT",
                                       "OUTPUT_HTML": "TEMPORARY_OUTPUT"})
    assert after["RMSE"] < 10.0 and after["CE90"] < 10.0 and after["RMSE"] < before["RMSE"] / 4

    points = root / "check.points"
    points.write_text("mapX,mapY,sourceX,sourceY,enable\n" + "".join(
        f"{mx!r},{my!r},{c!r},{-r!r},1\n" for mx, my, c, r in rows) + "1,1,1,1,0\n", encoding="utf-8")
    from_file = _run("sarcoreg:evaluate", {"RASTER": str(warped), "CHECKPOINTS_FILE": str(points),
                                           "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_HTML": "TEMPORARY_OUTPUT"})
    assert from_file["N_CHECKPOINTS"] == len(rows) and from_file["RMSE"] == pytest.approx(after["RMSE"])


def test_shipped_model_file_and_provider_model(demo: dict[str, Any], sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    import processing

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL))
    children = {c.algorithmId() for c in model.childAlgorithms().values()}
    assert children == {"sarcoreg:extracttiepoints", "sarcoreg:exportgcps", "sarcoreg:warpwithtiepoints"}
    out = demo["root"] / "model"
    out.mkdir()
    params = {"REFERENCE": str(demo["ref"]), "TARGET": str(demo["tgt"]), "TRANSFORM": SHIFT_INDEX, "SPACING": 8,
              "WINDOW": 64, "SEARCH_RADIUS": 8, "extract_tie_points:OUTPUT": "TEMPORARY_OUTPUT",
              "export_gcps:OUTPUT_POINTS": str(out / "m.points"), "export_gcps:OUTPUT_VRT": str(out / "m.vrt"),
              "warp_with_tie_points:OUTPUT": str(out / "m.tif")}
    result = processing.run(model, params, feedback=QgsProcessingFeedback())
    assert result["extract_tie_points:OUTPUT"].featureCount() > 0
    assert read_points(out / "m.points")[1].shape[0] >= 5 and gdal.Open(str(out / "m.vrt")).GetGCPCount() >= 5
    ref_gt, gt = gdal.Open(str(demo["ref"])).GetGeoTransform(), gdal.Open(str(out / "m.tif")).GetGeoTransform()
    assert abs(gt[0] - ref_gt[0]) < 10.0 and abs(gt[3] - ref_gt[3]) < 10.0, gt  # offset (34, 26) m corrected
    again = _run(MODEL_ID, {**params, "warp_with_tie_points:OUTPUT": str(out / "m2.tif")})
    assert Path(again["warp_with_tie_points:OUTPUT"]).is_file()


def test_batch_loop_over_two_pairs(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The documented console loop: extract then warp, for each pair."""
    for k, (pair, shift) in enumerate(zip(bigearthnet_pairs()[:2], [(-4.2, 1.5), (2.0, 5.0)], strict=True)):
        ref, tgt = make_demo_inputs(tmp_path / f"pair{k}", shift, pair)
        tp = _run("sarcoreg:extracttiepoints", {"REFERENCE": str(ref), "TARGET": str(tgt), **SMALL,
                                                "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
        warped = _run("sarcoreg:warpwithtiepoints", {"INPUT": tp, "TARGET": str(tgt), "TRANSFORM": SHIFT_INDEX,
                                                     "OUTPUT": str(tmp_path / f"pair{k}.tif")})["OUTPUT"]
        ref_gt, gt = gdal.Open(str(ref)).GetGeoTransform(), gdal.Open(warped).GetGeoTransform()
        assert abs(gt[0] - ref_gt[0]) < 10.0 and abs(gt[3] - ref_gt[3]) < 10.0, (pair.name, shift, gt)


def test_qgis_process_runs_export_gcps(demo: dict[str, Any], worker_python: str, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sarcoreg").symlink_to(REPO, target_is_directory=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "cfg"),
               SARCOREG_PYTHON=worker_python, QGIS_PLUGINPATH=str(plugins))
    exe = "/usr/bin/qgis_process.bin"
    assert subprocess.run([exe, "plugins", "enable", "sarcoreg"], env=env, capture_output=True).returncode == 0
    run = subprocess.run(
        [exe, "run", "sarcoreg:exportgcps", "--json", "--", f"INPUT={demo['tiepoints']}", f"TARGET={demo['tgt']}",
         f"OUTPUT_POINTS={tmp_path / 'q.points'}", f"OUTPUT_VRT={tmp_path / 'q.vrt'}"],
        env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout[run.stdout.index("{"):])["results"]
    assert float(results["N_GCPS"]) == demo["result"]["N_INLIERS"] and "-gcp" in results["GCP_ARGS"]
    assert read_points(tmp_path / "q.points")[1].shape[0] == demo["result"]["N_INLIERS"]


def test_render_tiepoints_over_reference_offscreen(demo: dict[str, Any], tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from render_readme_picture import render_tiepoints_png
    finally:
        sys.path.pop(0)
    png = render_tiepoints_png(demo["ref"], demo["tiepoints"], tmp_path / "map.png", size=240)
    image = QImage(str(png))
    assert (image.width(), image.height()) == (240, 240)
    colours = [QColor(c) for _, _, c in coreg_module.TiePointStyler.CLASSES] + [QColor("#7f7f7f")]
    hits = 0
    distinct = set()
    for y in range(0, 240, 1):
        for x in range(0, 240, 1):
            pixel = image.pixelColor(x, y)
            distinct.add(pixel.rgb())
            if any(abs(pixel.red() - c.red()) + abs(pixel.green() - c.green()) + abs(pixel.blue() - c.blue()) < 12
                   for c in colours):
                hits += 1
    assert len(distinct) > 100  # the raster is drawn, not a blank image
    assert hits > 20  # tie-point symbols are drawn


def _memory_points(fields: list[str], n: int, crs: str = "EPSG:32633") -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Point?crs={crs}" if crs else "Point", "pts", "memory")
    if not crs:
        layer.setCrs(QgsCoordinateReferenceSystem())  # no CRS at all
    layer.dataProvider().addAttributes([QgsField(f, QVariant.Double) for f in fields])
    layer.updateFields()
    for k in range(n):
        feat = QgsFeature(layer.fields())
        feat.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(404500.0 + k, 5342000.0)))
        feat.setAttributes([float(k)] * len(fields))
        layer.dataProvider().addFeature(feat)
    return layer


@pytest.mark.parametrize(
    ("alg", "make", "names"),
    [
        ("sarcoreg:exportgcps", lambda d: {"INPUT": _memory_points(["TGT_X_IM", "TGT_Y_IM"], 0)},
         ("INPUT", "no features")),
        ("sarcoreg:exportgcps", lambda d: {"INPUT": _memory_points(["A"], 3)}, ("INPUT", "TGT_X_IM, TGT_Y_IM")),
        ("sarcoreg:warpwithtiepoints", lambda d: {"INPUT": _memory_points(["TGT_X_IM", "TGT_Y_IM"], 3)},
         ("REFERENCE", "X_IM")),
        ("sarcoreg:warpwithtiepoints",
         lambda d: {"INPUT": _memory_points(["TGT_X_IM", "TGT_Y_IM", "X_IM", "Y_IM", "X_MAP", "Y_MAP"], 3, "")},
         ("INPUT", "no CRS")),
        ("sarcoreg:evaluate", lambda d: {"RASTER": str(d["tgt"]), "CHECKPOINTS": _memory_points(["COL"], 3)},
         ("CHECKPOINTS", "TGT_X_IM")),
        ("sarcoreg:evaluate", lambda d: {"RASTER": str(d["tgt"]), "CHECKPOINTS": _memory_points(
            ["TGT_X_IM", "TGT_Y_IM"], 3, ""), "CHECKPOINTS_FILE": ""}, ("CHECKPOINTS", "no CRS")),
        ("sarcoreg:evaluate", lambda d: {"RASTER": str(d["tgt"])}, ("CHECKPOINTS", "CHECKPOINTS_FILE")),
    ],
)
def test_validation_names_the_parameter(demo: dict[str, Any], alg: str, make: Any, names: tuple[str, ...]) -> None:
    params: dict[str, Any] = {"TARGET": str(demo["tgt"]), "OUTPUT": str(demo["root"] / "never.tif"),
                              "OUTPUT_POINTS": str(demo["root"] / "never.points"),
                              "OUTPUT_VRT": str(demo["root"] / "never.vrt"), **make(demo)}
    if alg == "sarcoreg:evaluate":
        params.update(OUTPUT="TEMPORARY_OUTPUT", OUTPUT_HTML=str(demo["root"] / "never.html"))
    with pytest.raises(QgsProcessingException) as info:
        _run(alg, params)
    for name in names:
        assert name in str(info.value), (name, str(info.value))
    assert not list(demo["root"].glob("never.*"))
