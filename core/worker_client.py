"""Start a core worker process, stream its progress and logs, and stop it for real on cancel.

Standard library only: the QGIS plugin uses this inside the QGIS process (through a thin
adapter to Processing feedback), scripts can use it directly::

    result = WorkerClient(python="/path/to/venv/bin/python").run("diagnostics", {})
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
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
    """The worker process died without reporting a result (native crash, kill, bad interpreter).

    Attributes:
        signal: The signal that ended it (``9`` for SIGKILL), or None when it exited by itself.
        peak_rss_bytes: The most memory (resident set) the worker was seen to use, or None when
            it could not be measured (no ``/proc``).
    """

    def __init__(self, message: str, signal: int | None = None, peak_rss_bytes: int | None = None) -> None:
        super().__init__(message)
        self.signal = signal
        self.peak_rss_bytes = peak_rss_bytes


class WorkerCancelled(RuntimeError):
    """The caller cancelled; the worker process was stopped and partial outputs removed."""


def package_root(package_dir: Path | None = None, cache_dir: Path | None = None) -> Path:
    """A folder to put on the worker's PYTHONPATH so that ``import sarcoreg`` finds this code.

    The plugin folder is normally called ``sarcoreg`` already: then it is its parent folder and
    nothing is created. A plugin folder under another name gets one ``sarcoreg`` link to it in a
    private folder of the user, ``<cache>/sarcoreg/import-path/<hash of the plugin folder>/``
    (``<cache>`` is ``$XDG_CACHE_HOME`` or ``~/.cache``), made with mode 0700 and checked on
    every use: it must be a real folder (not a link), owned by this user and writable by nobody
    else, so no other user can put code on the worker's import path. The same plugin folder
    always gets the same link folder, so sessions do not leave new folders behind.

    Args:
        package_dir: The package folder (default: the one this module belongs to).
        cache_dir: The user's cache folder (default ``$XDG_CACHE_HOME`` or ``~/.cache``).

    Raises:
        PermissionError: The private folder exists but belongs to someone else (or is a link);
            the message names it.
    """
    pkg = (package_dir or _PACKAGE_DIR).resolve()
    if pkg.name == "sarcoreg":
        return pkg.parent
    cache = cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(pkg).encode("utf-8")).hexdigest()[:16]
    folder = cache / "sarcoreg" / "import-path" / digest
    for private in (cache / "sarcoreg", cache / "sarcoreg" / "import-path", folder):
        _private_folder(private)
    link = folder / "sarcoreg"
    if not (link.is_symlink() and Path(os.readlink(link)) == pkg):
        tmp = folder / f".sarcoreg.{os.getpid()}.{threading.get_ident()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(pkg, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a concurrent session sees the old link or the new one
    return folder


def _private_folder(path: Path) -> None:
    """Create ``path`` with mode 0700 if missing; check it is this user's own real folder.

    A folder of this user that others may write to is made private (0700) again.

    Raises:
        PermissionError: ``path`` is a link, not a folder, or owned by another user.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a real folder (a link or a file); remove it, sarcoreg needs "
                              "a private folder there for the worker's import path")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user (uid {st.st_uid}); sarcoreg will not put code "
                              "from it on the worker's import path. Remove it or set XDG_CACHE_HOME")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)


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
        memory = _MemoryWatch(proc.pid)
        try:
            while True:
                memory.poll()
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
        if code == -signal.SIGKILL:
            how = f"was killed by signal {-code} (SIGKILL)"
        tail = "\n".join(list(stderr_tail)[-15:])
        raise WorkerCrashed(
            f"the sarcoreg worker ({self.python}) {how} without a result."
            + (f"\n{_sigkill_hint(memory.peak)}" if code == -signal.SIGKILL else "")
            + (f"\nLast lines it printed:\n{tail}" if tail else ""),
            signal=-code if code < 0 else None,
            peak_rss_bytes=memory.peak,
        )


class _MemoryWatch:
    """The peak resident memory of a running process, read from ``/proc/<pid>/status`` (Linux).

    ``VmHWM`` is the kernel's own high-water mark of the resident set, so a short peak between
    two polls is not missed; polling only has to happen while the process is alive.
    """

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self._every_s = every_s
        self._next = 0.0
        #: Highest resident set size seen, bytes (None: never measured).
        self.peak: int | None = None

    def poll(self) -> None:
        """Read the process's memory high-water mark (at most every ``every_s`` seconds)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every_s
        try:
            text = self._status.read_text(encoding="ascii", errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    value = int(parts[1]) * 1024
                    self.peak = value if self.peak is None else max(self.peak, value)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _total_memory() -> int | None:
    """Physical memory of this machine in bytes, or None when unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _sigkill_hint(peak: int | None) -> str:
    """What a SIGKILL most likely means, with the worker's memory use."""
    total = _total_memory()
    used = (f"The worker had {_gib(peak)} of memory in use at its peak" if peak is not None
            else "Its memory use could not be measured here")
    of = f" (this machine has {_gib(total)})" if total and peak is not None else ""
    return (
        "Likely cause: the system ran out of memory, and the kernel's out-of-memory killer ended the worker "
        f"(it sends SIGKILL). {used}{of}. Close other programs, use smaller rasters or a smaller tile / batch "
        "size or window, or run it on a machine with more memory."
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
