"""Real Sentinel-1/2 pairs with known offsets (volkov-1024 crops) for the batch tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, VENV_PYTHON

sys.path.insert(0, str(REPO / "bench"))

import batch_cases as bc  # noqa: E402

SARCOREG = [str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)), "-m", "sarcoreg.core.cli"]
#: Largest distance between a good pair's shift and its truth, pixels (measured: 0.1-0.6 px).
TOLERANCE_PX = 1.0


@pytest.fixture(scope="session")
def batch_cases(tmp_path_factory: pytest.TempPathFactory) -> list[bc.BatchCase]:
    """Six real crops with known offsets and one pair that does not overlap (the bad pair), last."""
    folder = tmp_path_factory.mktemp("batch-data")
    cases = bc.volkov_batch_cases(folder)
    return [*cases, bc.no_overlap_case(folder, cases[0])]


def batch_env() -> dict[str, str]:
    """Environment of ``sarcoreg batch`` subprocesses: one thread per library, nothing else changed."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``sarcoreg batch ...`` in a subprocess."""
    return subprocess.run([*SARCOREG, "batch", *args], capture_output=True, text=True, timeout=timeout,
                          env=batch_env(), check=False)


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    """``summary.csv`` rows by id."""
    import csv

    with (out / "summary.csv").open(newline="", encoding="utf-8") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def assert_rows_match_truth(rows: dict[str, dict[str, str]], cases: list[bc.BatchCase]) -> None:
    """Every good pair ``ok`` within :data:`TOLERANCE_PX` of its truth; the bad pair an error saying why."""
    assert set(rows) == {c.id for c in cases}
    for case in cases:
        row = rows[case.id]
        if case.truth_shift is None:
            assert row["status"] == "error", row
            assert "do not overlap" in row["error"], row
            assert row["shift_x_px"] == "" and row["n_inliers"] == "0"
            continue
        assert row["status"] == "ok", row
        dx, dy = float(row["shift_x_px"]), float(row["shift_y_px"])
        err = ((dx - case.truth_shift[0]) ** 2 + (dy - case.truth_shift[1]) ** 2) ** 0.5
        assert err < TOLERANCE_PX, f"{case.id}: shift ({dx:.2f}, {dy:.2f}) vs truth {case.truth_shift}: {err:.2f} px"
        assert float(row["rmse_cv_px"]) < 1.5 and int(row["n_inliers"]) >= 8
        assert float(row["runtime_s"]) > 0
        assert (Path(row["folder"]) / ".sarcoreg-set.json").is_file()


def snapshot(out: Path) -> dict[str, int]:
    """Modification times of every file in the pair folders and records (to prove nothing was redone)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and not p.name.startswith("summary")}


def wait_for_staging(out: Path, timeout: float = 120.0) -> tuple[str, int]:
    """Wait until some pair is being written; ``(pair id, pid of the process writing it)``.

    The engine's staging folder is named ``.sarcoreg-staging-<pid>-<random>``: the pid is the
    Dask worker process running that pair.
    """
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        for staging in out.glob("*/.sarcoreg-staging-*"):
            return staging.parent.name, int(staging.name.split("-")[2])
        time.sleep(0.02)
    raise AssertionError(f"no pair started writing into {out} within {timeout} s")


def table(cases: list[bc.BatchCase], folder: Path, options: dict[str, Any] | None = None) -> Path:
    """The CSV table of ``cases`` (fast options: a coarser grid, only report.json written)."""
    return bc.write_table(cases, folder / "pairs.csv", {**bc.FAST_OPTIONS, "write_outputs": "report_json",
                                                         **(options or {})})
