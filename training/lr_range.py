"""The learning-rate range test (Smith & Topin 2017), as used by Hughes & Schmitt (2019).

The learning rate grows exponentially from ``start_lr`` (1e-7 in the paper) over consecutive
batches while the loss is recorded; the test stops when the smoothed loss exceeds
``diverge_factor`` times its best value. The suggested range is the decade of learning rates
centred (logarithmically) on the steepest descent of the smoothed loss, capped where the loss
starts to diverge (:func:`suggest_range`). (The paper picked 5e-5 .. 5e-4 from such a curve by eye.)
The caller saves and restores the model and optimiser state around the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["LRRangeResult", "lr_range_test", "plot_lr_range", "suggest_range"]


@dataclass
class LRRangeResult:
    """Outcome of a range test.

    Attributes:
        lrs: Learning rate of each step, ``(K,)``.
        losses: Raw loss of each step, ``(K,)``.
        smoothed: Bias-corrected exponential moving average of the losses, ``(K,)``.
        suggested: ``(low, high)`` learning rates for a one-cycle schedule.
        steepest: Learning rate of the steepest descent of the smoothed loss.
        diverged: Whether the test stopped because the loss diverged.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested: tuple[float, float]
    steepest: float
    diverged: bool
    notes: list[str] = field(default_factory=list)


def suggest_range(lrs: np.ndarray, smoothed: np.ndarray, skip: int = 3,
                  rise: float = 0.5) -> tuple[tuple[float, float], float]:
    """Suggested ``(low, high)`` and the steepest-descent learning rate of a smoothed loss curve.

    The slope is measured over ``+-K/10`` points (``K`` = curve length) and searched between the
    leading points and the start of divergence (the smoothed loss ``rise`` = 50 % above its running
    minimum);
    the range is the decade centred on the steepest point, capped at the divergence start.

    Args:
        lrs: ``(K,)`` increasing learning rates.
        smoothed: ``(K,)`` smoothed losses.
        skip: Leading points ignored (at least a tenth of the curve: the average is still settling there).
        rise: Relative rise above the running minimum that marks the start of divergence.

    Returns:
        ``((low, high), steepest)``.
    """
    lrs = np.asarray(lrs, float)
    sm = np.asarray(smoothed, float)
    if len(lrs) < 3:
        raise ValueError(f"the range test needs at least 3 steps, got {len(lrs)}")
    lo_i = min(max(skip, len(lrs) // 10), len(lrs) - 3)
    # Divergence starts where the smoothed loss first rises by `rise` above its running minimum.
    run_min = np.minimum.accumulate(sm[lo_i:])
    above = np.flatnonzero(sm[lo_i:] > run_min + rise * np.abs(run_min))
    end = lo_i + (int(above[0]) if above.size else len(sm) - lo_i - 1)
    end = max(end, lo_i + 2)
    # Slope over a window of +-w points inside [lo_i, end] (per-batch noise makes neighbouring
    # differences useless).
    w = max(1, len(lrs) // 10)
    x = np.log10(lrs)
    cand = np.arange(lo_i, end + 1)
    left, right = np.maximum(cand - w, lo_i), np.minimum(cand + w, end)
    slope = (sm[right] - sm[left]) / np.maximum(x[right] - x[left], 1e-12)
    steep_i = int(cand[int(np.argmin(slope))])
    steepest = float(lrs[steep_i])
    high = min(steepest * math.sqrt(10.0), float(lrs[end]))
    low = high / 10.0
    return (low, high), steepest


def lr_range_test(
    step: Callable[[], float],
    set_lr: Callable[[float], None],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_steps: int = 100,
    beta: float = 0.98,
    diverge_factor: float = 4.0,
) -> LRRangeResult:
    """Run the range test.

    Args:
        step: One training step on the next batch at the current learning rate; returns the loss.
        set_lr: Sets the optimiser's learning rate.
        start_lr: First learning rate.
        end_lr: Last learning rate.
        num_steps: Steps from ``start_lr`` to ``end_lr`` (geometric).
        beta: Smoothing factor of the loss average.
        diverge_factor: Stop when the smoothed loss exceeds this multiple of its minimum.

    Returns:
        Curves and the suggested range.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    lrs_all = np.geomspace(start_lr, end_lr, int(num_steps))
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    diverged = False
    for i, lr in enumerate(lrs_all):
        set_lr(float(lr))
        loss = float(step())
        if not math.isfinite(loss):
            diverged = True
            break
        avg = beta * avg + (1.0 - beta) * loss
        sm = avg / (1.0 - beta ** (i + 1))
        lrs.append(float(lr))
        losses.append(loss)
        smoothed.append(sm)
        best = min(best, sm)
        if i > 3 and sm > diverge_factor * best:
            diverged = True
            break
    arr_lr, arr_sm = np.asarray(lrs), np.asarray(smoothed)
    suggested, steepest = suggest_range(arr_lr, arr_sm)
    return LRRangeResult(arr_lr, np.asarray(losses), arr_sm, suggested, steepest, diverged)


def plot_lr_range(result: LRRangeResult, path: str | Path, title: str = "learning-rate range test") -> Path:
    """Write a PNG of the loss against the learning rate (log axis) with the suggested range shaded."""
    from sarcoreg.core.exports.plots import new_figure, save_png

    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    ax.plot(result.lrs, result.losses, color="0.7", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed")
    lo, hi = result.suggested
    ax.axvspan(lo, hi, color="C2", alpha=0.2, label=f"suggested {lo:.1e} .. {hi:.1e}")
    ax.axvline(result.steepest, color="C3", ls="--", lw=1, label=f"steepest {result.steepest:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if result.losses.size:  # y range: the losses up to the minimum of the curve (divergence clipped)
        upto = int(np.argmin(result.smoothed)) + 1
        low = float(min(result.losses.min(), result.smoothed.min()))
        high = float(max(result.losses[:upto].max(), result.smoothed[:upto].max()))
        if high > low:
            pad = 0.1 * (high - low)
            ax.set_ylim(low - pad, high + pad)
    ax.legend(fontsize=8)
    return save_png(fig, path)
