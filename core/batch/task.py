"""The task of one pair: run the engine into ``DIR/<id>/`` and return the pair's summary row.

:func:`run_pair` is what a Dask worker executes (it must stay importable as
``sarcoreg.core.batch.task.run_pair`` on every worker). It never raises for a pair that fails: a
failed verdict or an error becomes a row with ``status`` ``failed`` / ``error`` and the message,
so one bad pair cannot stop the others. Only a dying worker process reaches Dask, which retries
the task on another worker a bounded number of times.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from ..progress import Cancelled, Progress
from .folders import pair_folder
from .pairs import Pair
from .rows import error_row, row_from_report

__all__ = ["run_pair"]

log = logging.getLogger("sarcoreg.batch")

#: Seconds between two looks at the batch's cancel event (one round trip to the scheduler each).
_CANCEL_POLL_S = 1.0


def _limit_threads(threads: int) -> None:
    """Keep OpenCV (and torch, when loaded) to ``threads`` threads in this worker process."""
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - OpenCV is a core dependency
        pass
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _cancel_watch(event_name: str | None, progress: Progress) -> Any:
    """A progress callback that cancels ``progress`` once the Dask event ``event_name`` is set."""
    if not event_name:
        return None
    from distributed import Event

    event = Event(event_name)
    last = [0.0]

    def check(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= _CANCEL_POLL_S:
            last[0] = now
            if event.is_set():
                progress.cancel()

    return check


def run_pair(pair: dict[str, Any], out_dir: str, cancel_event: str | None = None, threads: int = 1
             ) -> dict[str, Any]:
    """Co-register one pair into ``<out_dir>/<id>/`` and return its summary row.

    Args:
        pair: :meth:`Pair.to_dict` of the pair.
        out_dir: The batch output folder.
        cancel_event: Name of a ``distributed.Event``; once it is set the engine stops at its
            next progress report and writes nothing (None: no cancel, e.g. outside Dask).
        threads: Threads OpenCV / torch may use for this pair.

    Returns:
        The row (:data:`~sarcoreg.core.batch.rows.FIELDS`) plus ``worker`` (host and process id).
    """
    from ..engine import CoregOptions, coregister
    from ..verdict import CoregistrationFailed

    p = Pair(**pair)
    folder = pair_folder(out_dir, p.id)
    _limit_threads(threads)
    progress = Progress()
    progress.callback = _cancel_watch(cancel_event, progress)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    try:
        res = coregister(p.reference, p.target, folder, CoregOptions.from_dict(dict(p.options)), progress)
        row = row_from_report(p, folder, res.report, time.perf_counter() - t0)
    except CoregistrationFailed as exc:
        elapsed = time.perf_counter() - t0
        if exc.report is not None:
            row = row_from_report(p, folder, exc.report, elapsed)
            row["status"] = "failed"
            row["error"] = "co-registration failed, nothing was written"
        else:
            row = error_row(p, folder, "failed", " | ".join(exc.reasons) or str(exc), elapsed)
        row["report"] = ""
    except Cancelled:
        row = error_row(p, folder, "not run", "cancelled", time.perf_counter() - t0)
    except Exception as exc:  # a bad pair must not stop the others: record it
        log.warning("pair %s: %s: %s", p.id, type(exc).__name__, exc)
        row = error_row(p, folder, "error", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
    row["cpu_s"] = round(time.thread_time() - cpu0, 3)
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row

