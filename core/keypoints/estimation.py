"""Robust homography from keypoint matches (RANSAC, as the shared-modality paper)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["estimate_homography", "transform_points"]


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 projective transform to pixel ``(x, y)`` points.

    Args:
        T: ``(3, 3)`` matrix mapping homogeneous ``(x, y, 1)`` column vectors.
        pts: ``(N, 2)`` points.

    Returns:
        ``(N, 2)`` float64; NaN where the point maps to infinity (``w`` close to 0).
    """
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    h = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ np.asarray(T, np.float64).T
    w = h[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = h[:, :2] / w
    out[np.abs(w[:, 0]) < 1e-12] = np.nan
    return out


def estimate_homography(
    pts_a: np.ndarray,
    pts_b: np.ndarray,
    threshold: float = 3.0,
    max_iters: int = 2000,
    confidence: float = 0.995,
    seed: int = 0,
) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC homography mapping ``pts_a`` onto ``pts_b`` (``cv2.findHomography``, ``cv2.RANSAC``).

    The paper (section 4.5) uses RANSAC with at most 2000 iterations and a 3 px threshold; the
    reference code calls ``cv2.findHomography(a, b, cv2.RANSAC)`` (3 px, OpenCV's default 2000
    iterations). Plain RANSAC is kept here for comparability with the paper; the engine's own
    estimation (:mod:`sarcoreg.core.estimation`) uses MAGSAC++ for its transforms.

    Args:
        pts_a: ``(N, 2)`` pixel ``(x, y)`` in image A.
        pts_b: ``(N, 2)`` corresponding points in image B.
        threshold: Reprojection threshold in pixels.
        max_iters: Maximum RANSAC iterations.
        confidence: RANSAC confidence.
        seed: OpenCV RNG seed (results are reproducible).

    Returns:
        ``(H, inliers)``: ``H`` the ``(3, 3)`` float64 matrix with ``H @ (x_a, y_a, 1) ~ (x_b, y_b, 1)``
        or None (fewer than 4 matches, or RANSAC found no model); ``inliers`` an ``(N,)`` bool mask.
    """
    a = np.asarray(pts_a, np.float64).reshape(-1, 2)
    b = np.asarray(pts_b, np.float64).reshape(-1, 2)
    if a.shape != b.shape:
        raise ValueError(f"pts_a {a.shape} and pts_b {b.shape} differ")
    n = len(a)
    if n < 4:
        return None, np.zeros(n, bool)
    cv2.setRNGSeed(int(seed))
    H, mask = cv2.findHomography(
        a, b, cv2.RANSAC, float(threshold), maxIters=int(max_iters), confidence=float(confidence)
    )
    if H is None or not np.all(np.isfinite(H)):
        return None, np.zeros(n, bool)
    inl = np.asarray(mask, bool).reshape(n) if mask is not None else np.zeros(n, bool)
    return np.asarray(H, np.float64), inl
