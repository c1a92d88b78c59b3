"""``sarcoreg:coregister`` in a real QGIS on real Sentinel-1/2 pairs with a known georeferencing offset."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from osgeo import gdal
from qgis.core import (
    NULL,
    QgsApplication,
    QgsExpression,
    QgsExpressionContext,
    QgsExpressionContextUtils,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterDefinition,
    QgsProject,
    QgsRasterLayer,
    QgsRuleBasedRenderer,
    QgsVectorLayer,
)
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.methods import method_names
from sarcoreg.core.sample_data import bigearthnet_pairs
from sarcoreg.plugin.algorithms import coregister as alg_module

from tests.plugin.feedback import LogFeedback

pytestmark = pytest.mark.qgis

ALG = "sarcoreg:coregister"
SHIFT = (3.4, -2.6)
#: The demo's matching settings for these 120 x 120 px patches (shift transform).
SMALL = {
    "TRANSFORM": alg_module.TRANSFORMS.index("shift"),
    "SPACING": 8,
    "WINDOW": 64,
    "SEARCH_RADIUS": 8,
    "REFERENCE_BANDS": [1, 2, 3],
}
AROSICS_FIELDS = {
    "POINT_ID",
    "X_IM",
    "Y_IM",
    "X_MAP",
    "Y_MAP",
    "X_WIN_SIZE",
    "Y_WIN_SIZE",
    "X_SHIFT_PX",
    "Y_SHIFT_PX",
    "X_SHIFT_M",
    "Y_SHIFT_M",
    "ABS_SHIFT",
    "ANGLE",
    "RELIABILITY",
    "LAST_ERR",
    "L1_OUTLIER",
    "L2_OUTLIER",
    "OUTLIER",
    "RESIDUAL_PX",
}


_Log = LogFeedback


def _inlier_median_shift(layer: QgsVectorLayer) -> tuple[float, float]:
    inl = [f for f in layer.getFeatures() if not f["OUTLIER"]]
    return statistics.median(f["X_SHIFT_PX"] for f in inl), statistics.median(f["Y_SHIFT_PX"] for f in inl)


def _same(a: Any, b: Any) -> bool:
    """Equal values; NULL and NaN count as equal to themselves."""
    missing = [v is None or v == NULL or (isinstance(v, float) and v != v) for v in (a, b)]
    return missing[0] and missing[1] if any(missing) else a == b


@pytest.fixture(scope="module")
def demo_run(sarcoreg_provider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One run on the demo pair, every output written to a chosen place, layers set to load."""
    import processing

    root = tmp_path_factory.mktemp("coreg")
    ref, tgt = make_demo_inputs(root / "inputs", SHIFT)
    out = root / "out"
    tiepoints = out / "tiepoints_out.gpkg"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = _Log()
    params = {
        "REFERENCE": str(ref),
        "TARGET": str(tgt),
        **SMALL,
        "OUTPUT": str(out / "coregistered_s1.tif"),
        # Set to load into a project, so the tie-point styling post-processor is attached.
        "OUTPUT_TIEPOINTS": QgsProcessingOutputLayerDefinition(str(tiepoints), QgsProject.instance()),
        "OUTPUT_FOLDER": str(out / "files"),
    }
    result = processing.run(ALG, params, context=context, feedback=feedback)
    return {
        "ref": ref,
        "tgt": tgt,
        "out": out,
        "result": result,
        "context": context,
        "log": feedback.lines,
        "tiepoints": tiepoints,
    }


def test_plugin_lists_match_the_core(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    """The plugin's copies of the matcher list, transforms and defaults agree with the engine."""
    from sarcoreg.core.engine import CoregOptions
    from sarcoreg.core.estimation import TRANSFORM_KINDS
    from sarcoreg.core.keypoints import available_keypoint_matchers
    from sarcoreg.core.matchers.base import available_matchers

    assert set(available_matchers()) == set(method_names(kind="window"))
    assert set(method_names(kind="keypoint")) == {"shared"}
    assert set(alg_module.KEYPOINT_MATCHERS) <= set(available_keypoint_matchers())
    assert list(alg_module.TRANSFORMS) == list(TRANSFORM_KINDS)
    core_defaults = asdict(CoregOptions())
    assert {k: core_defaults[k] for k in alg_module.DEFAULTS} == alg_module.DEFAULTS

    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Co-register SAR to optical"
    p = alg.parameterDefinition
    # 0 = automatic sizes (CoregOptions' None), chosen from the overlap and pixel size.
    assert p("SPACING").defaultValue() == 0 and p("WINDOW").defaultValue() == 0
    assert p("SEARCH_RADIUS").defaultValue() == 0
    assert alg_module.TRANSFORMS[p("TRANSFORM").defaultValue()] == "affine"
    advanced = {
        d.name() for d in alg.parameterDefinitions() if d.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    }
    assert advanced == {
        "REFERENCE_BANDS",
        "TARGET_BANDS",
        "REFERENCE_MODALITY",
        "TARGET_MODALITY",
        "SAR_SCALE",
        "SPECKLE_FILTER",
        "COARSE",
        "MIN_RELIABILITY",
        "RANSAC_THRESHOLD",
        "SEED",
        "KEEP_UNCERTAIN",
        "DEVICE",
        "MODEL",
        "KEYPOINTS",
    }
    outputs = {o.name() for o in alg.outputDefinitions()}
    assert {
        "OUTPUT",
        "OUTPUT_TIEPOINTS",
        "OUTPUT_FOLDER",
        "RMSE_PX",
        "RMSE_MAP",
        "N_TIEPOINTS",
        "N_INLIERS",
        "REPORT_HTML",
        "POINTS_FILE",
        "STATUS",
        "REASONS",
        "RMSE_CV_PX",
    } <= outputs
    for words in ("Reference raster", "Target raster", "Tie points", "RMSE_PX", "Matching window", "Device"):
        assert words in alg.shortHelpString(), words


def test_outputs_and_numbers(demo_run: dict[str, Any]) -> None:
    result, out = demo_run["result"], demo_run["out"]
    assert Path(result["OUTPUT"]) == out / "coregistered_s1.tif" and Path(result["OUTPUT"]).is_file()
    files = out / "files"
    for name in ("gcps.points", "gcps.vrt", "shifts.tif", "report.html", "report.json", "tiepoints.gpkg"):
        assert (files / name).is_file(), name
    assert not list(out.rglob(".*partial*"))
    assert isinstance(result["RMSE_PX"], float) and 0.0 <= result["RMSE_PX"] < 2.0
    assert result["RMSE_MAP"] == pytest.approx(10.0 * result["RMSE_PX"])  # 10 m pixels
    assert 5 <= result["N_INLIERS"] <= result["N_TIEPOINTS"]
    assert Path(result["REPORT_HTML"]).read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert Path(result["POINTS_FILE"]).read_text(encoding="utf-8").startswith("#CRS: ")
    log = "\n".join(demo_run["log"])
    assert "Device: cpu" in log and "worker time" in log


def test_verdict_ok_on_the_demo_pair(demo_run: dict[str, Any]) -> None:
    result = demo_run["result"]
    assert result["STATUS"] == "ok" and result["REASONS"] == ""
    assert isinstance(result["RMSE_CV_PX"], float) and result["RMSE_CV_PX"] > result["RMSE_PX"]
    assert any(line.startswith("Verdict: ok") for line in demo_run["log"])


def test_uncertain_is_kept_with_a_warning_or_refused_and_failed_raises(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Real patches with a coarse grid: 3 tie points (uncertain), then 2 (failed)."""
    import processing

    ref, tgt = make_demo_inputs(tmp_path / "inputs", SHIFT)
    base = {"REFERENCE": str(ref), "TARGET": str(tgt), **SMALL}
    feedback = _Log()
    kept = processing.run(ALG, {**base, "SPACING": 20, "OUTPUT": str(tmp_path / "kept.tif")}, feedback=feedback)
    assert kept["STATUS"] == "uncertain" and "tie points agree" in kept["REASONS"]
    assert Path(kept["OUTPUT"]).is_file()
    assert any("UNCERTAIN" in text and not fatal for text, fatal in feedback.errors), feedback.errors

    with pytest.raises(QgsProcessingException, match="uncertain.*tie points agree"):
        processing.run(ALG, {**base, "SPACING": 20, "KEEP_UNCERTAIN": False, "OUTPUT": str(tmp_path / "no.tif")},
                       feedback=QgsProcessingFeedback())
    assert not (tmp_path / "no.tif").exists()

    with pytest.raises(QgsProcessingException, match="failed.*tie points agree") as info:
        processing.run(ALG, {**base, "SPACING": 30, "OUTPUT": str(tmp_path / "failed.tif"),
                             "OUTPUT_FOLDER": str(tmp_path / "failed_files")}, feedback=QgsProcessingFeedback())
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "failed.tif").exists()
    assert not (tmp_path / "failed_files").exists() or not any((tmp_path / "failed_files").rglob("*.*"))


def test_recovers_the_applied_offset(demo_run: dict[str, Any]) -> None:
    report = json.loads((demo_run["out"] / "files" / "report.json").read_text(encoding="utf-8"))
    layer = QgsVectorLayer(str(demo_run["tiepoints"]), "tp", "ogr")
    dx, dy = _inlier_median_shift(layer)
    assert abs(dx - SHIFT[0]) < 1.0 and abs(dy - SHIFT[1]) < 1.0, (dx, dy)
    assert (dx, dy) == pytest.approx(tuple(report["median_shift_px"]), abs=1e-6)
    assert report["n_inliers"] == demo_run["result"]["N_INLIERS"]


def test_tiepoint_sink_fields_crs_and_features(demo_run: dict[str, Any]) -> None:
    layer = QgsVectorLayer(str(demo_run["tiepoints"]), "tp", "ogr")
    assert layer.isValid()
    names = set(layer.fields().names())
    assert AROSICS_FIELDS <= names
    assert layer.crs() == QgsRasterLayer(str(demo_run["ref"]), "ref").crs() and layer.crs().authid() == "EPSG:32633"
    worker = QgsVectorLayer(f"{demo_run['out'] / 'files' / 'tiepoints.gpkg'}|layername=tiepoints", "w", "ogr")
    assert layer.featureCount() == worker.featureCount() > 0
    src = {f["POINT_ID"]: f for f in worker.getFeatures()}
    for feat in layer.getFeatures():
        other = src[feat["POINT_ID"]]
        assert feat.geometry().asPoint() == other.geometry().asPoint()
        for name in AROSICS_FIELDS:
            assert _same(feat[name], other[name]), (name, feat[name], other[name])


def test_coregistered_geotransform_is_corrected(demo_run: dict[str, Any]) -> None:
    ref_gt = gdal.Open(str(demo_run["ref"])).GetGeoTransform()
    tgt = gdal.Open(str(demo_run["tgt"]))
    out = gdal.Open(demo_run["result"]["OUTPUT"])
    before = (tgt.GetGeoTransform()[0] - ref_gt[0], tgt.GetGeoTransform()[3] - ref_gt[3])
    after = (out.GetGeoTransform()[0] - ref_gt[0], out.GetGeoTransform()[3] - ref_gt[3])
    assert before == pytest.approx((34.0, 26.0))  # the applied offset, metres
    assert abs(after[0]) < 10.0 and abs(after[1]) < 10.0, after  # within one 10 m pixel
    assert out.RasterCount == tgt.RasterCount == 2
    assert (out.RasterXSize, out.RasterYSize) == (tgt.RasterXSize, tgt.RasterYSize)


def test_tiepoint_layer_styling(demo_run: dict[str, Any]) -> None:
    """The post-processor attached to the loaded tie points gives outliers and residual classes."""
    context: QgsProcessingContext = demo_run["context"]
    details = context.layersToLoadOnCompletion()
    assert len(details) == 1
    styler = next(iter(details.values())).postProcessor()
    assert styler is not None
    layer = QgsVectorLayer(str(demo_run["tiepoints"]), "tp", "ogr")
    styler.postProcessLayer(layer, context, QgsProcessingFeedback())
    renderer = layer.renderer()
    assert isinstance(renderer, QgsRuleBasedRenderer)
    rules = renderer.rootRule().children()
    assert len(rules) == 5 and rules[0].filterExpression() == '"OUTLIER"'
    expr_context = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
    for feat in layer.getFeatures():  # every point falls in exactly one class
        expr_context.setFeature(feat)
        hits = [i for i, r in enumerate(rules) if QgsExpression(r.filterExpression()).evaluate(expr_context)]
        assert len(hits) == 1 and (hits[0] == 0) == bool(feat["OUTLIER"]), (feat["POINT_ID"], hits)


def test_batch_over_three_real_pairs(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Different scenes and offsets; temporary outputs, one raster written as ERDAS Imagine."""
    import processing

    offsets = [(-4.2, 1.5), (2.0, 5.0), (3.4, -2.6)]
    outputs = ["TEMPORARY_OUTPUT", str(tmp_path / "pair1_coregistered.img"), "TEMPORARY_OUTPUT"]
    for k, (pair, shift) in enumerate(zip(bigearthnet_pairs()[:3], offsets, strict=True)):
        ref, tgt = make_demo_inputs(tmp_path / f"pair{k}", shift, pair)
        params = {
            "REFERENCE": str(ref),
            "TARGET": str(tgt),
            **SMALL,
            "OUTPUT": outputs[k],
            "OUTPUT_TIEPOINTS": "TEMPORARY_OUTPUT",
        }
        result = processing.run(ALG, params, feedback=QgsProcessingFeedback())
        assert Path(result["REPORT_HTML"]).is_file()
        written = gdal.Open(result["OUTPUT"])
        assert written.GetDriver().ShortName == ("HFA" if k == 1 else "GTiff") and written.RasterCount == 2
        layer = result["OUTPUT_TIEPOINTS"]
        assert isinstance(layer, QgsVectorLayer) and layer.featureCount() > 0
        assert "fid" not in layer.fields().names() and AROSICS_FIELDS <= set(layer.fields().names())
        dx, dy = _inlier_median_shift(layer)
        # Measured errors 0.67, 0.67, 0.83 px with the structural matcher.
        assert abs(dx - shift[0]) < 1.0 and abs(dy - shift[1]) < 1.0, (pair.name, shift, dx, dy)
        assert result["N_INLIERS"] >= 5 and result["RMSE_PX"] < 2.0
    assert not list(tmp_path.glob(".*partial*"))


def test_cancel_leaves_no_output(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import processing

    ref, tgt = make_demo_inputs(tmp_path / "inputs", SHIFT)
    out = tmp_path / "out"
    feedback = _Log(cancel_at=1.0)  # cancel as soon as the worker reports work in progress
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run(
            ALG,
            {
                "REFERENCE": str(ref),
                "TARGET": str(tgt),
                **SMALL,
                "OUTPUT": str(out / "coreg.tif"),
                "OUTPUT_TIEPOINTS": str(out / "tp.gpkg"),
                "OUTPUT_FOLDER": str(out / "files"),
            },
            feedback=feedback,
        )
    assert feedback.isCanceled()
    assert not (out / "coreg.tif").exists() and not (out / "files").exists() and not (out / "tp.gpkg").exists()
    assert not list(tmp_path.rglob("*partial*"))


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"TARGET": "ref"}, ("TARGET", "Reference raster (optical)")),
        ({"WINDOW": 33}, ("WINDOW", "even")),
        ({"REFERENCE_BANDS": [9]}, ("Reference bands", "9")),
    ],
)
def test_validation_names_the_parameter(
    sarcoreg_provider,
    tmp_path: Path,
    change: dict[str, Any],  # type: ignore[no-untyped-def]
    names: tuple[str, ...],
) -> None:
    import processing

    ref, tgt = make_demo_inputs(tmp_path, SHIFT)
    params = {"REFERENCE": str(ref), "TARGET": str(tgt), **SMALL, "OUTPUT": str(tmp_path / "o.tif"), **change}
    if params["TARGET"] == "ref":
        params["TARGET"] = str(ref)
    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, params, feedback=QgsProcessingFeedback())
    for name in names:
        assert name in str(info.value), (name, str(info.value))
    assert not (tmp_path / "o.tif").exists()


def test_learned_method_without_its_model_says_what_is_missing(sarcoreg_provider, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """rrlnet with a model that does not exist: a Processing error naming the model, QGIS fine."""
    import processing
    from qgis.core import QgsProcessingException
    from sarcoreg.core.demo import make_demo_inputs

    ref, tgt = make_demo_inputs(tmp_path / "in", (1.0, 1.0))
    params = {"REFERENCE": str(ref), "TARGET": str(tgt), "METHOD": method_names().index("rrlnet"),
              "MODEL": "no-such-model", "OUTPUT": str(tmp_path / "out.tif")}
    with pytest.raises(QgsProcessingException, match="no-such-model"):
        processing.run(ALG, params)
    params.update(METHOD=method_names().index("structural"))
    with pytest.raises(QgsProcessingException, match="MODEL"):
        processing.run(ALG, params)


def test_zero_sizes_mean_automatic(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SPACING / WINDOW / SEARCH_RADIUS left at 0 reach the engine as None: sized for the patch."""
    import processing

    ref, tgt = make_demo_inputs(tmp_path / "inputs", SHIFT)
    out = tmp_path / "auto"
    params = {"REFERENCE": str(ref), "TARGET": str(tgt), **SMALL, "SPACING": 0, "WINDOW": 0, "SEARCH_RADIUS": 0,
              "OUTPUT": str(out / "coreg.tif"), "OUTPUT_FOLDER": str(out / "files")}
    processing.run(ALG, params, feedback=_Log())
    report = json.loads((out / "files" / "report.json").read_text(encoding="utf-8"))
    # ~120 x 120 px Sentinel patches at 10 m: window ~30 (a quarter of the overlap), radius 8 (1.5 x 50 m at
    # 10 m, floored), spacing a quarter of the window.
    assert report["auto_options"]["window"] == report["options"]["window"]
    assert 24 <= report["options"]["window"] <= 32
    assert report["options"]["search_radius"] == 8
    assert report["n_candidates"] >= 50
