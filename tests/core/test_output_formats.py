"""The output-format list: one writer per format, a toy format added through the list on a real run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.exports import atomic_write_text
from sarcoreg.core.exports.artifacts import RunArtifacts
from sarcoreg.core.methods import resolve
from sarcoreg.core.output_formats import (
    BUILTIN_FORMATS,
    FORMATS_ENV,
    OUTPUT_NAMES,
    OutputFormat,
    output_formats,
    output_names,
    register_format,
    unregister_format,
)
from sarcoreg.core.output_set import MANIFEST_NAME, read_output_set

from tests.toy_output import TOY, TOY_FILE, TOY_FORMAT, toy_format

#: The files of the set before the list existed: keys and names never change (scripts, models).
NAMES_BEFORE = {
    "coregistered": "coregistered.tif",
    "tiepoints": "tiepoints.gpkg",
    "points": "gcps.points",
    "gcp_vrt": "gcps.vrt",
    "shifts": "shifts.tif",
    "report_json": "report.json",
    "report_html": "report.html",
}
#: The demo pair's small settings (120 x 120 px patches, a shift).
SMALL = {"transform": "shift", "spacing": 8, "window": 64, "search_radius": 8, "reference_bands": [1, 2, 3]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from sarcoreg.core.demo import make_demo_inputs

    return make_demo_inputs(tmp_path_factory.mktemp("demo"), (2.0, 1.0))


def test_the_builtin_list_keeps_every_key_file_name_and_processing_output() -> None:
    assert OUTPUT_NAMES == NAMES_BEFORE
    # writing order: the COG beside the others, report.json last
    assert list(OUTPUT_NAMES) == ["tiepoints", "points", "gcp_vrt", "shifts", "coregistered", "report_html",
                                  "report_json"]
    assert [f.key for f in BUILTIN_FORMATS if f.own_thread] == ["coregistered"]
    assert [f.key for f in BUILTIN_FORMATS if f.last] == ["report_json"]
    assert {f.key: f.processing.name for f in BUILTIN_FORMATS if f.processing} == {
        "points": "POINTS_FILE", "report_html": "REPORT_HTML", "report_json": "REPORT_JSON"}
    for f in BUILTIN_FORMATS:
        assert callable(resolve(f.writer)), f.key
        assert f.prepare is None or callable(resolve(f.prepare)), f.key
    assert output_names() == OUTPUT_NAMES


def test_the_list_imports_nothing_heavy() -> None:
    """The QGIS plugin reads the list when Processing loads: no numpy, GDAL or matplotlib."""
    code = ("import sys; from sarcoreg.core.output_set import OUTPUT_NAMES; "
            "from sarcoreg.core.output_formats import output_formats; output_formats(); "
            "print([m for m in ('numpy', 'osgeo', 'matplotlib', 'cv2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_register_refuses_clashes_and_bad_names() -> None:
    with pytest.raises(ValueError, match="clashes"):
        register_format(OutputFormat("points", "other.txt", "m:f", "x"))
    with pytest.raises(ValueError, match="clashes"):
        register_format(OutputFormat("other", "report.json", "m:f", "x"))
    for name in ("", ".hidden", "a/b.txt"):
        with pytest.raises(ValueError, match="file_name"):
            OutputFormat("other", name, "m:f", "x")
    with pytest.raises(ValueError, match="module:function"):
        OutputFormat("other", "o.txt", "no_colon", "x")
    with pytest.raises(ValueError, match="last"):
        OutputFormat("other", "o.txt", "m:f", "x", own_thread=True, last=True)
    with pytest.raises(ValueError, match="built-in"):
        unregister_format("points")


def test_the_environment_adds_formats_in_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FORMATS_ENV, "tests.toy_output:TOY_FORMAT")
    assert output_formats()[-1] == TOY_FORMAT and output_names()[TOY] == TOY_FILE
    monkeypatch.setenv(FORMATS_ENV, "tests.toy_output:TOY")
    with pytest.raises(TypeError, match="not an OutputFormat"):
        output_formats()
    monkeypatch.setenv(FORMATS_ENV, "tests.toy_output:nothing_here")
    with pytest.raises(ImportError, match="nothing_here"):
        output_formats()


def test_a_toy_writer_added_through_the_list_lands_in_the_output_set(demo: tuple[Path, Path], tmp_path: Path
                                                                     ) -> None:
    ref, tgt = demo
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown outputs"):
        CoregOptions(write_outputs=[TOY]).validate()
    with toy_format():
        res = coregister(ref, tgt, out, CoregOptions(**SMALL))
        assert res.outputs[TOY] == out.absolute() / TOY_FILE
        manifest = read_output_set(out)
        assert manifest is not None and sorted(manifest["files"]) == sorted([*NAMES_BEFORE.values(), TOY_FILE])
        assert sorted(p.name for p in out.iterdir()) == sorted([*NAMES_BEFORE.values(), TOY_FILE, MANIFEST_NAME])
        facts = json.loads((out / TOY_FILE).read_text(encoding="utf-8"))
        assert facts["n_inliers"] == res.report["n_inliers"] >= 5
        assert facts["target"] == str(tgt) and facts["thread"] == "MainThread"
        assert facts["keys"] == [*OUTPUT_NAMES, TOY]
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        assert report["outputs"][TOY] == str(out.absolute() / TOY_FILE)
        assert list(report["timings_cpu_s"]) == ["open", "prepare", "coarse", "match", "estimate", "write"]
        # only the toy and the report: the rest of the previous set goes
        res = coregister(ref, tgt, out, CoregOptions(**SMALL, write_outputs=[TOY, "report_json"]))
        assert list(res.outputs) == [TOY, "report_json"]
        assert sorted(p.name for p in out.iterdir()) == sorted([TOY_FILE, "report.json", MANIFEST_NAME])
    assert TOY not in output_names()


_SLOW = "slow.txt"


def _slow_write(artifacts: RunArtifacts, path: Path) -> None:
    time.sleep(0.5)
    atomic_write_text(path, "slow\n")


def _after_slow(artifacts: RunArtifacts, path: Path) -> None:
    if not (path.parent / _SLOW).is_file():
        raise AssertionError("a format marked last ran before a threaded one was written")
    atomic_write_text(path, "after\n")


def test_threaded_formats_run_beside_the_others_and_last_ones_wait(demo: tuple[Path, Path], tmp_path: Path
                                                                   ) -> None:
    ref, tgt = demo
    slow = OutputFormat("slow", _SLOW, f"{__name__}:_slow_write", "a slow GDAL-like file", own_thread=True)
    after = OutputFormat("after", "after.txt", f"{__name__}:_after_slow", "written last", last=True)
    threaded = OutputFormat("threaded", "threaded.txt", "tests.toy_output:write", "where it ran", own_thread=True)
    with toy_format(slow), toy_format(after), toy_format(threaded):
        res = coregister(ref, tgt, tmp_path / "out", CoregOptions(**SMALL, write_outputs=[
            "slow", "after", "threaded", "tiepoints"]))
    assert list(res.outputs) == ["tiepoints", "slow", "threaded", "after"]  # writing order
    assert json.loads(res.outputs["threaded"].read_text(encoding="utf-8"))["thread"].startswith("sarcoreg-output")
    assert res.outputs["after"].read_text(encoding="utf-8") == "after\n"
