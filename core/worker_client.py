"""Start a core worker process, stream its progress and logs, and stop it for real on cancel.

Standard library only: the QGIS plugin uses this inside the QGIS process (through a thin
adapter to Processing feedback), scripts can use it directly::

    result = WorkerClient(python="/path/to/venv/bin/python").run("diagnostics", {})
"""

from __future__ import annotations

import glob
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .worker_protocol import decode_line

__all__ = ["WorkerCancelled", "WorkerClient", "WorkerError", "WorkerCrashed", "package_root"]

#: Folder holding the ``sarcoreg`` package this file belongs to (the plugin folder).
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


class WorkerError(RuntimeError):
    """The job failed inside the worker with a Python error (message from the worker)."""

    def __init__(self, message: str, error_type: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.traceback = traceback


class WorkerCrashed(RuntimeError):
    """The worker process died without reporting a result (native crash, kill, bad interpreter)."""


class WorkerCancelled(RuntimeError):
    """The caller cancelled; the worker process was stopped and partial outputs removed."""


def package_root() -> Path:
    """A folder to put on the worker's PYTHONPATH so that ``import sarcoreg`` finds this code.

    The plugin folder is normally called ``sarcoreg`` already; a checkout under another name
    gets a temporary folder with a ``sarcoreg`` link to it.
    """
    if _PACKAGE_DIR.name == "sarcoreg":
        return _PACKAGE_DIR.parent
    link_parent = Path(tempfile.gettempdir()) / f"sarcoreg-path-{os.getuid()}-{abs(hash(str(_PACKAGE_DIR)))}"
    link = link_parent / "sarcoreg"
    if not link.exists():
        link_parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(_PACKAGE_DIR, target_is_directory=True)
        except FileExistsError:
            pass
    return link_parent


@dataclass
class WorkerClient:
    """Runs jobs in a separate Python process speaking the JSON-lines protocol.

    Attributes:
        python: Interpreter that has the core's dependencies.
        on_progress: ``fn(fraction, message)`` called from the calling thread.
        on_log: ``fn(level, message)`` called from the calling thread.
        is_cancelled: Polled every ``poll_s``; when it returns True the worker is stopped.
        poll_s: Polling interval in seconds.
        env: Extra environment variables for the worker.
    """

    python: str = sys.executable
    on_progress: Callable[[float, str], None] | None = None
    on_log: Callable[[str, str], None] | None = None
    is_cancelled: Callable[[], bool] | None = None
    poll_s: float = 0.05
    env: dict[str, str] = field(default_factory=dict)
    #: pid of the running worker (None when idle); handy for tests and diagnostics.
    pid: int | None = None

    def command(self) -> list[str]:
        """The worker's command line."""
        return [self.python, "-u", "-m", "sarcoreg.core.worker"]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        root = str(package_root())
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        # A Python embedded in QGIS sets these for itself; they must not leak into the worker.
        for var in ("PYTHONHOME", "PYTHONEXECUTABLE"):
            env.pop(var, None)
        env.update(self.env)
        return env

    def run(
        self, job: str, params: dict[str, Any], *, cleanup: Iterable[str | os.PathLike[str]] = ()
    ) -> dict[str, Any]:
        """Run ``job`` with ``params`` and return its result.

        Args:
            job: Job name (see :mod:`sarcoreg.core.jobs`).
            params: JSON-able parameters.
            cleanup: Output paths of this job. On cancel or failure, those that did not exist
                before the run are removed, and so are partial files (``.*.partial*``) in their
                folders.

        Raises:
            WorkerCancelled: ``is_cancelled`` turned True; the process was stopped.
            WorkerError: The job raised; message and traceback come from the worker.
            WorkerCrashed: The process ended without a result; the message holds the exit
                status and the end of its stderr.
        """
        cleanup_paths = [Path(p) for p in cleanup]
        existed = {p for p in cleanup_paths if p.exists()}
        if not Path(self.python).exists() and shutil.which(self.python) is None:
            raise WorkerCrashed(
                f"the worker interpreter '{self.python}' does not exist; set the sarcoreg Python "
                "interpreter (Processing options, or SARCOREG_PYTHON) to the environment made by setup.sh"
            )
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=self._environment(),
            start_new_session=True,
        )
        self.pid = proc.pid
        lines: queue.Queue[str | None] = queue.Queue()
        stderr_tail: deque[str] = deque(maxlen=40)
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, lines.put), daemon=True),
            threading.Thread(target=_pump_tail, args=(proc.stderr, stderr_tail), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"job": job, "params": params}) + "\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            while True:
                if self.is_cancelled is not None and self.is_cancelled():
                    _stop(proc)
                    _remove_partial(cleanup_paths, existed)
                    raise WorkerCancelled("cancelled: the worker process was stopped and partial outputs removed")
                try:
                    line = lines.get(timeout=self.poll_s)
                except queue.Empty:
                    continue
                if line is None:  # stdout closed: the process is ending
                    break
                msg = decode_line(line)
                if msg is None:
                    stderr_tail.append(line.rstrip())
                    continue
                kind = msg["type"]
                if kind == "progress" and self.on_progress:
                    self.on_progress(float(msg.get("fraction", 0.0)), str(msg.get("message", "")))
                elif kind == "log" and self.on_log:
                    self.on_log(str(msg.get("level", "info")), str(msg.get("message", "")))
                elif kind == "result":
                    result = msg.get("data") or {}
                elif kind == "error":
                    error = msg
            code = proc.wait()
        finally:
            if proc.poll() is None:
                _stop(proc)
            for pump in pumps:  # the pipes reach EOF once the process is gone
                pump.join(timeout=2.0)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            self.pid = None
        if result is not None and code == 0:
            return result
        _remove_partial(cleanup_paths, existed)
        if error is not None:
            if error.get("error_type") == "Cancelled":
                raise WorkerCancelled(str(error.get("message")))
            raise WorkerError(
                str(error.get("message")), str(error.get("error_type", "")), str(error.get("traceback", ""))
            )
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = "\n".join(list(stderr_tail)[-15:])
        raise WorkerCrashed(
            f"the sarcoreg worker ({self.python}) {how} without a result."
            + (f"\nLast lines it printed:\n{tail}" if tail else "")
        )


def _pump(stream: Any, put: Callable[[str | None], None]) -> None:
    for line in iter(stream.readline, ""):
        put(line)
    put(None)


def _pump_tail(stream: Any, tail: deque[str]) -> None:
    for line in iter(stream.readline, ""):
        tail.append(line.rstrip())


def _stop(proc: subprocess.Popen[str], grace_s: float = 0.5) -> None:
    """Terminate the worker's whole process group; kill it if it is still there after grace_s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        t_end = time.monotonic() + grace_s
        while time.monotonic() < t_end:
            if proc.poll() is not None:
                return
            time.sleep(0.01)
    proc.wait(timeout=5)


def _remove_partial(paths: list[Path], existed: set[Path]) -> None:
    for p in paths:
        if p not in existed and p.exists():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        folder = p if p.is_dir() else p.parent
        if folder.is_dir():
            for partial in glob.glob(str(folder / ".*.partial*")):
                if os.path.isdir(partial):
                    shutil.rmtree(partial, ignore_errors=True)
                else:
                    os.unlink(partial)
