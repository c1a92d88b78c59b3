"""Robust inlier search: seeded RANSAC of our own, and OpenCV's USAC/RANSAC estimators.

Each function takes the valid tie points only and returns an inlier mask ``(M,)``; the final
models come from the weighted refits of :mod:`.refit`. Our own samplers score hypotheses with the
MSAC cost ``sum_i min(r_i^2, t^2)`` (which, unlike a plain inlier count, prefers the hypothesis
that fits its inliers best) and stop adaptively once ``confidence`` is reached:
``k = log(1 - confidence) / log(1 - w^s)`` for inlier ratio ``w`` and sample size ``s``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .coords import Normalisation, monomial_design

__all__ = [
    "opencv_robust_method",
    "ransac_polynomial",
    "ransac_shift",
    "robust_affine_opencv",
    "robust_homography_opencv",
    "robust_similarity_opencv",
]

# Residual evaluations (hypotheses x points) per vectorised batch: bounds memory to ~50 MB.
_BATCH_CELLS = 2_000_000


def _needed_iterations(n_inliers: int, n: int, sample: int, confidence: float) -> float:
    """Iterations for ``confidence`` of one all-inlier sample at inlier ratio ``n_inliers / n``."""
    ratio = n_inliers / max(n, 1)
    p_good = ratio**sample
    if p_good >= 1.0:
        return 1.0
    if p_good <= 0.0:
        return math.inf
    return math.log(1.0 - confidence) / math.log1p(-p_good)


def ransac_shift(
    src: np.ndarray,
    dst: np.ndarray,
    threshold: float,
    confidence: float,
    max_iters: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One-point RANSAC on the translation ``dst - src``.

    Every hypothesis is the translation of one tie point (drawn without replacement in a seeded
    random order); the consensus is the set of points whose translation lies within
    ``threshold`` of it.

    Args:
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        threshold: Inlier distance in pixels.
        confidence: Stop once an all-inlier hypothesis was drawn with this probability.
        max_iters: Upper bound on hypotheses.
        rng: Seeded generator.

    Returns:
        Inlier mask ``(M,)`` of the best hypothesis.
    """
    d = dst - src
    n = len(d)
    order = rng.permutation(n)
    t2 = threshold**2
    limit = min(n, max_iters)
    best_cost, best_hyp, best_count = math.inf, -1, 0
    done = 0
    batch = max(1, _BATCH_CELLS // max(n, 1))
    while done < limit and done < _needed_iterations(best_count, n, 1, confidence):
        hyp = order[done : min(done + batch, limit)]
        r2 = np.sum((d[None, :, :] - d[hyp, None, :]) ** 2, axis=2)
        cost = np.minimum(r2, t2).sum(axis=1)
        k = int(np.argmin(cost))
        if cost[k] < best_cost:
            best_cost, best_hyp = float(cost[k]), int(hyp[k])
            best_count = int(np.count_nonzero(r2[k] <= t2))
        done += len(hyp)
    return np.asarray(np.sum((d - d[best_hyp]) ** 2, axis=1) <= t2)


def ransac_polynomial(
    src: np.ndarray,
    dst: np.ndarray,
    degree: int,
    threshold: float,
    confidence: float,
    max_iters: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """RANSAC for a polynomial of ``degree`` with minimal samples, in normalised coordinates.

    Each hypothesis solves the square system of ``(degree + 1)(degree + 2) / 2`` random points
    exactly; ill-conditioned samples (near-collinear points) are skipped. Hypotheses are drawn
    and scored in vectorised batches.

    Args:
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        degree: 1, 2 or 3.
        threshold: Inlier distance in pixels.
        confidence: Stop once an all-inlier sample was drawn with this probability.
        max_iters: Upper bound on samples.
        rng: Seeded generator.

    Returns:
        Inlier mask ``(M,)`` of the best hypothesis (all False if every sample was degenerate).
    """
    n = len(src)
    design = monomial_design(Normalisation.from_points(src).forward(src), degree)
    s = design.shape[1]
    t2 = threshold**2
    best_cost, best_count = math.inf, 0
    best_mask = np.zeros(n, bool)
    done = 0
    batch = max(1, min(256, _BATCH_CELLS // max(n, 1)))
    while done < max_iters and done < _needed_iterations(best_count, n, s, confidence):
        b = min(batch, max_iters - done)
        idx = np.argpartition(rng.random((b, n)), s - 1, axis=1)[:, :s]  # (b, s) distinct
        a = design[idx]  # (b, s, s)
        sv = np.linalg.svd(a, compute_uv=False)
        ok = sv[:, -1] > 1e-9 * sv[:, 0]
        a[~ok] = np.eye(s)
        coef = np.linalg.solve(a, dst[idx])  # (b, s, 2)
        pred = np.einsum("np,bpk->bnk", design, coef)
        r2 = np.sum((pred - dst[None]) ** 2, axis=2)  # (b, n)
        cost = np.minimum(r2, t2).sum(axis=1)
        cost[~ok] = math.inf
        k = int(np.argmin(cost))
        if cost[k] < best_cost:
            best_cost = float(cost[k])
            best_mask = r2[k] <= t2
            best_count = int(np.count_nonzero(best_mask))
        done += b
    return np.asarray(best_mask)


def opencv_robust_method() -> tuple[int, str]:
    """OpenCV's best robust method here: ``(cv2.USAC_MAGSAC, "USAC_MAGSAC")`` or RANSAC."""
    if hasattr(cv2, "USAC_MAGSAC"):
        return int(cv2.USAC_MAGSAC), "USAC_MAGSAC"
    return int(cv2.RANSAC), "RANSAC"


def _opencv_mask(mask: np.ndarray | None, n: int) -> np.ndarray:
    """OpenCV's ``(M, 1)`` uint8 inlier mask as ``(M,)`` bool."""
    if mask is None:
        return np.zeros(n, bool)
    return np.asarray(mask, dtype=bool).reshape(n)


def _robust_opencv(
    kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    threshold: float,
    confidence: float,
    max_iters: int,
    seed: int,
) -> tuple[np.ndarray, str]:
    """Inliers of OpenCV's robust affine or homography estimator (MAGSAC++, RANSAC fallback).

    Args:
        kind: "affine" (``cv2.estimateAffine2D``), "similarity" (``cv2.estimateAffinePartial2D``) or
            "homography" (``cv2.findHomography``).
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        threshold: Reprojection threshold in pixels.
        confidence: RANSAC confidence.
        max_iters: Maximum iterations.
        seed: Seed for ``cv2.setRNGSeed``.

    Returns:
        ``(inlier mask (M,), method name)``; the mask is all False when OpenCV found nothing.
    """
    flag, name = opencv_robust_method()
    minimal = {"similarity": 2, "affine": 3}.get(kind, 4)
    candidates = [(flag, name)] + ([(int(cv2.RANSAC), "RANSAC")] if name != "RANSAC" else [])
    if kind == "similarity":  # estimateAffinePartial2D knows RANSAC and LMEDS only, not the USAC family
        candidates = [(int(cv2.RANSAC), "RANSAC")]
    a, b = src.astype(np.float64), dst.astype(np.float64)
    for method, label in candidates:
        cv2.setRNGSeed(int(seed))
        if kind == "affine":
            model, mask = cv2.estimateAffine2D(
                a, b, method=method, ransacReprojThreshold=float(threshold), maxIters=int(max_iters),
                confidence=float(confidence), refineIters=10,
            )
        elif kind == "similarity":
            model, mask = cv2.estimateAffinePartial2D(
                a, b, method=method, ransacReprojThreshold=float(threshold), maxIters=int(max_iters),
                confidence=float(confidence), refineIters=10,
            )
        else:
            model, mask = cv2.findHomography(
                a, b, method, float(threshold), maxIters=int(max_iters), confidence=float(confidence)
            )
        inl = _opencv_mask(mask, len(src))
        if model is not None and inl.sum() >= minimal:
            return inl, label
    return np.zeros(len(src), bool), name


def robust_affine_opencv(
    src: np.ndarray, dst: np.ndarray, threshold: float, confidence: float, max_iters: int, seed: int
) -> tuple[np.ndarray, str]:
    """Inliers of ``cv2.estimateAffine2D``; see :func:`_robust_opencv`."""
    return _robust_opencv("affine", src, dst, threshold, confidence, max_iters, seed)


def robust_similarity_opencv(
    src: np.ndarray, dst: np.ndarray, threshold: float, confidence: float, max_iters: int, seed: int
) -> tuple[np.ndarray, str]:
    """Inliers of ``cv2.estimateAffinePartial2D``; see :func:`_robust_opencv`."""
    return _robust_opencv("similarity", src, dst, threshold, confidence, max_iters, seed)


def robust_homography_opencv(
    src: np.ndarray, dst: np.ndarray, threshold: float, confidence: float, max_iters: int, seed: int
) -> tuple[np.ndarray, str]:
    """Inliers of ``cv2.findHomography``; see :func:`_robust_opencv`."""
    return _robust_opencv("homography", src, dst, threshold, confidence, max_iters, seed)
