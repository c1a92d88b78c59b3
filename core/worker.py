"""The core's worker mode: run one job from a JSON line on stdin, report in JSON lines on stdout.

Start it as ``python -m sarcoreg.core.worker`` (or ``sarcoreg worker``); the protocol is described
in :mod:`sarcoreg.core.worker_protocol`. The QGIS plugin runs every heavy job this way, so that a
crash, an out-of-memory kill or a library clash can never take QGIS down, and cancel is a real
stop of the process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import traceback
from typing import IO, Any

from .worker_protocol import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, encode_message

__all__ = ["main", "run_job"]


class _ProtocolWriter:
    """Writes protocol lines to the real stdout, one flush per line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def send(self, kind: str, **fields: Any) -> None:
        self._stream.write(encode_message(kind, **fields) + "\n")
        self._stream.flush()


class _LogForwarder(logging.Handler):
    """Forwards Python logging records of the core as ``log`` protocol lines."""

    def __init__(self, writer: _ProtocolWriter) -> None:
        super().__init__(level=logging.INFO)
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        level = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}.get(
            record.levelno, "error"
        )
        try:
            self._writer.send("log", level=level, message=self.format(record))
        except Exception:  # never let logging kill the job
            pass


def run_job(job: str, params: dict[str, Any], writer: _ProtocolWriter) -> dict[str, Any]:
    """Run the job called ``job`` with ``params``, reporting through ``writer``."""
    from .jobs import get_job
    from .progress import Progress

    def on_progress(fraction: float, message: str) -> None:
        writer.send("progress", fraction=round(float(fraction), 5), message=message)

    return get_job(job)(params, Progress(callback=on_progress))


def main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Worker entry point; returns the process exit code."""
    stdin = stdin or sys.stdin
    # The protocol owns the real stdout; anything printed by the job or its libraries goes to
    # stderr so that it can never corrupt the stream.
    real_stdout = stdout or os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    if stdout is None:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = io.TextIOWrapper(os.fdopen(sys.stderr.fileno(), "wb", closefd=False),
                                      line_buffering=True)
    writer = _ProtocolWriter(real_stdout)
    handler = _LogForwarder(writer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    core_logger = logging.getLogger("sarcoreg")
    core_logger.addHandler(handler)
    core_logger.setLevel(logging.INFO)

    from .progress import Cancelled

    try:
        request = json.loads(stdin.readline() or "{}")
        job = request.get("job")
        if not isinstance(job, str):
            raise ValueError('the worker expects one JSON line like {"job": "diagnostics", "params": {}}')
        writer.send("started", pid=os.getpid(), python=sys.executable, job=job)
        result = run_job(job, dict(request.get("params") or {}), writer)
        writer.send("result", data=result)
        return EXIT_OK
    except Cancelled as exc:
        writer.send("error", error_type="Cancelled", message=str(exc), traceback="")
        return EXIT_CANCELLED
    except BaseException as exc:  # report everything, including SystemExit from a job
        writer.send(
            "error",
            error_type=type(exc).__name__,
            message=str(exc) or type(exc).__name__,
            traceback=traceback.format_exc(),
        )
        return EXIT_ERROR
    finally:
        core_logger.removeHandler(handler)


if __name__ == "__main__":
    raise SystemExit(main())
