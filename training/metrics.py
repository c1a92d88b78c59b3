"""Patch-matching metrics: ROC curve, AUC and FPR95 (false positive rate at 95 % recall).

FPR95 follows the public RRL-Net code: the ROC curve over all distinct score thresholds
(as ``sklearn.metrics.roc_curve``) and the false positive rate linearly interpolated at a true
positive rate of 0.95. Scores are "higher = more likely a match"; labels 1 = match.
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "fpr_at_recall", "fpr95", "roc_curve"]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve over every distinct score threshold.

    Args:
        labels: ``(N,)`` 0/1 (or bool), 1 = matching pair; both classes must occur.
        scores: ``(N,)`` similarity, higher = more likely a match.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(K + 1,)``, starting at ``(0, 0)`` (threshold +inf)
        and ending at ``(1, 1)``.

    Raises:
        ValueError: Shapes differ, or one class is missing.
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must have the same length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thr = np.r_[np.inf, s[last]]
    return fpr, tpr, thr


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids), in [0, 1]; 0.5 = chance."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def fpr_at_recall(labels: np.ndarray, scores: np.ndarray, recall: float = 0.95) -> float:
    """False positive rate at the given recall (TPR), linear interpolation of the ROC.

    The interpolation runs between the first ROC point that reaches ``recall`` and the point
    just before it, as ``scipy.interpolate.interp1d(tpr, fpr)`` on the sklearn curve does (the
    public code's FPR95): every negative ranked above the positive that completes the recall
    is counted.
    """
    if not 0.0 <= recall <= 1.0:
        raise ValueError(f"recall must be in [0, 1], got {recall}")
    fpr, tpr, _ = roc_curve(labels, scores)
    hi = int(np.searchsorted(tpr, recall, side="left"))  # first point reaching the recall
    if hi == 0:
        return float(fpr[0])
    lo = hi - 1  # the last point below it (highest FPR at that lower recall)
    w = (recall - tpr[lo]) / (tpr[hi] - tpr[lo])
    return float(fpr[lo] + w * (fpr[hi] - fpr[lo]))


def fpr95(labels: np.ndarray, scores: np.ndarray) -> float:
    """FPR at 95 % recall, as a fraction (multiply by 100 for the papers' percentages)."""
    return fpr_at_recall(labels, scores, 0.95)
