"""The keypoint-matcher contract: two whole images in, corresponding points out.

Coordinates are pixel ``(x, y)`` = ``(column, row)`` as float in the OpenCV / kornia convention:
the *centre* of pixel ``[i, j]`` is ``(j, i)``. (The engine's GDAL convention puts that centre at
``(j + 0.5, i + 0.5)``: add 0.5 to both coordinates to convert.)

Images are float32 ``(H, W)`` or ``(H, W, 3)`` in [0, 1]; a gray image is repeated to three
channels for the matchers that want RGB, and an RGB image is converted to gray (ITU-R 601 weights)
for SIFT. NaN pixels are set to 0.

Large images: every matcher downsamples an image whose longer side exceeds ``max_size`` (default
:data:`DEFAULT_MAX_SIZE` = 1024 px) with area averaging before it detects anything, and maps the
points back to the full-resolution pixel grid. ``max_size=None`` disables the cap. There is no
tiling on purpose: a keypoint matcher needs the whole overlap of both images to find the
transform; scenes larger than the cap are for the engine, which cuts them into windows first.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MAX_SIZE",
    "KeypointMatcher",
    "KeypointMatches",
    "as_gray_uint8",
    "as_rgb",
    "resolve_device",
]

log = logging.getLogger(__name__)

#: Longest image side (pixels) a matcher works on; larger images are downsampled, see the module doc.
DEFAULT_MAX_SIZE = 1024


@dataclass
class KeypointMatches:
    """Corresponding points between image A and image B.

    Attributes:
        pts_a: ``(N, 2)`` float64 pixel ``(x, y)`` in image A (module convention).
        pts_b: ``(N, 2)`` float64 pixel ``(x, y)`` in image B; row ``k`` corresponds to ``pts_a[k]``.
        scores: ``(N,)`` float64 match confidence, higher is better (its scale depends on the matcher:
            LightGlue match probability, cosine similarity, ``1 - ratio`` for SIFT ...).
        n_keypoints_a: Keypoints detected in A (before matching).
        n_keypoints_b: Keypoints detected in B.
        matcher: Name of the matcher.
        device: Device it ran on (``"cpu"``, ``"cuda:0"``).
        seconds: Wall time of the call.
        scale_a: Downsampling factor applied to A (1.0 = full resolution).
        scale_b: Downsampling factor applied to B.
    """

    pts_a: np.ndarray
    pts_b: np.ndarray
    scores: np.ndarray
    n_keypoints_a: int
    n_keypoints_b: int
    matcher: str = ""
    device: str = "cpu"
    seconds: float = 0.0
    scale_a: float = 1.0
    scale_b: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pts_a = np.asarray(self.pts_a, np.float64).reshape(-1, 2)
        self.pts_b = np.asarray(self.pts_b, np.float64).reshape(-1, 2)
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        n = len(self.pts_a)
        if self.pts_b.shape != (n, 2) or self.scores.shape != (n,):
            raise ValueError(
                f"KeypointMatches: pts_a {self.pts_a.shape}, pts_b {self.pts_b.shape} and scores "
                f"{self.scores.shape} must have the same length"
            )

    def __len__(self) -> int:
        return int(len(self.pts_a))


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda:0"`` when torch sees a CUDA device, else ``"cpu"``; CUDA checked.

    The mapping is :func:`sarcoreg.models.runtime.resolve_device` (one place for every model).

    Raises:
        ValueError: Unknown device, or CUDA asked for but not available.
    """
    from ...models.runtime import resolve_device as resolve

    return resolve(device)


def _check_image(img: np.ndarray, which: str) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"image {which} must be (H, W) or (H, W, 3) float32 in [0, 1], got shape {a.shape}")
    if min(a.shape[:2]) < 16:
        raise ValueError(f"image {which} is too small for keypoint matching: {a.shape[:2]}")
    return np.clip(np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def as_rgb(img: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` -> C-contiguous ``(H, W, 3)`` float32."""
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    return np.ascontiguousarray(img, dtype=np.float32)


def as_gray_uint8(img: np.ndarray) -> np.ndarray:
    """``(H, W)`` or RGB ``(H, W, 3)`` in [0, 1] -> ``(H, W)`` uint8 (ITU-R 601 luma for RGB)."""
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    if u8.ndim == 3:
        return np.asarray(cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY))
    return u8


def _downsample(img: np.ndarray, max_size: int | None) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    if max_size is None or max(h, w) <= max_size:
        return img, 1.0
    s = max_size / max(h, w)
    size = (max(16, round(w * s)), max(16, round(h * s)))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    # the actual factor per axis differs by rounding; use the mean of both
    return out, 0.5 * (size[0] / w + size[1] / h)


def _upscale(pts: np.ndarray, s: float) -> np.ndarray:
    """Points on a grid downsampled by ``s`` back to full resolution (pixel centres at integers)."""
    if s == 1.0:
        return pts
    return (pts + 0.5) / s - 0.5


class KeypointMatcher(ABC):
    """Base class of the whole-image keypoint matchers.

    Subclasses set :attr:`name` and implement :meth:`_match` on prepared images.

    Args:
        max_keypoints: Keypoints detected per image at most (the paper uses 4096).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        max_size: Longest side in pixels the matcher works on (see the module doc); ``None`` = no cap.
    """

    name: str = ""
    #: The matcher runs in torch (False for OpenCV SIFT).
    uses_torch: bool = True

    def __init__(self, max_keypoints: int = 4096, device: str = "auto", max_size: int | None = DEFAULT_MAX_SIZE):
        if max_keypoints < 8:
            raise ValueError(f"max_keypoints must be at least 8, got {max_keypoints}")
        if max_size is not None and max_size < 32:
            raise ValueError(f"max_size must be at least 32 pixels (or None), got {max_size}")
        self.max_keypoints = int(max_keypoints)
        self.max_size = max_size
        self.device = resolve_device(device) if self.uses_torch else "cpu"
        log.info("keypoint matcher %s on %s", self.name, self.device)

    def match(self, img_a: np.ndarray, img_b: np.ndarray) -> KeypointMatches:
        """Find corresponding points between two images.

        Args:
            img_a: float32 ``(H, W)`` or ``(H, W, 3)`` in [0, 1].
            img_b: The other image, same conventions (its size may differ).

        Returns:
            The matches, points in full-resolution pixel ``(x, y)`` of each image.
        """
        t0 = time.perf_counter()
        a, sa = _downsample(_check_image(img_a, "a"), self.max_size)
        b, sb = _downsample(_check_image(img_b, "b"), self.max_size)
        res = self._match(a, b)
        res.pts_a = _upscale(res.pts_a, sa)
        res.pts_b = _upscale(res.pts_b, sb)
        res.scale_a, res.scale_b = sa, sb
        res.matcher, res.device = self.name, self.device
        res.seconds = time.perf_counter() - t0
        return res

    @abstractmethod
    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        """Match two checked images (float32 ``(H, W)`` or ``(H, W, 3)`` in [0, 1])."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r}, max_keypoints={self.max_keypoints})"
