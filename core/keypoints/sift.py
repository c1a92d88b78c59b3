"""SIFT (OpenCV) with Lowe's ratio test, as the shared-modality reference code matches."""

from __future__ import annotations

import cv2
import numpy as np

from .base import DEFAULT_MAX_SIZE, KeypointMatcher, KeypointMatches, as_gray_uint8

__all__ = ["SiftKeypointMatcher"]


class SiftKeypointMatcher(KeypointMatcher):
    """``cv2.SIFT.create(nfeatures=max_keypoints)``, brute-force L2, k = 2, ratio test.

    The reference code converts ``img * 255`` to gray with ``COLOR_BGR2GRAY`` although its images
    are RGB; here RGB is converted with ``COLOR_RGB2GRAY`` (the channel weights are the only
    difference). Scores are ``1 - d1 / d2`` (distance ratio margin).

    Args:
        max_keypoints: SIFT features per image at most.
        device: Ignored (OpenCV runs on the CPU); ``device`` is always ``"cpu"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        ratio: Lowe's ratio (0.75 as the reference code).
    """

    name = "sift"
    uses_torch = False

    def __init__(
        self,
        max_keypoints: int = 4096,
        device: str = "auto",
        max_size: int | None = DEFAULT_MAX_SIZE,
        ratio: float = 0.75,
    ):
        super().__init__(max_keypoints, device, max_size)
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        self.ratio = float(ratio)
        self._sift = cv2.SIFT.create(nfeatures=self.max_keypoints)

    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        kp_a, d_a = self._sift.detectAndCompute(as_gray_uint8(a), None)  # type: ignore[call-overload]
        kp_b, d_b = self._sift.detectAndCompute(as_gray_uint8(b), None)  # type: ignore[call-overload]
        pa, pb, sc = [], [], []
        if d_a is not None and d_b is not None and len(kp_a) >= 2 and len(kp_b) >= 2:
            knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d_a, d_b, k=2)
            for pair in knn:
                if len(pair) < 2:
                    continue
                m, n = pair
                if m.distance < self.ratio * n.distance:
                    pa.append(kp_a[m.queryIdx].pt)
                    pb.append(kp_b[m.trainIdx].pt)
                    sc.append(1.0 - m.distance / max(n.distance, 1e-12))
        return KeypointMatches(
            pts_a=np.array(pa, np.float64).reshape(-1, 2),
            pts_b=np.array(pb, np.float64).reshape(-1, 2),
            scores=np.array(sc, np.float64),
            n_keypoints_a=len(kp_a),
            n_keypoints_b=len(kp_b),
        )
