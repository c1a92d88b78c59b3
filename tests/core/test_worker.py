"""The core worker process: protocol, progress, errors, crashes and cancel (no QGIS)."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest
from sarcoreg.core.worker import main as worker_main
from sarcoreg.core.worker_client import WorkerCancelled, WorkerClient, WorkerCrashed, WorkerError
from sarcoreg.core.worker_protocol import decode_line, encode_message


def test_protocol_roundtrip_turns_nan_into_null() -> None:
    import numpy as np

    line = encode_message("result", data={"x": float("nan"), "arr": np.arange(3), "f": np.float32(1.5)})
    msg = decode_line(line)
    assert msg == {"type": "result", "data": {"x": None, "arr": [0, 1, 2], "f": 1.5}}
    assert decode_line("some library chatter") is None


def test_worker_main_in_process_reports_result_and_progress() -> None:
    out = io.StringIO()
    code = worker_main(io.StringIO(json.dumps({"job": "selftest", "params": {"seconds": 0.1}}) + "\n"), out)
    msgs = [decode_line(x) for x in out.getvalue().splitlines()]
    assert code == 0
    assert msgs[0]["type"] == "started"
    assert [m["type"] for m in msgs].count("progress") >= 2
    assert msgs[-1]["type"] == "result" and msgs[-1]["data"]["steps"] == 2


def test_worker_main_unknown_job_names_the_known_ones() -> None:
    out = io.StringIO()
    code = worker_main(io.StringIO('{"job": "nope"}\n'), out)
    last = decode_line(out.getvalue().splitlines()[-1])
    assert code == 1 and last["type"] == "error"
    assert "unknown worker job 'nope'" in last["message"] and "diagnostics" in last["message"]


def test_client_streams_progress_and_logs(worker_python: str) -> None:
    fractions: list[float] = []
    logs: list[str] = []
    client = WorkerClient(python=worker_python, on_progress=lambda f, m: fractions.append(f),
                          on_log=lambda lvl, m: logs.append(m))
    result = client.run("selftest", {"seconds": 0.3})
    assert result["steps"] == 6
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any("selftest" in m for m in logs)
    assert result["pid"] != os.getpid()


def test_client_job_error_carries_message_and_traceback(worker_python: str) -> None:
    with pytest.raises(WorkerError, match="selftest failure requested") as info:
        WorkerClient(python=worker_python).run("selftest", {"seconds": 0.2, "fail": "exception"})
    assert "Traceback" in info.value.traceback


@pytest.mark.parametrize("fail, expect", [("abort", "killed by signal 6"), ("exit", "exited with code 7")])
def test_client_crash_is_reported(worker_python: str, fail: str, expect: str) -> None:
    with pytest.raises(WorkerCrashed, match=expect):
        WorkerClient(python=worker_python).run("selftest", {"seconds": 0.2, "fail": fail})


def test_client_missing_interpreter_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WorkerCrashed, match="does not exist"):
        WorkerClient(python=str(tmp_path / "no-python")).run("selftest", {})


def test_cancel_stops_the_process_within_a_second_and_removes_partials(worker_python: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "result.tif"
    partial = tmp_path / ".result.tif.partial-123"
    cancel = threading.Event()
    started: list[float] = []

    def on_progress(f: float, m: str) -> None:
        if not started:
            started.append(time.monotonic())
            partial.write_text("half written")
            out.write_text("not finished")
            threading.Timer(0.2, cancel.set).start()

    client = WorkerClient(python=worker_python, on_progress=on_progress, is_cancelled=cancel.is_set)
    holder: dict[str, int] = {}

    def grab_pid(level: str, msg: str) -> None:
        if "pid" in msg:
            holder["pid"] = int(msg.split("pid ")[1].split(",")[0])

    client.on_log = grab_pid
    with pytest.raises(WorkerCancelled):
        client.run("selftest", {"seconds": 30}, cleanup=[out])
    stopped = time.monotonic()
    assert stopped - started[0] < 0.2 + 1.0
    with pytest.raises(ProcessLookupError):
        os.kill(holder["pid"], 0)
    assert not out.exists() and not partial.exists()
