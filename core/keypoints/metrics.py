"""The matching quality indicators of the shared-modality paper (Borisov et al. 2026, section 4.5).

Notation: ``P`` the matches ``(p1, p2)`` with ``p1`` in image A (the paper's SAR image) and ``p2``
in image B (optical); ``T`` the true transform A -> B (identity for co-registered pairs), ``T^``
the RANSAC estimate (:func:`~.estimation.estimate_homography`, 3 px, 2000 iterations).

Per pair (:func:`pair_metrics`):

- ``ACE`` = mean over the four corners ``(0, 0), (0, H), (W, 0), (W, H)`` of image A of
  ``|t(c, T^) - t(c, T)|`` (the paper writes ``|t(c, T^) - c|`` for ``T`` = identity). A failure (no
  estimate) gives ``ACE = inf``. The reference code uses the corners ``(W - 1, H - 1)``; pass
  ``corners="pixel-centres"`` for that.
- success: ``ACE < 40`` (the paper; the reference code uses ``<= 40``).
- ``MMA`` = ``|P+| / |P|``, ``P+`` the matches with ``|t(p1, T^) - p2| <= 3``: computed from the
  estimate as the paper defines it (the reference code reports the RANSAC inlier ratio, which is
  the same set up to OpenCV's final refit). NaN when there is no estimate.
- ``Delta_p`` = mean ``|t(p1, T) - p2|`` over all matches (NaN when ``|P| = 0``).
- ``CMR_d`` = ``|P_d correct| / |P|``, ``P_d correct`` the matches with ``|t(p1, T) - p2| <= d``;
  0 when ``|P| = 0`` (no match is no correct match; the reference code does the same).
- ``LE_d`` = mean ``|t(p1, T) - p2|`` over ``P_d correct``: **NaN when there is no correct match**
  (the reference code writes 0.0 there, which pulls the average down; the paper brackets such
  values in Table 2).

Over a set of pairs (:func:`aggregate`): ``SR`` = share of successful pairs; ``ACE`` and ``MMA``
averaged over successful pairs only (as the paper states); ``Delta_p`` and ``LE_d`` averaged over
the pairs where they are defined; ``|P|``, ``|P_5 correct|`` and ``CMR_d`` averaged over all pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .estimation import estimate_homography, transform_points

__all__ = ["DELTAS", "SUCCESS_ACE", "PairMetrics", "aggregate", "corner_error", "pair_metrics"]

#: The thresholds delta of CMR_delta and LE_delta (pixels).
DELTAS = (1, 2, 3, 4, 5)
#: A pair is a success when ACE is below this (pixels).
SUCCESS_ACE = 40.0
#: The MMA threshold (pixels).
MMA_THRESHOLD = 3.0


@dataclass
class PairMetrics:
    """Indicators of one image pair (see the module doc).

    Attributes:
        n_matches: ``|P|``.
        ace: Average corner error (inf on failure).
        success: ``ace < 40``.
        mma: ``|P+| / |P|`` under the estimate (NaN without one).
        delta_p: Mean error of all matches under the true transform (NaN without matches).
        cmr: ``{d: CMR_d}``.
        le: ``{d: LE_d}`` (NaN without correct matches).
        n_correct: ``{d: |P_d correct|}``.
        n_inliers: RANSAC inliers of the estimate.
        H: The estimate (None on failure).
    """

    n_matches: int
    ace: float
    success: bool
    mma: float
    delta_p: float
    cmr: dict[int, float] = field(default_factory=dict)
    le: dict[int, float] = field(default_factory=dict)
    n_correct: dict[int, int] = field(default_factory=dict)
    n_inliers: int = 0
    H: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """Flat dict (``cmr1`` ... ``le5``, ``n_correct5``) without the matrix."""
        d = asdict(self)
        d.pop("H")
        for key in ("cmr", "le", "n_correct"):
            for k, v in d.pop(key).items():
                d[f"{key}{k}"] = v
        return d


def _corners(shape: tuple[int, int], corners: str) -> np.ndarray:
    h, w = shape
    if corners == "paper":
        return np.array([[0, 0], [0, h], [w, 0], [w, h]], np.float64)
    if corners == "pixel-centres":
        return np.array([[0, 0], [0, h - 1], [w - 1, 0], [w - 1, h - 1]], np.float64)
    raise ValueError(f"corners must be 'paper' or 'pixel-centres', got {corners!r}")


def corner_error(
    H_est: np.ndarray | None, shape: tuple[int, int], T: np.ndarray | None = None, corners: str = "paper"
) -> float:
    """ACE: mean distance between the corners of image A mapped by the estimate and by the truth.

    Args:
        H_est: Estimated A -> B homography, or None (failure: returns inf).
        shape: ``(H, W)`` of image A.
        T: True A -> B transform (default identity).
        corners: "paper" (``(0, 0) ... (W, H)``) or "pixel-centres" (``... (W - 1, H - 1)``, the reference code).
    """
    if H_est is None:
        return math.inf
    c = _corners(shape, corners)
    truth = c if T is None else transform_points(T, c)
    err = np.linalg.norm(transform_points(H_est, c) - truth, axis=1)
    if not np.all(np.isfinite(err)):
        return math.inf
    return float(err.mean())


def pair_metrics(
    pts_a: np.ndarray,
    pts_b: np.ndarray,
    shape_a: tuple[int, int],
    T: np.ndarray | None = None,
    H_est: np.ndarray | None = None,
    *,
    estimate: bool = True,
    ransac_threshold: float = 3.0,
    max_iters: int = 2000,
    deltas: Sequence[int] = DELTAS,
    corners: str = "paper",
    seed: int = 0,
) -> PairMetrics:
    """All indicators of one pair from its matches.

    Args:
        pts_a: ``(N, 2)`` pixel ``(x, y)`` in image A.
        pts_b: ``(N, 2)`` matching points in image B.
        shape_a: ``(H, W)`` of image A (for the corners).
        T: True A -> B transform, ``(3, 3)``; default identity (co-registered pair).
        H_est: An estimate to score instead of running RANSAC.
        estimate: Run :func:`~.estimation.estimate_homography` when ``H_est`` is None.
        ransac_threshold: RANSAC threshold (3 px as the paper).
        max_iters: RANSAC iterations (2000 as the paper).
        deltas: The thresholds of CMR and LE.
        corners: See :func:`corner_error`.
        seed: RANSAC seed.
    """
    a = np.asarray(pts_a, np.float64).reshape(-1, 2)
    b = np.asarray(pts_b, np.float64).reshape(-1, 2)
    n = len(a)
    n_inl = 0
    if H_est is None and estimate:
        H_est, inl = estimate_homography(a, b, ransac_threshold, max_iters, seed=seed)
        n_inl = int(inl.sum())
    ace = corner_error(H_est, shape_a, T, corners)
    success = bool(ace < SUCCESS_ACE)
    if H_est is not None and n:
        mma = float(np.mean(np.linalg.norm(transform_points(H_est, a) - b, axis=1) <= MMA_THRESHOLD))
    else:
        mma = math.nan
    err = np.linalg.norm((a if T is None else transform_points(T, a)) - b, axis=1)
    delta_p = float(err.mean()) if n else math.nan
    cmr, le, nc = {}, {}, {}
    for d in deltas:
        ok = err <= d
        nc[int(d)] = int(ok.sum())
        cmr[int(d)] = float(ok.mean()) if n else 0.0
        le[int(d)] = float(err[ok].mean()) if ok.any() else math.nan
    return PairMetrics(n, ace, success, mma, delta_p, cmr, le, nc, n_inl, H_est)


def _nanmean(x: Sequence[float]) -> float:
    v = np.asarray(x, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def aggregate(pairs: Sequence[PairMetrics], deltas: Sequence[int] = DELTAS) -> dict[str, float]:
    """Table-2 row over pairs: SR, ACE, MMA, Delta_p, |P|, |P_5 correct|, CMR_d, LE_d (module doc).

    Returns:
        ``{"pairs", "SR", "ACE", "MMA", "delta_p", "P", "P5_correct", "CMR1".., "LE1"..}``; NaN
        where nothing defines a value (e.g. ACE with no successful pair).
    """
    if not pairs:
        raise ValueError("aggregate needs at least one pair")
    ok = [p for p in pairs if p.success]
    out: dict[str, float] = {
        "pairs": float(len(pairs)),
        "SR": len(ok) / len(pairs),
        "ACE": _nanmean([p.ace for p in ok]),
        "MMA": _nanmean([p.mma for p in ok]),
        "delta_p": _nanmean([p.delta_p for p in pairs]),
        "P": float(np.mean([p.n_matches for p in pairs])),
        "P5_correct": float(np.mean([p.n_correct.get(5, 0) for p in pairs])),
    }
    for d in deltas:
        out[f"CMR{d}"] = float(np.mean([p.cmr[int(d)] for p in pairs]))
        out[f"LE{d}"] = _nanmean([p.le[int(d)] for p in pairs])
    return out
