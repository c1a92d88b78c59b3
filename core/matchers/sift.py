"""SIFT keypoints matched between template and search window, with a translation consensus.

Per chip pair: SIFT keypoints and descriptors in the template and in the search window
(OpenCV), nearest-neighbour matching with Lowe's ratio test, then a one-point RANSAC for a pure
translation (every match proposes a displacement; the one with most matches within ``tolerance``
wins) and the median displacement of its inliers. Works between images of similar appearance;
SAR speckle and SAR/optical differences defeat it more often than not.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from ..methods import get_method
from .base import ChipBatch, Matcher, MatchResult
from .peaks import fill_invalid, valid_fractions

__all__ = ["SiftMatcher"]


def _to_uint8(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Stretch an image between its valid 1st and 99th percentiles to uint8."""
    vals = image[valid]
    if vals.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(vals, [1.0, 99.0])
    scaled = (image - lo) * (255.0 / max(float(hi - lo), 1e-6))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


class SiftMatcher(Matcher):
    """SIFT + ratio test + one-point translation RANSAC.

    Args:
        ratio: Lowe's ratio-test threshold (best / second-best descriptor distance).
        tolerance: Distance (pixels) within which a match agrees with a displacement.
        min_matches: Fewest consistent matches for a valid result.
        contrast_threshold: OpenCV SIFT ``contrastThreshold``; lower finds more keypoints in
            low-contrast chips.
        min_valid: Smallest share of valid pixels in template and search window.
    """

    name: ClassVar[str] = "sift"
    description: ClassVar[str] = get_method("sift").description

    def __init__(
        self,
        ratio: float = 0.8,
        tolerance: float = 1.5,
        min_matches: int = 3,
        contrast_threshold: float = 0.02,
        min_valid: float = 0.7,
    ) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        if min_matches < 1:
            raise ValueError(f"min_matches must be at least 1, got {min_matches}")
        self.ratio = float(ratio)
        self.tolerance = float(tolerance)
        self.min_matches = int(min_matches)
        self.contrast_threshold = float(contrast_threshold)
        self.min_valid = float(min_valid)
        self._sift = cv2.SIFT.create(contrastThreshold=self.contrast_threshold)
        self._matcher = cv2.BFMatcher(cv2.NORM_L2)

    def match(self, chips: ChipBatch) -> MatchResult:
        """Match keypoints of every template to its search window.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)``.

        Returns:
            Rows with score = number of consistent matches; no maps.
        """
        n, r = len(chips), chips.radius
        ref_valid = (
            np.ones(chips.reference.shape, bool)
            if chips.reference_valid is None
            else np.asarray(chips.reference_valid, bool)
        ) & np.isfinite(chips.reference)
        tgt_valid = (
            np.ones(chips.target.shape, bool)
            if chips.target_valid is None
            else np.asarray(chips.target_valid, bool)
        ) & np.isfinite(chips.target)
        ref = fill_invalid(chips.reference, ref_valid)
        tgt = fill_invalid(chips.target, tgt_valid)
        ref_frac, tgt_frac = valid_fractions(chips)
        shift = np.full((n, 2), np.nan)
        score = np.zeros(n)
        reliability = np.zeros(n)
        errors: list[str] = []
        for k in range(n):
            if min(ref_frac[k], tgt_frac[k]) < self.min_valid:
                errors.append(
                    f"too much nodata (template {ref_frac[k]:.0%}, search window "
                    f"{tgt_frac[k]:.0%} valid, need {self.min_valid:.0%})"
                )
                continue
            found, count, ratio, err = self._match_one(
                _to_uint8(ref[k], ref_valid[k]), ref_valid[k],
                _to_uint8(tgt[k], tgt_valid[k]), tgt_valid[k], r,
            )
            errors.append(err)
            score[k] = count
            if not err:
                shift[k] = found
                # Inlier share, discounted when only a handful of matches agree.
                reliability[k] = ratio * min(1.0, count / (2.0 * self.min_matches + 2.0))
                reliability[k] *= min(ref_frac[k], tgt_frac[k])
        ref_xy = np.asarray(chips.ref_xy, dtype=np.float64)
        valid = np.array([not e for e in errors], dtype=bool)
        return MatchResult(
            ref_xy=ref_xy,
            target_xy=ref_xy + shift,
            score=score,
            reliability=reliability,
            valid=valid,
            matcher=self.name,
            errors=errors,
        )

    def _match_one(
        self, ref: np.ndarray, ref_valid: np.ndarray, tgt: np.ndarray, tgt_valid: np.ndarray,
        radius: int,
    ) -> tuple[np.ndarray, int, float, str]:
        """Displacement ``(dx, dy)``, consistent-match count, inlier share, error ("" if ok)."""
        kp_r, des_r = self._sift.detectAndCompute(ref, ref_valid.astype(np.uint8))
        kp_t, des_t = self._sift.detectAndCompute(tgt, tgt_valid.astype(np.uint8))
        nothing = np.full(2, np.nan)
        if des_r is None or des_t is None or len(kp_r) < 1 or len(kp_t) < 2:
            return nothing, 0, 0.0, "too few SIFT keypoints"
        pairs = self._matcher.knnMatch(des_r, des_t, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) < self.min_matches:
            return nothing, len(good), 0.0, f"only {len(good)} SIFT matches pass the ratio test"
        src = np.array([kp_r[g.queryIdx].pt for g in good])
        dst = np.array([kp_t[g.trainIdx].pt for g in good])
        # A template point p sits at p + (u, v) in the window: displacement = dst - src - R.
        disp = dst - src - radius
        inside = np.all(np.abs(disp) <= radius + self.tolerance, axis=1)
        disp = disp[inside]
        if disp.shape[0] < self.min_matches:
            return nothing, int(disp.shape[0]), 0.0, "SIFT matches fall outside the search radius"
        agree = np.linalg.norm(disp[:, None, :] - disp[None, :, :], axis=2) <= self.tolerance
        best = int(agree.sum(axis=1).argmax())
        inliers = disp[agree[best]]
        count = int(inliers.shape[0])
        if count < self.min_matches:
            return (nothing, count, 0.0,
                    f"only {count} consistent SIFT matches (need {self.min_matches})")
        return np.median(inliers, axis=0), count, count / float(len(good)), ""
