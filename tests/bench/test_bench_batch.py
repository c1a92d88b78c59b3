"""Smoke run of ``bench/bench_batch.py`` (two small real pairs, serial, no large pairs) so it does not rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_PYTHON


@pytest.mark.slow
def test_bench_batch_runs_and_writes_its_tables(tmp_path: Path) -> None:
    python = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))
    res = subprocess.run([python, str(REPO / "bench" / "bench_batch.py"), "--pairs", "2", "--size", "256",
                          "--modes", "serial", "--scale-sizes", "", "--data", str(tmp_path),
                          "--results", str(tmp_path / "results")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "results" / "batch.json").read_text())
    (serial,) = results["modes"]
    assert serial["mode"] == "serial" and serial["pairs"] == 2 and serial["pairs_per_min"] > 0
    assert "| serial | 1 | 2 |" in res.stdout
