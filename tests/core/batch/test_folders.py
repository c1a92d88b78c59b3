"""Clean-up of pair folders a stopped batch left, and the per-pair records."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sarcoreg.core.batch.folders import read_record, remove_unfinished, write_record
from sarcoreg.core.output_set import OutputSet, read_output_set


def _complete_set(folder: Path) -> None:
    with OutputSet(folder, ["report.json"]) as out:
        (out.staging / "report.json").write_text("{}", encoding="utf-8")
        out.commit({"report_json": out.staging / "report.json"})


def _killed_run(folder: Path) -> Path:
    """What a worker killed mid-pair leaves: a staging folder with some files and the lock file."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".sarcoreg-staging-4242-abcd"
    staging.mkdir()
    (staging / "report.json").write_text("{", encoding="utf-8")
    (folder / ".sarcoreg.lock").write_text("4242\n", encoding="ascii")
    return staging


def test_remove_unfinished_keeps_complete_sets_and_running_pairs(tmp_path: Path) -> None:
    _killed_run(tmp_path / "fresh")  # a new pair killed mid-run: the folder goes
    _complete_set(tmp_path / "redone")  # an earlier complete set, a --redo run killed mid-run
    _killed_run(tmp_path / "redone")
    _complete_set(tmp_path / "done")
    _killed_run(tmp_path / "running")  # a live process still holds this one's lock
    fd = os.open(tmp_path / "running" / ".sarcoreg.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        cleaned = remove_unfinished(tmp_path)
    finally:
        os.close(fd)
    assert sorted(cleaned) == ["fresh", "redone"]
    assert not (tmp_path / "fresh").exists()
    assert sorted(os.listdir(tmp_path / "redone")) == [".sarcoreg-set.json", "report.json"]
    assert read_output_set(tmp_path / "redone") is not None and read_output_set(tmp_path / "done") is not None
    assert (tmp_path / "running" / ".sarcoreg-staging-4242-abcd").is_dir()
    assert remove_unfinished(tmp_path, ["running"]) == ["running"]  # once its process is gone


def test_records_round_trip(tmp_path: Path) -> None:
    row = {"id": "p1", "status": "failed", "rmse_cv_px": None}
    write_record(tmp_path, row, {"options": "abc"})
    assert read_record(tmp_path, "p1") == {"fingerprint": {"options": "abc"}, "row": row}
    assert read_record(tmp_path, "p2") is None
    assert not [p for p in (tmp_path / ".sarcoreg-batch").iterdir() if "partial" in p.name]
