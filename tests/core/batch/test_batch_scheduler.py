"""``sarcoreg batch --scheduler ADDRESS`` against a separately started ``dask scheduler`` + ``dask worker``.

The scheduler and two worker processes (under their nanny) are started here as their own
processes on localhost, like a cluster someone else runs, and stopped after the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
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

DASK = str(Path(SARCOREG[0]).parent / "dask")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, with its children (its own session)."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A ``dask scheduler`` and ``dask worker --nworkers 2`` on localhost; yields the scheduler address."""
    info = tmp_path / "scheduler.json"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
            stdout=(logs / "scheduler.log").open("wb"), stderr=subprocess.STDOUT, env=batch_env(),
            start_new_session=True, cwd=tmp_path))
        t_end = time.monotonic() + 60
        while not info.exists() and time.monotonic() < t_end:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        started.append(subprocess.Popen(
            [DASK, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
             "--local-directory", str(tmp_path / "dask-space")],
            stdout=(logs / "worker.log").open("wb"), stderr=subprocess.STDOUT, env=batch_env(),
            start_new_session=True, cwd=tmp_path))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(started):
            _stop(proc)


@pytest.mark.slow
def test_external_scheduler_six_pairs_a_killed_worker_and_a_resume(batch_cases, dask_cluster: str,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    pairs = str(table(batch_cases, tmp_path))
    proc = subprocess.Popen([*SARCOREG, "batch", pairs, "--out", str(out), "--scheduler", dask_cluster],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=batch_env())
    try:
        killed_pair, pid = wait_for_staging(out)
        os.kill(pid, signal.SIGKILL)  # a worker of the external cluster dies mid-pair; its nanny restarts it
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr
    assert f"Dask cluster: {dask_cluster}, 2 worker(s)" in stderr
    assert "7 pairs: 6 ok, 1 error (7 run now, 0 reused)" in stdout, stderr
    rows = read_rows(out)
    assert_rows_match_truth(rows, batch_cases)
    assert rows[killed_pair]["status"] == "ok"

    before = snapshot(out)
    again = run_cli(pairs, "--out", str(out), "--scheduler", dask_cluster)
    assert "(0 run now, 7 reused)" in again.stdout, again.stderr
    assert snapshot(out) == before
