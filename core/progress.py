"""Progress reporting and cancellation shared by every long-running core job.

The core never prints progress itself: callers pass a :class:`Progress` (or nothing). The command
line wraps it in tqdm, the worker turns it into JSON lines, the QGIS side into Processing feedback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Cancelled", "Progress"]

ProgressCallback = Callable[[float, str], None]
"""``callback(fraction, message)`` with ``fraction`` in [0, 1]."""


class Cancelled(RuntimeError):
    """Raised inside a job when its caller asked it to stop."""


@dataclass
class Progress:
    """Progress sink plus cancel flag, passed down through a job.

    Args:
        callback: Called as ``callback(fraction, message)``; ``fraction`` is in [0, 1].
        cancel_event: Set it from any thread to ask the job to stop at its next check.
        start: Fraction this (sub-)progress starts at in the parent's scale.
        span: Share of the parent's scale this progress covers.
    """

    callback: ProgressCallback | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    start: float = 0.0
    span: float = 1.0

    def report(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` (0..1) of this step done, then stop if cancelled."""
        if self.callback is not None:
            f = min(max(fraction, 0.0), 1.0)
            self.callback(self.start + self.span * f, message)
        self.check()

    def check(self) -> None:
        """Raise :class:`Cancelled` if a cancel was requested."""
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self.cancel_event.set()

    def sub(self, start: float, end: float) -> Progress:
        """A child progress that maps its [0, 1] onto [start, end] of this one."""
        return Progress(
            callback=self.callback,
            cancel_event=self.cancel_event,
            start=self.start + self.span * start,
            span=self.span * (end - start),
        )
