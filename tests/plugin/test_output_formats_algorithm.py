"""The Processing outputs of the output set come from the output-format list (a toy format too)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProject
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.output_formats import FORMATS_ENV

from tests.conftest import REPO
from tests.plugin.feedback import LogFeedback
from tests.toy_output import TOY_FILE, TOY_OUTPUT

pytestmark = pytest.mark.qgis

#: Processing outputs of the set's files before the list existed (names never change) and the new one.
FILE_OUTPUTS = {"POINTS_FILE", "REPORT_HTML", "REPORT_JSON"}


def _outputs(alg_id: str) -> set[str]:
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, alg_id
    return {o.name() for o in alg.outputDefinitions()}


def test_the_file_outputs_come_from_the_list(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    assert FILE_OUTPUTS <= _outputs("sarcoreg:coregister") and TOY_OUTPUT not in _outputs("sarcoreg:coregister")
    # Extract tie points writes tie points and report.json only: of the list's outputs, REPORT_JSON.
    assert _outputs("sarcoreg:extracttiepoints") & (FILE_OUTPUTS | {TOY_OUTPUT}) == {"REPORT_JSON"}


def test_a_toy_format_reaches_the_processing_outputs_through_the_worker(  # type: ignore[no-untyped-def]
        sarcoreg_provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import processing

    # The environment carries the toy format into the worker process (and this one).
    monkeypatch.setenv(FORMATS_ENV, "tests.toy_output:TOY_FORMAT")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    alg = QgsApplication.processingRegistry().createAlgorithmById("sarcoreg:coregister")
    assert {o.name() for o in alg.outputDefinitions()} >= FILE_OUTPUTS | {TOY_OUTPUT}
    assert TOY_OUTPUT in alg.shortHelpString() and TOY_FILE in alg._folder_files["OUTPUT_FOLDER"]
    assert TOY_OUTPUT not in _outputs("sarcoreg:extracttiepoints")

    ref, tgt = make_demo_inputs(tmp_path / "inputs", (3.4, -2.6))
    folder = tmp_path / "files"
    params = {"REFERENCE": str(ref), "TARGET": str(tgt), "TRANSFORM": 0, "SPACING": 8, "WINDOW": 64,
              "SEARCH_RADIUS": 8, "REFERENCE_BANDS": [1, 2, 3], "OUTPUT": str(tmp_path / "coregistered.tif"),
              "OUTPUT_FOLDER": str(folder)}
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    result = processing.run("sarcoreg:coregister", params, context=context, feedback=LogFeedback())
    assert Path(result[TOY_OUTPUT]) == folder / TOY_FILE
    facts = json.loads(Path(result[TOY_OUTPUT]).read_text(encoding="utf-8"))
    assert facts["target"] == str(tgt) and facts["n_inliers"] == result["N_INLIERS"]
    for name, file in (("POINTS_FILE", "gcps.points"), ("REPORT_HTML", "report.html"), ("REPORT_JSON", "report.json")):
        assert Path(result[name]) == folder / file and Path(result[name]).is_file(), name
