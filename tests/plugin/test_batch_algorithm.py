"""``sarcoreg:batchcoregister`` ("Co-register many pairs") in a real QGIS on real Sentinel-1/2 pairs.

The batch runs in the sarcoreg worker process on a real Dask LocalCluster; QGIS's own Python
never imports Dask (checked).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProject, QgsVectorLayer

from tests.conftest import REPO
from tests.plugin.feedback import LogFeedback

sys.path.insert(0, str(REPO / "bench"))

import batch_cases as bc  # noqa: E402

pytestmark = pytest.mark.qgis

ALG = "sarcoreg:batchcoregister"


@pytest.fixture(scope="module")
def two_pairs(tmp_path_factory: pytest.TempPathFactory) -> list[bc.BatchCase]:
    """One real crop with a known offset and one pair that does not overlap."""
    folder = tmp_path_factory.mktemp("batch-alg-data")
    good = bc.volkov_batch_cases(folder, scenes=("020",))
    return [*good, bc.no_overlap_case(folder, good[0])]


def _table(cases: list[bc.BatchCase], folder: Path) -> Path:
    return bc.write_table(cases, folder / "pairs.csv", {**bc.FAST_OPTIONS, "write_outputs": "report_json report_html"})


def test_runs_the_pairs_in_the_worker_and_loads_the_styled_summary(sarcoreg_provider, two_pairs, tmp_path: Path
                                                                   ) -> None:  # type: ignore[no-untyped-def]
    import processing

    out = tmp_path / "batch"
    context = QgsProcessingContext()
    context.setProject(QgsProject())
    feedback = LogFeedback()
    progress: list[float] = []
    feedback.progressChanged.connect(progress.append)
    res = processing.run(ALG, {"PAIRS": str(_table(two_pairs, tmp_path)), "WORKERS": 1, "OUTPUT_FOLDER": str(out)},
                         context=context, feedback=feedback)
    assert (res["N_OK"], res["N_ERROR"], res["N_FAILED"]) == (1, 1, 0)
    assert progress and max(progress) == pytest.approx(100.0)
    assert any("do not overlap" in line for line in feedback.lines)  # the bad pair's error is logged
    with open(res["SUMMARY_CSV"], newline="", encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    good = two_pairs[0]
    assert rows[good.id]["status"] == "ok" and rows["far_away"]["status"] == "error"
    dx, dy = float(rows[good.id]["shift_x_px"]), float(rows[good.id]["shift_y_px"])
    assert abs(dx - good.truth_shift[0]) < 1.0 and abs(dy - good.truth_shift[1]) < 1.0
    assert Path(rows[good.id]["report"]).is_file()
    html = Path(res["SUMMARY_HTML"]).read_text(encoding="utf-8")
    assert 'href="v020/report.html"' in html and "data:image/png;base64," in html

    # The summary layer is loaded on completion, styled; opened anywhere else it is styled too
    # (the default style stored in the GeoPackage's layer_styles table).
    details = context.layersToLoadOnCompletion()
    assert list(details) == [res["SUMMARY"]] and details[res["SUMMARY"]].name == "Co-registration summary"
    loaded = QgsVectorLayer(res["SUMMARY"], "loaded", "ogr", QgsVectorLayer.LayerOptions(loadDefaultStyle=False))
    assert loaded.renderer().type() == "singleSymbol"
    details[res["SUMMARY"]].postProcessor().postProcessLayer(loaded, context, LogFeedback())
    fresh = QgsVectorLayer(res["SUMMARY"], "fresh", "ogr")
    for layer in (loaded, fresh):
        assert layer.isValid() and layer.featureCount() == 2
        renderer = layer.renderer()
        assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "status"
        colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
        assert colours["ok"] == "#2ca02c" and colours["error"] == "#783c96"
    geoms = {f["id"]: f.geometry() for f in fresh.getFeatures()}
    assert geoms[good.id].area() == pytest.approx((384 * 10.0) ** 2, rel=0.01)  # the 384 px target at 10 m

    # Run again into the same folder: nothing is computed again.
    again = processing.run(ALG, {"PAIRS": str(_table(two_pairs, tmp_path)), "WORKERS": 1, "OUTPUT_FOLDER": str(out)},
                           context=QgsProcessingContext(), feedback=(fb := LogFeedback()))
    assert again["N_OK"] == 1
    assert any("(0 run now, 2 reused)" in line for line in fb.lines)


def test_cancel_stops_the_workers_and_leaves_no_half_written_pair(sarcoreg_provider, two_pairs, tmp_path: Path
                                                                  ) -> None:  # type: ignore[no-untyped-def]
    import processing

    out = tmp_path / "batch"
    folder = tmp_path / "stack"
    folder.mkdir()
    for case in two_pairs[:1]:  # the stack case: one reference, a folder of targets
        for i in range(3):
            (folder / f"s1_{i}.tif").symlink_to(case.target)
    feedback = LogFeedback()

    def cancel_once_a_pair_is_being_written() -> None:
        t_end = time.monotonic() + 180
        while time.monotonic() < t_end and not feedback.isCanceled():
            if any(p.is_dir() for p in out.glob("*/.sarcoreg-staging-*")):
                feedback.cancel()
            time.sleep(0.02)

    watcher = threading.Thread(target=cancel_once_a_pair_is_being_written, daemon=True)
    watcher.start()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run(ALG, {"REFERENCE": str(two_pairs[0].reference), "TARGETS": str(folder), "WORKERS": 2,
                             "OUTPUT_FOLDER": str(out)}, context=QgsProcessingContext(), feedback=feedback)
    watcher.join()
    assert feedback.isCanceled()
    for pair in (p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        assert (pair / ".sarcoreg-set.json").is_file(), sorted(p.name for p in pair.iterdir())
        assert not list(pair.glob(".sarcoreg-staging-*"))


def test_qgis_side_never_imports_dask(worker_python: str) -> None:
    code = ("import sys; import sarcoreg.plugin.algorithms.batch_coregister, sarcoreg.core.batch.folders; "
            "bad = [m for m in ('dask', 'distributed') if m in sys.modules]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    res = subprocess.run([worker_python, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("params", "message"), [
    ({}, "Give a Table of pairs"),
    ({"PAIRS": "/nonexistent/pairs.csv"}, "does not exist"),
    ({"TARGETS": "/tmp"}, "Give a Table of pairs"),
])
def test_parameters_are_checked_before_anything_runs(sarcoreg_provider, tmp_path: Path, params: dict[str, str],
                                                     message: str) -> None:  # type: ignore[no-untyped-def]
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    ok, text = alg.checkParameterValues({**params, "OUTPUT_FOLDER": str(tmp_path / "o")}, QgsProcessingContext())
    assert not ok and message in text


def test_the_summary_may_not_overwrite_an_input(sarcoreg_provider, two_pairs, tmp_path: Path
                                                ) -> None:  # type: ignore[no-untyped-def]
    from qgis.core import QgsApplication

    table = _table(two_pairs, tmp_path)
    alias = tmp_path / "summary.csv"
    alias.unlink(missing_ok=True)
    alias.symlink_to(table)  # the table itself would be overwritten by summary.csv
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    ok, text = alg.checkParameterValues({"PAIRS": str(alias), "OUTPUT_FOLDER": str(tmp_path)}, QgsProcessingContext())
    assert not ok and "never overwrites its inputs" in text
