"""Robust fit of a target-pixel -> reference-pixel model from tie points.

:func:`fit_transform` runs, for every kind:

1. drop rows with NaN coordinates or weights;
2. robust inlier search: OpenCV (MAGSAC++ where available, else RANSAC) for ``similarity``,
   ``affine`` and ``homography``; seeded one-point RANSAC for ``shift``; seeded minimal-sample RANSAC for
   ``poly1..3``; for ``tps`` a robust ``poly2`` (``poly1`` below 15 points) pre-fit at twice the
   threshold, since the spline is non-rigid;
3. weighted least-squares refit on the inliers, inliers recomputed once with the threshold,
   refit again if they changed (the "refine" step; for ``tps`` the control points stay and
   other points within the threshold of the spline join);
4. the inverse model (exact for the matrix kinds, a reverse fit of the same kind otherwise),
   residuals and statistics.

Everything is deterministic for a fixed ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .coords import as_points
from .models import GeometricModel, MatrixModel
from .ransac import (
    ransac_polynomial,
    ransac_shift,
    robust_affine_opencv,
    robust_homography_opencv,
    robust_similarity_opencv,
)
from .refit import fit_affine, fit_homography, fit_polynomial, fit_shift, fit_similarity, fit_tps
from .stats import json_float, radial_stats

__all__ = ["TRANSFORM_KINDS", "FitResult", "fit_transform", "min_points"]

#: Every model family :func:`fit_transform` can fit (``similarity`` came last, so the order of
#: the first seven, which QGIS enum parameters and saved models refer to by index, stays).
TRANSFORM_KINDS: tuple[str, ...] = ("shift", "affine", "homography", "poly1", "poly2", "poly3",
                                    "tps", "similarity")

_MIN_POINTS = {"shift": 1, "affine": 3, "homography": 4, "poly1": 3, "poly2": 6, "poly3": 10,
               "tps": 3, "similarity": 2}
_SIMPLER = {"affine": "shift", "homography": "affine", "poly1": "shift", "poly2": "affine",
            "poly3": "poly2", "tps": "affine", "similarity": "shift"}
#: Below this many valid points the TPS pre-fit is poly1 instead of poly2.
_TPS_POLY2_MIN_POINTS = 15
#: The TPS pre-fit threshold is this multiple of ``threshold_px``.
_TPS_PREFIT_FACTOR = 2.0


def min_points(kind: str) -> int:
    """Smallest number of tie points that determines a model of ``kind``.

    Raises:
        ValueError: Unknown ``kind``.
    """
    _check_kind(kind)
    return _MIN_POINTS[kind]


def _check_kind(kind: str) -> None:
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown transform kind '{kind}'; choose one of: "
                         f"{', '.join(TRANSFORM_KINDS)}")


def _advice(kind: str) -> str:
    simpler = _SIMPLER.get(kind)
    tail = f", or a simpler transform (e.g. '{simpler}')" if simpler else ""
    return f"use a denser tie-point grid, a larger search radius{tail}"


@dataclass
class FitResult:
    """A robust fit and its quality.

    Attributes:
        model: Source -> reference pixel (the points as given). In the engine the sources are the
            target's matches on the reference grid (the target pixels through the target's own
            georeferencing), so the model is a correction in reference-grid pixels, near a pure
            translation for a georeferenced pair (see :class:`sarcoreg.core.engine.CoregResult`).
        inverse: Reference pixel -> target pixel (exact for shift/affine/homography, a reverse
            least-squares fit of the same kind on the inliers for poly/tps).
        inliers: ``(N,)`` bool, False for rejected points and NaN rows.
        residuals: ``(N, 2)`` ``model(src) - dst`` for all points, NaN rows for NaN input.
        rmse_px: Radial RMSE over the inliers, ``sqrt(mean(dx^2 + dy^2))``.
        rmse_x_px: RMSE of ``dx`` over the inliers.
        rmse_y_px: RMSE of ``dy`` over the inliers.
        ce90_px: 90th percentile of the inliers' radial residuals.
        n_inliers: Number of inliers.
        robust_method: How the inliers were found ("USAC_MAGSAC", "RANSAC", ...).
        threshold_px: Inlier threshold used.
        n_valid: Rows without NaN.
        loo_rmse_px: Radial RMSE of the inliers' leave-one-out residuals (each point predicted
            by the model fitted without it): the honest error, essential for ``tps`` whose own
            residuals are ~0. NaN when undefined (e.g. exactly the minimal number of points).
        seed: Seed of the robust step.
    """

    model: GeometricModel
    inverse: GeometricModel
    inliers: np.ndarray
    residuals: np.ndarray
    rmse_px: float
    rmse_x_px: float
    rmse_y_px: float
    ce90_px: float
    n_inliers: int
    robust_method: str
    threshold_px: float = math.nan
    n_valid: int = 0
    loo_rmse_px: float = math.nan
    seed: int = 0

    @property
    def kind(self) -> str:
        """Kind of the model."""
        return self.model.kind

    def residual_stats(self) -> dict[str, float]:
        """:func:`radial_stats` of the inliers' residuals."""
        return radial_stats(self.residuals[self.inliers])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: quality numbers, method, model and inverse (no per-point arrays)."""
        stats = {k: json_float(v) for k, v in self.residual_stats().items()}
        return {
            "kind": self.kind,
            "robust_method": self.robust_method,
            "threshold_px": json_float(self.threshold_px),
            "seed": int(self.seed),
            "n_points": int(len(self.inliers)),
            "n_valid": int(self.n_valid),
            "n_inliers": int(self.n_inliers),
            "rmse_px": json_float(self.rmse_px),
            "rmse_x_px": json_float(self.rmse_x_px),
            "rmse_y_px": json_float(self.rmse_y_px),
            "ce90_px": json_float(self.ce90_px),
            "loo_rmse_px": json_float(self.loo_rmse_px),
            "residual_stats_px": stats,
            "model": self.model.to_dict(),
            "inverse": self.inverse.to_dict(),
        }


def _validate_weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},) like the points, got {w.shape}")
    if np.any(w[np.isfinite(w)] < 0):
        raise ValueError("weights must be >= 0 (0 = no influence on the least-squares fit)")
    return w


def _refit(
    kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    w: np.ndarray,
    tps_smoothing: float,
    rng: np.random.Generator,
) -> tuple[GeometricModel, np.ndarray]:
    """Weighted least-squares fit of ``kind``: ``(model, loo_residuals (M, 2))``."""
    n_used = int(np.count_nonzero(w > 0))
    if n_used < _MIN_POINTS[kind]:
        raise ValueError(
            f"only {n_used} inliers have a positive weight, '{kind}' needs "
            f"{_MIN_POINTS[kind]}; give the points positive weights or {_advice(kind)}"
        )
    if kind == "shift":
        return fit_shift(src, dst, w)
    if kind == "affine":
        return fit_affine(src, dst, w)
    if kind == "similarity":
        return fit_similarity(src, dst, w)
    if kind == "homography":
        return fit_homography(src, dst, w)
    if kind == "tps":
        return fit_tps(src, dst, tps_smoothing, w, rng)
    return fit_polynomial(src, dst, int(kind[-1]), w)


def _robust_inliers(
    kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    threshold: float,
    confidence: float,
    max_iters: int,
    seed: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, str]:
    """Robust inlier mask ``(M,)`` and the method's name."""
    if kind == "shift":
        return ransac_shift(src, dst, threshold, confidence, max_iters, rng), "RANSAC"
    if kind == "affine":
        return robust_affine_opencv(src, dst, threshold, confidence, max_iters, seed)
    if kind == "similarity":
        return robust_similarity_opencv(src, dst, threshold, confidence, max_iters, seed)
    if kind == "homography":
        return robust_homography_opencv(src, dst, threshold, confidence, max_iters, seed)
    if kind == "tps":
        pre = "poly2" if len(src) >= _TPS_POLY2_MIN_POINTS else "poly1"
        inl, _ = _robust_inliers(pre, src, dst, _TPS_PREFIT_FACTOR * threshold, confidence,
                                 max_iters, seed, rng)
        return inl, f"RANSAC {pre} pre-fit (x{_TPS_PREFIT_FACTOR:g} threshold)"
    degree = int(kind[-1])
    return ransac_polynomial(src, dst, degree, threshold, confidence, max_iters, rng), "RANSAC"


def fit_transform(
    src_xy: np.ndarray,
    dst_xy: np.ndarray,
    kind: str = "affine",
    *,
    weights: np.ndarray | None = None,
    threshold_px: float = 3.0,
    confidence: float = 0.999,
    max_iters: int = 5000,
    seed: int = 0,
    tps_smoothing: float = 0.0,
) -> FitResult:
    """Robustly fit a model ``kind`` mapping ``src_xy`` onto ``dst_xy``.

    Args:
        src_xy: Tie points in the original target raster's pixels, ``(N, 2)``; NaN rows ignored.
        dst_xy: The same tie points in the reference raster's pixels, ``(N, 2)``.
        kind: One of :data:`TRANSFORM_KINDS`.
        weights: Optional ``(N,)`` weights >= 0 for the least-squares refits (NaN = ignore row).
        threshold_px: Inlier distance in reference pixels.
        confidence: Robust-sampling confidence in (0, 1).
        max_iters: Maximum robust iterations.
        seed: Seed of all random sampling (OpenCV and numpy); same seed, same result.
        tps_smoothing: ``RBFInterpolator`` smoothing for ``tps`` (0 = interpolate), in
            normalised coordinates (unit RMS spread of the points).

    Returns:
        The :class:`FitResult`.

    Raises:
        ValueError: Bad arguments, too few valid points or inliers for ``kind`` (the message
            says how many were found and needed, and what to change), degenerate point layout.
    """
    _check_kind(kind)
    if not threshold_px > 0:
        raise ValueError(f"threshold_px must be > 0, got {threshold_px}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if max_iters < 1:
        raise ValueError(f"max_iters must be >= 1, got {max_iters}")
    if not tps_smoothing >= 0:
        raise ValueError(f"tps_smoothing must be >= 0, got {tps_smoothing}")
    src_all, dst_all = as_points(src_xy, "src_xy"), as_points(dst_xy, "dst_xy")
    n = len(src_all)
    if dst_all.shape != src_all.shape:
        raise ValueError(f"src_xy {src_all.shape} and dst_xy {dst_all.shape} differ in shape")
    w_all = _validate_weights(weights, n)
    valid = np.isfinite(src_all).all(axis=1) & np.isfinite(dst_all).all(axis=1)
    valid &= np.isfinite(w_all)
    need = _MIN_POINTS[kind]
    n_valid = int(valid.sum())
    if n_valid < need:
        raise ValueError(
            f"found {n_valid} valid tie points (of {n}; rows with NaN are ignored) but "
            f"'{kind}' needs at least {need}: {_advice(kind)}"
        )
    idx = np.flatnonzero(valid)
    src, dst, w = src_all[idx], dst_all[idx], w_all[idx]
    rng = np.random.default_rng(seed)

    inl, method = _robust_inliers(kind, src, dst, threshold_px, confidence, max_iters, seed, rng)
    if int(inl.sum()) < need:
        raise ValueError(
            f"the robust '{kind}' fit kept only {int(inl.sum())} of {n_valid} valid tie points "
            f"within {threshold_px:g} px, '{kind}' needs at least {need}: raise threshold_px, "
            f"{_advice(kind)}"
        )
    model, loo = _refit(kind, src[inl], dst[inl], w[inl], tps_smoothing, rng)
    # Refine: recompute the inliers with the refitted model once and refit if they changed.
    close = np.hypot(*(model.apply(src) - dst).T) <= threshold_px
    inl2 = (inl | close) if kind == "tps" else close
    if not np.array_equal(inl2, inl) and int(inl2.sum()) >= need:
        inl = inl2
        model, loo = _refit(kind, src[inl], dst[inl], w[inl], tps_smoothing, rng)

    if isinstance(model, MatrixModel):
        inverse: GeometricModel = model.inverted()
    else:
        inverse, _ = _refit(kind, dst[inl], src[inl], w[inl], tps_smoothing, rng)

    residuals = np.full((n, 2), np.nan)
    residuals[idx] = model.apply(src) - dst
    inliers = np.zeros(n, bool)
    inliers[idx[inl]] = True
    stats = radial_stats(residuals[inliers])
    loo_stats = radial_stats(loo)
    return FitResult(
        model=model,
        inverse=inverse,
        inliers=inliers,
        residuals=residuals,
        rmse_px=stats["rmse"],
        rmse_x_px=stats["rmse_x"],
        rmse_y_px=stats["rmse_y"],
        ce90_px=stats["ce90"],
        n_inliers=int(inliers.sum()),
        robust_method=method,
        threshold_px=float(threshold_px),
        n_valid=n_valid,
        loo_rmse_px=loo_stats["rmse"],
        seed=int(seed),
    )
