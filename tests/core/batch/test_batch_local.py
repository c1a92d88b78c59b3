"""``sarcoreg batch`` on a real LocalCluster of 2 worker processes, on real Sentinel-1/2 pairs.

The pairs are crops of real volkov-1024 scenes whose SAR georeferencing was moved by a known
offset (``bench/batch_cases.py``); the truth of each correction is that offset composed with the
scene's refined alignment. One pair does not overlap its reference (the bad pair).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import (
    SARCOREG,
    assert_rows_match_truth,
    batch_env,
    read_rows,
    run_cli,
    snapshot,
    table,
    wait_for_staging,
)


def test_two_workers_every_row_against_the_truth_then_nothing_recomputed(batch_cases, tmp_path: Path) -> None:
    cases = [batch_cases[0], batch_cases[1], batch_cases[-1]]  # two good pairs and the bad one
    out = tmp_path / "out"
    res = run_cli(str(table(cases, tmp_path)), "--out", str(out), "--workers", "2", "--dashboard-address", ":0")
    assert res.returncode == 3, res.stderr  # 3: some pair could not be run (the bad one)
    assert "Dask dashboard:" in res.stderr and "2 worker(s)" in res.stderr
    assert "3 pairs: 2 ok, 1 error (3 run now, 0 reused)" in res.stdout
    rows = read_rows(out)
    assert_rows_match_truth(rows, cases)
    assert all(r["reused"] == "False" for r in rows.values())
    assert not (out / "far_away").exists()  # an error writes no pair folder
    for name in ("summary.csv", "summary.gpkg", "summary.qml", "summary.html"):
        assert (out / name).is_file()

    before = snapshot(out)
    again = run_cli(str(table(cases, tmp_path)), "--out", str(out), "--workers", "2")
    assert again.returncode == 3, again.stderr
    assert "(0 run now, 3 reused)" in again.stdout
    assert "Dask cluster" not in again.stderr  # nothing to run: no cluster started
    assert snapshot(out) == before  # not one file rewritten
    rows2 = read_rows(out)
    assert all(r["reused"] == "True" for r in rows2.values())
    assert {k: (r["status"], r["shift_x_px"], r["shift_y_px"]) for k, r in rows2.items()} == \
        {k: (r["status"], r["shift_x_px"], r["shift_y_px"]) for k, r in rows.items()}

    redo = run_cli(str(table(cases[:1], tmp_path)), "--out", str(out), "--workers", "0", "--redo")
    assert redo.returncode == 0, redo.stderr
    assert "(1 run now, 0 reused)" in redo.stdout


@pytest.mark.slow
def test_six_pairs_a_killed_worker_and_a_resume(batch_cases, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([*SARCOREG, "batch", str(table(batch_cases, tmp_path)), "--out", str(out),
                             "--workers", "2", "--dashboard-address", ":0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=batch_env())
    try:
        killed_pair, pid = wait_for_staging(out)
        os.kill(pid, signal.SIGKILL)  # the worker process running that pair dies mid-pair
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr
    assert "7 pairs: 6 ok, 1 error (7 run now, 0 reused)" in stdout, stderr
    rows = read_rows(out)
    assert_rows_match_truth(rows, batch_cases)  # the killed pair was retried on a worker and is right
    assert killed_pair in rows and rows[killed_pair]["status"] == "ok"
    assert not list(out.glob("*/.sarcoreg-staging-*"))  # the retry cleaned what the killed run left

    before = snapshot(out)
    again = run_cli(str(table(batch_cases, tmp_path)), "--out", str(out), "--workers", "2")
    assert "(0 run now, 7 reused)" in again.stdout, again.stderr
    assert snapshot(out) == before


@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_and_leaves_no_half_written_pair(batch_cases, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([*SARCOREG, "batch", str(table(batch_cases, tmp_path)), "--out", str(out),
                             "--workers", "2", "--dashboard-address", ":0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=batch_env(),
                            start_new_session=True)
    try:
        wait_for_staging(out)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground process group
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "stopped" in stderr
    rows = read_rows(out)
    assert any(r["status"] == "not run" for r in rows.values())
    for folder in (p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # every pair folder left holds a complete set, nothing else (no staging folder, no lock)
        assert (folder / ".sarcoreg-set.json").is_file(), sorted(os.listdir(folder))
        assert not [n for n in os.listdir(folder) if n.startswith(".sarcoreg-staging") or n == ".sarcoreg.lock"]
    time.sleep(1.0)
    assert not list(out.glob("*/.sarcoreg-staging-*"))  # no worker is still writing after the command ended
    resumed = run_cli(str(table(batch_cases, tmp_path)), "--out", str(out), "--workers", "2")
    assert "7 pairs: 6 ok, 1 error" in resumed.stdout, resumed.stderr
    assert_rows_match_truth(read_rows(out), batch_cases)
