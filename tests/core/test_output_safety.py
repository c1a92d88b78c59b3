"""Inputs never overwritten, a whole output set or none, and errors that name the cause (issue 12).

Real pixels throughout: the EPFL RGB-NIR "country" scene and the Sentinel-1/2 demo pair written as
real GeoTIFFs; killed and concurrent runs are real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core.engine import OUTPUT_NAMES, CoregOptions, coregister
from sarcoreg.core.output_set import (
    LOCK_NAME,
    MANIFEST_NAME,
    STAGING_PREFIX,
    InputOverwriteError,
    OutputFolderError,
    OutputSet,
    read_output_set,
)
from sarcoreg.core.progress import Cancelled, Progress
from sarcoreg.core.raster_io import RasterInputError
from sarcoreg.core.synthetic import write_geotiff
from scipy.ndimage import shift as nd_shift

from tests.conftest import shared_data

gdal.UseExceptions()

OPTS = {"transform": "shift", "spacing": 48, "window": 64, "search_radius": 8, "reference_modality": "optical",
        "target_modality": "optical"}

#: A run in a subprocess that stops (sleeps until ``go`` exists) when a progress message starts with ``stage``.
CHILD = r"""
import sys, time
from pathlib import Path
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.progress import Progress
ref, tgt, out, stage, go = sys.argv[1:6]
def cb(fraction, message):
    if message.startswith(stage):
        print("AT " + message, flush=True)
        while not Path(go).exists():
            time.sleep(0.05)
coregister(ref, tgt, out, CoregOptions(**__import__("json").loads(sys.argv[6])), Progress(callback=cb))
print("DONE", flush=True)
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _optical(size: int = 320) -> np.ndarray:
    img = cv2.imread(str(shared_data("vis-nir", "registration", "country", "0003_rgb.jpg")), cv2.IMREAD_GRAYSCALE)
    return img[100:100 + size, 200:200 + size].astype(np.float32)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A reference and two targets (the same scene moved by two different shifts), one grid."""
    d = tmp_path_factory.mktemp("pairs")
    img = _optical()
    ref = write_geotiff(d / "ref.tif", img.astype(np.uint16))
    tgt_a = write_geotiff(d / "tgt_a.tif", nd_shift(img, (-1.6, 2.3), order=3, mode="nearest").astype(np.float32))
    tgt_b = write_geotiff(d / "tgt_b.tif", nd_shift(img, (1.2, -3.1), order=3, mode="nearest").astype(np.float32))
    return ref, tgt_a, tgt_b


def _set_state(out: Path) -> dict[str, str]:
    """Name -> sha256 of every visible file in ``out``."""
    return {p.name: _sha(p) for p in sorted(out.iterdir()) if not p.name.startswith(".")}


def _child(ref: Path, tgt: Path, out: Path, stage: str, go: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(ref), str(tgt), str(out), stage, str(go),
                             json.dumps(OPTS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_at(proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    assert proc.stdout is not None
    t0 = time.monotonic()
    line = proc.stdout.readline()
    assert line.startswith("AT "), (line, proc.stderr.read() if proc.stderr else "")
    assert time.monotonic() - t0 < timeout
    return line


# ----------------------------------------------------------------------------- inputs
def test_an_output_that_resolves_to_an_input_is_refused_naming_both(pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt_a, _ = pairs
    out = tmp_path / "out"
    out.mkdir()
    # A symlink in the output folder whose name is an output points at the target elsewhere.
    (out / "coregistered.tif").symlink_to(tgt_a)
    before = _sha(tgt_a)
    with pytest.raises(InputOverwriteError) as info:
        coregister(ref, tgt_a, out, CoregOptions(**OPTS))
    message = str(info.value)
    assert str(out / "coregistered.tif") in message and str(tgt_a) in message and "target raster" in message
    assert _sha(tgt_a) == before and (out / "coregistered.tif").is_symlink()
    # The target itself in the output folder under an output name, the folder given through a symlink.
    inside = tmp_path / "in"
    inside.mkdir()
    shutil.copyfile(tgt_a, inside / "shifts.tif")
    link = tmp_path / "link"
    link.symlink_to(inside)
    with pytest.raises(InputOverwriteError, match=r"the output shifts.tif .* is the target raster"):
        coregister(ref, inside / "shifts.tif", link, CoregOptions(**OPTS))
    # A hard link to the reference under an output name.
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(ref, hard / "report.html")
    with pytest.raises(InputOverwriteError, match="is the reference raster"):
        coregister(ref, tgt_a, hard, CoregOptions(**OPTS))
    assert sorted(p.name for p in hard.iterdir()) == ["report.html"]  # no lock or staging left behind


# ----------------------------------------------------------------------------- whole set or none
def test_the_set_is_complete_with_a_manifest_and_a_rerun_replaces_it(pairs, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    ref, tgt_a, tgt_b = pairs
    out = tmp_path / "out"
    coregister(ref, tgt_a, out, CoregOptions(**OPTS))
    manifest = read_output_set(out)
    assert manifest is not None and sorted(manifest["files"]) == sorted(OUTPUT_NAMES.values())
    assert manifest["target"] == str(tgt_a)
    (out / "coregistered.tif.aux.xml").write_text("<PAMDataset/>")  # QGIS statistics of the old raster
    with caplog.at_level(logging.INFO, logger="sarcoreg.output_set"):
        res = coregister(ref, tgt_b, out, CoregOptions(**OPTS), write_outputs=["tiepoints", "report_json"])
    # Files of the older full set are gone: nothing from target A looks like part of the new set.
    assert sorted(p.name for p in out.iterdir()) == sorted(["tiepoints.gpkg", "report.json", MANIFEST_NAME])
    assert json.loads((out / "report.json").read_text())["target"]["path"] == str(tgt_b)
    assert res.outputs == {"tiepoints": out / "tiepoints.gpkg", "report_json": out / "report.json"}
    assert json.loads((out / "report.json").read_text())["outputs"]["report_json"] == str(out / "report.json")
    assert any("replaced the previous output set" in r.message and "coregistered.tif" in r.message
               for r in caplog.records)


def test_a_run_killed_mid_write_leaves_the_old_set_and_the_next_run_cleans_up(pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt_a, tgt_b = pairs
    out = tmp_path / "out"
    coregister(ref, tgt_a, out, CoregOptions(**OPTS))
    old = _set_state(out)
    # Target B, killed with SIGKILL while it writes coregistered.tif (four files already written).
    proc = _child(ref, tgt_b, out, "writing coregistered.tif", tmp_path / "never")
    _wait_at(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _set_state(out) == old  # the old complete set, byte for byte
    assert read_output_set(out) is not None
    assert json.loads((out / "report.json").read_text())["target"]["path"] == str(tgt_a)
    assert [p.name for p in out.glob(STAGING_PREFIX + "*")], "the killed run's staging folder"
    # A hidden partial file as older versions (or another writer) left it beside the outputs.
    (out / ".coregistered.tif.1a2b3c4d.partial.tif").write_bytes(b"half")
    # The next run removes the leftovers and writes its own complete set.
    coregister(ref, tgt_b, out, CoregOptions(**OPTS))
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_NAMES.values(), MANIFEST_NAME])
    assert json.loads((out / "report.json").read_text())["target"]["path"] == str(tgt_b)


def test_a_run_killed_into_a_new_folder_leaves_no_set(pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, _, tgt_b = pairs
    out = tmp_path / "fresh"
    proc = _child(ref, tgt_b, out, "writing report.html", tmp_path / "never")
    _wait_at(proc)
    proc.kill()
    proc.wait(timeout=30)
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]  # nothing that looks like outputs
    assert read_output_set(out) is None
    with OutputSet(out, OUTPUT_NAMES.values()) as nxt:  # any next run: leftovers go once it holds the lock
        assert list(out.glob(STAGING_PREFIX + "*")) == [nxt.staging]
    assert not list(out.iterdir())


def test_an_interrupted_move_is_completed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputSet(out, ["a.txt", "b.txt", "c.txt"]) as first:
        for name in ("a.txt", "b.txt", "c.txt"):
            (first.staging / name).write_text("old " + name)
        first.commit({n: first.staging / n for n in ("a.txt", "b.txt", "c.txt")})
    # A second run staged a, b and its manifest, and was killed after moving a in.
    staging = out / f"{STAGING_PREFIX}999999-deadbeef"
    staging.mkdir()
    for name in ("a.txt", "b.txt"):
        (staging / name).write_text("new " + name)
    files = {n: (staging / n).stat().st_size for n in ("a.txt", "b.txt")}
    (staging / MANIFEST_NAME).write_text(json.dumps({"format": 1, "files": files}))
    (out / MANIFEST_NAME).unlink()
    os.replace(staging / "a.txt", out / "a.txt")
    assert read_output_set(out) is None  # a mix: no complete set
    with OutputSet(out, ["a.txt", "b.txt", "c.txt"]):
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a.txt", "b.txt"]
        assert [(out / n).read_text() for n in ("a.txt", "b.txt")] == ["new a.txt", "new b.txt"]
        assert read_output_set(out) is not None and not staging.exists()


def test_cancel_while_writing_keeps_the_previous_set(pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt_a, tgt_b = pairs
    out = tmp_path / "out"
    coregister(ref, tgt_a, out, CoregOptions(**OPTS))
    old = _set_state(out)
    progress = Progress()

    def cb(fraction: float, message: str) -> None:
        if message.startswith("writing shifts.tif"):  # three files of the new set already written
            progress.cancel()

    progress.callback = cb
    with pytest.raises(Cancelled):
        coregister(ref, tgt_b, out, CoregOptions(**OPTS), progress)
    assert _set_state(out) == old
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_NAMES.values(), MANIFEST_NAME])


def test_a_second_run_into_the_same_folder_is_refused_and_never_interleaves(pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt_a, tgt_b = pairs
    out = tmp_path / "out"
    go = tmp_path / "go"
    proc = _child(ref, tgt_a, out, "matching", go)
    _wait_at(proc)
    assert (out / LOCK_NAME).is_file()
    t0 = time.monotonic()
    with pytest.raises(OutputFolderError, match=rf"another sarcoreg run \(process {proc.pid}\) is writing into"):
        coregister(ref, tgt_b, out, CoregOptions(**OPTS))
    assert time.monotonic() - t0 < 5.0  # refused at once, before any matching
    assert list(out.glob(STAGING_PREFIX + f"{proc.pid}-*")), "the first run's staging folder is untouched"
    go.touch()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "DONE" in stdout, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_NAMES.values(), MANIFEST_NAME])
    assert json.loads((out / "report.json").read_text())["target"]["path"] == str(tgt_a)
    coregister(ref, tgt_b, out, CoregOptions(**OPTS))  # free again: the lock went with the first run
    assert json.loads((out / "report.json").read_text())["target"]["path"] == str(tgt_b)


# ----------------------------------------------------------------------------- output folder
def test_an_unwritable_output_folder_is_reported_before_matching(pairs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt_a, _ = pairs
    messages: list[str] = []
    progress = Progress(callback=lambda f, m: messages.append(m))
    # /sys refuses new folders even to root: a real "permission denied" without changing permissions.
    with pytest.raises(OutputFolderError, match="permission denied") as info:
        coregister(ref, tgt_a, f"/sys/sarcoreg-test-{os.getpid()}/out", CoregOptions(**OPTS), progress)
    assert "/sys/sarcoreg-test" in str(info.value)
    assert not any("matching" in m for m in messages), messages
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputFolderError, match="is a file, not a folder") as info:
        coregister(ref, tgt_a, blocker / "out", CoregOptions(**OPTS), progress)
    assert str(blocker) in str(info.value)
    assert not any("matching" in m for m in messages), messages


# ----------------------------------------------------------------------------- raster errors
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from sarcoreg.core.demo import make_demo_inputs

    return make_demo_inputs(tmp_path_factory.mktemp("demo"), (2.0, 1.0))


def _all_nodata_copy(src: Path, dst: Path, value: float, nodata: float | None) -> Path:
    """A copy of a real GeoTIFF (same grid, CRS, bands, type) whose every pixel is ``value``."""
    ds = gdal.Translate(str(dst), str(src), outputType=gdal.GDT_Float32)
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(np.full((ds.RasterYSize, ds.RasterXSize), value, np.float32))
    ds = None
    return dst


def test_an_all_nodata_raster_says_it_has_no_valid_pixels(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    empty = _all_nodata_copy(tgt, tmp_path / "empty_tgt.tif", -9999.0, -9999.0)
    with pytest.raises(RasterInputError) as info:
        coregister(ref, empty, None, transform="shift", window=64, search_radius=8, spacing=8)
    message = str(info.value)
    assert "target raster" in message and str(empty) in message and "no valid pixels" in message
    assert "band(s) 1, 2" in message and "-9999" in message and "overlap" not in message
    nan_ref = _all_nodata_copy(ref, tmp_path / "nan_ref.tif", float("nan"), None)
    with pytest.raises(RasterInputError, match=r"the reference raster .* has no valid pixels: .*NaN") as info:
        coregister(nan_ref, tgt, None, transform="shift", window=64, search_radius=8, spacing=8)
    assert "overlap" not in str(info.value)
    # Plain rasters (no georeferencing: matched in pixels) are checked too.
    src = gdal.Open(str(empty))
    plain = tmp_path / "plain.tif"
    dst = gdal.GetDriverByName("GTiff").Create(str(plain), src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Float32)
    dst.GetRasterBand(1).SetNoDataValue(-9999.0)
    dst.GetRasterBand(1).WriteArray(src.GetRasterBand(1).ReadAsArray())
    dst = src = None
    with pytest.raises(RasterInputError, match=r"the target raster .* has no valid pixels: .*-9999"):
        coregister(ref, plain, None, transform="shift", window=64, search_radius=8, spacing=8)


def test_a_truncated_geotiff_names_its_role_and_keeps_gdals_detail(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    data = tgt.read_bytes()
    half = tmp_path / "half.tif"
    half.write_bytes(data[: len(data) // 2])  # the header opens, reading the pixels fails
    with pytest.raises(RasterInputError) as info:
        coregister(ref, half, None, transform="shift", window=64, search_radius=8, spacing=8)
    first, *rest = str(info.value).split("\n")
    assert "the target raster" in first and str(half) in first and "damaged or incomplete" in first
    assert rest and rest[0].startswith("GDAL: ") and "TIFFReadEncoded" in rest[0]
    head = tmp_path / "head.tif"
    head.write_bytes(data[:100])  # not even the header: GDAL cannot open it
    with pytest.raises(RasterInputError) as info:
        coregister(head, tgt, None)
    first, *rest = str(info.value).split("\n")
    assert "the reference raster" in first and "damaged or incomplete" in first
    assert rest and rest[0].startswith("GDAL: ") and "TIFF" in rest[0]


def test_cli_names_the_cause_without_a_traceback(demo: tuple[Path, Path], tmp_path: Path) -> None:
    ref, tgt = demo
    half = tmp_path / "half.tif"
    half.write_bytes(tgt.read_bytes()[: tgt.stat().st_size // 2])
    empty = _all_nodata_copy(tgt, tmp_path / "empty.tif", -9999.0, -9999.0)
    (tmp_path / "o3").write_text("a file")
    cases = [
        ([str(ref), str(half), "--out", str(tmp_path / "o1")], "damaged or incomplete"),
        ([str(ref), str(empty), "--out", str(tmp_path / "o2")], "no valid pixels"),
        ([str(ref), str(tgt), "--out", f"/sys/sarcoreg-test-{os.getpid()}"], "permission denied"),
        ([str(ref), str(tgt), "--out", str(tmp_path / "o3" / "x")], "is a file, not a folder"),
    ]
    for args, words in cases:
        done = subprocess.run([sys.executable, "-m", "sarcoreg.core.cli", "coregister", *args, "--transform", "shift",
                               "--spacing", "8", "--window", "64", "--radius", "8"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
