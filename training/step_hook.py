"""Per-step progress of the training loops, for callers that are not a terminal.

The trainers print one line per epoch and draw a tqdm bar on a terminal. A caller that runs a
trainer in-process (the worker's ``train`` job behind the QGIS algorithm *Train a model*) installs
a hook with :func:`step_hook`; every training step then calls it with the fraction of the run
done and a short message, so that progress moves and *Cancel* takes effect within one step rather
than one epoch (the hook may raise to stop the run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["report_epoch_step", "report_step", "step_hook"]

StepHook = Callable[[float, str], None]
_hook: StepHook | None = None


def report_step(fraction: float, message: str) -> None:
    """Called by the training loops after each step; does nothing unless a hook is installed.

    Args:
        fraction: Share of the planned steps done, 0..1.
        message: E.g. ``"epoch 2/10 step 37/120"``.
    """
    if _hook is not None:
        _hook(min(max(float(fraction), 0.0), 1.0), message)


def report_epoch_step(epoch: int, epochs: int, step: int, steps_per_epoch: int) -> None:
    """:func:`report_step` for epoch-based loops: ``step`` (0-based) of ``epoch`` (0-based) just finished."""
    report_step((epoch + (step + 1) / steps_per_epoch) / epochs,
                f"epoch {epoch + 1}/{epochs} step {step + 1}/{steps_per_epoch}")


@contextmanager
def step_hook(hook: StepHook) -> Iterator[None]:
    """Install ``hook`` for the duration of the ``with`` block (the previous one is restored)."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous
