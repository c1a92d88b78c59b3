"""Every sarcoreg algorithm refuses an output that resolves to one of its inputs (real QGIS Processing).

Real Sentinel-1/2 demo GeoTIFFs as inputs; each case points one output at an input file (directly,
through a symlink, or as a file an output folder would get) and checks the message names both and
the input is unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)
from sarcoreg.core.demo import make_demo_inputs

from tests.plugin.feedback import LogFeedback

pytestmark = pytest.mark.qgis


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def inputs(sarcoreg_provider, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("clobber")
    ref, tgt = make_demo_inputs(root / "inputs", (3.4, -2.6))
    points = QgsVectorLayer("Point?crs=EPSG:32633&field=COL:double&field=ROW:double", "points", "memory")
    feature = QgsFeature(points.fields())
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(0.0, 0.0)))
    feature.setAttributes([10.0, 10.0])
    points.dataProvider().addFeatures([feature])
    data = root / "training-data"
    data.mkdir()
    return {"ref": ref, "tgt": tgt, "points": points, "data": data, "root": root}


Case = Callable[[dict[str, Any], Path], tuple[dict[str, Any], Path, tuple[str, ...]]]

#: algorithm id -> builds (parameters, the input that must stay untouched, words the message must hold).
CASES: dict[str, Case] = {
    "sarcoreg:coregister": lambda d, t: (
        {"REFERENCE": str(d["ref"]), "TARGET": str(d["tgt"]), "OUTPUT": str(d["tgt"])},
        d["tgt"], ("OUTPUT", "TARGET")),
    "sarcoreg:extracttiepoints": lambda d, t: (
        {"REFERENCE": str(d["ref"]), "TARGET": str(d["tgt"]), "OUTPUT": str(d["ref"])},
        d["ref"], ("OUTPUT", "REFERENCE")),
    "sarcoreg:correspondencemap": lambda d, t: (
        {"REFERENCE": str(d["ref"]), "TARGET": str(d["tgt"]), "POINTS": d["points"], "OUTPUT": str(d["ref"])},
        d["ref"], ("OUTPUT", "REFERENCE")),
    "sarcoreg:warpwithtiepoints": lambda d, t: (
        {"INPUT": d["points"], "TARGET": str(d["tgt"]), "OUTPUT": str(d["tgt"])},
        d["tgt"], ("OUTPUT", "TARGET")),
    "sarcoreg:exportgcps": lambda d, t: (
        {"INPUT": d["points"], "TARGET": str(d["tgt"]), "OUTPUT_POINTS": str(t / "gcps.points"),
         "OUTPUT_VRT": str(d["tgt"])},
        d["tgt"], ("OUTPUT_VRT", "TARGET")),
    "sarcoreg:evaluate": lambda d, t: (
        {"RASTER": str(d["tgt"]), "CHECKPOINTS": d["points"], "PIXEL_X_FIELD": "COL", "PIXEL_Y_FIELD": "ROW",
         "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_HTML": str(d["tgt"])},
        d["tgt"], ("OUTPUT_HTML", "RASTER")),
    "sarcoreg:sharedmodalitylayers": lambda d, t: (
        {"SAR": str(d["tgt"]), "SAR_OUTPUT": str(d["tgt"]), "OPTICAL_OUTPUT": str(t / "optical.tif")},
        d["tgt"], ("SAR_OUTPUT", "SAR")),
    "sarcoreg:trainmodel": lambda d, t: (
        {"DATA": str(d["data"]), "OUTPUT_FOLDER": str(d["data"]), "MODEL_NAME": "m",
         "MODEL_FOLDER": str(t / "models")},
        d["data"], ("OUTPUT_FOLDER", "DATA")),
    "sarcoreg:batchcoregister": lambda d, t: (  # summary.csv would be the table of pairs itself
        {"PAIRS": str(_pairs_table(d, t / "summary.csv")), "OUTPUT_FOLDER": str(t)},
        t / "summary.csv", ("OUTPUT_FOLDER", "PAIRS")),
}


def _pairs_table(d: dict[str, Any], path: Path) -> Path:
    """A batch table of one pair (for ``sarcoreg:batchcoregister``)."""
    path.write_text(f"reference,target\n{d['ref']},{d['tgt']}\n", encoding="utf-8")
    return path


def test_every_algorithm_with_inputs_has_a_case(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    from sarcoreg.plugin.algorithms.base import SarcoregAlgorithm

    # The provider's models run these algorithms as children (each one checks itself).
    ids = {alg.id() for alg in sarcoreg_provider.algorithms() if isinstance(alg, SarcoregAlgorithm)}
    # diagnostics has no input; installmodelpack writes no output file (its folder is the user's model folder)
    assert set(CASES) == ids - {"sarcoreg:diagnostics", "sarcoreg:installmodelpack"}


@pytest.mark.parametrize("alg_id", sorted(CASES))
def test_an_output_over_an_input_is_refused_naming_both(inputs: dict[str, Any], tmp_path: Path, alg_id: str) -> None:
    import processing

    params, kept, names = CASES[alg_id](inputs, tmp_path)
    before = _sha(kept) if kept.is_file() else sorted(p.name for p in kept.iterdir())
    with pytest.raises(QgsProcessingException) as info:
        processing.run(alg_id, params, feedback=QgsProcessingFeedback())
    message = str(info.value)
    assert "never overwrites its inputs" in message, message
    for name in names:
        assert f"({name})" in message, (name, message)
    assert str(kept) in message
    assert (_sha(kept) if kept.is_file() else sorted(p.name for p in kept.iterdir())) == before


def test_a_symlink_or_a_folder_file_that_resolves_to_the_target_is_refused(inputs: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    import processing

    tgt = inputs["tgt"]
    before = _sha(tgt)
    link = tmp_path / "looks-new.tif"
    link.symlink_to(tgt)
    with pytest.raises(QgsProcessingException, match=r"output .*\(OUTPUT\) .* is the input .*\(TARGET\)"):
        processing.run("sarcoreg:coregister", {"REFERENCE": str(inputs["ref"]), "TARGET": str(tgt),
                                               "OUTPUT": str(link)}, feedback=QgsProcessingFeedback())
    # An output folder that would get a file named like the target, the target being that file.
    folder = tmp_path / "files"
    folder.mkdir()
    inside = folder / "shifts.tif"
    shutil.copyfile(tgt, inside)
    with pytest.raises(QgsProcessingException, match=r"\(OUTPUT_FOLDER\) file shifts.tif .* is the input"):
        processing.run("sarcoreg:coregister", {"REFERENCE": str(inputs["ref"]), "TARGET": str(inside),
                                               "OUTPUT": str(tmp_path / "out.tif"), "OUTPUT_FOLDER": str(folder)},
                       feedback=QgsProcessingFeedback())
    assert _sha(tgt) == before and _sha(inside) == before and not (tmp_path / "out.tif").exists()


class _Errors(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.errors.append(error)
        super().reportError(error, fatalError)


def test_the_check_also_guards_runs_that_skip_the_parameter_check(inputs: dict[str, Any]) -> None:
    """``alg.run`` (as models and scripts may) goes through prepareAlgorithm, which refuses too."""
    alg = QgsApplication.processingRegistry().createAlgorithmById("sarcoreg:coregister")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = _Errors()
    before = _sha(inputs["tgt"])
    results, ok = alg.run({"REFERENCE": str(inputs["ref"]), "TARGET": str(inputs["tgt"]),
                           "OUTPUT": str(inputs["tgt"])}, context, feedback)
    assert not ok
    assert any("never overwrites its inputs" in e for e in feedback.errors), feedback.errors
    assert _sha(inputs["tgt"]) == before


def test_folder_files_match_the_engine_outputs() -> None:
    from sarcoreg.core.engine import OUTPUT_NAMES
    from sarcoreg.plugin.algorithms.coregister import FOLDER_FILES

    assert sorted(FOLDER_FILES) == sorted(OUTPUT_NAMES.values())


# ----------------------------------------------------------------------------- output folder re-runs
_Log = LogFeedback


def _visible(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def test_rerun_into_the_same_folder_replaces_the_set_and_a_cancel_keeps_it(sarcoreg_provider,  # type: ignore[no-untyped-def]
                                                                           tmp_path: Path) -> None:
    import json

    import processing
    from sarcoreg.core.output_set import MANIFEST_NAME, read_output_set
    from sarcoreg.plugin.algorithms import coregister as alg_module

    ref, tgt_a = make_demo_inputs(tmp_path / "a", (3.4, -2.6))
    _, tgt_b = make_demo_inputs(tmp_path / "b", (-2.0, 1.5))
    folder = tmp_path / "files"
    small = {"TRANSFORM": alg_module.TRANSFORMS.index("shift"), "SPACING": 8, "WINDOW": 64, "SEARCH_RADIUS": 8,
             "REFERENCE_BANDS": [1, 2, 3], "KEEP_UNCERTAIN": True}

    def run(tgt: Path, feedback: _Log) -> dict[str, Any]:
        return processing.run("sarcoreg:coregister", {"REFERENCE": str(ref), "TARGET": str(tgt), **small,
                                                      "OUTPUT": str(tmp_path / "coreg.tif"),
                                                      "OUTPUT_FOLDER": str(folder)}, feedback=feedback)

    run(tgt_a, _Log())
    first = _visible(folder)
    assert read_output_set(folder) is not None
    log = _Log()
    run(tgt_b, log)  # Processing users re-run into the same folder: the whole set is replaced, and logged
    assert json.loads((folder / "report.json").read_text())["target"]["path"] == str(tgt_b)
    assert any("replaced the previous output set" in line for line in log.lines), log.lines
    second = _visible(folder)
    assert set(second) == set(first) and second["report.json"] != first["report.json"]
    # Cancelled while writing its outputs (85-100 %): the previous set stays whole, nothing is left over.
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run(tgt_a, _Log(cancel_at=87.0))
    assert _visible(folder) == second
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [MANIFEST_NAME]
