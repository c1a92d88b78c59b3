"""Where to look for tie points: grid and keypoint candidates, and a texture filter.

A candidate is the centre of a ``window`` x ``window`` template in reference pixel coordinates
(GDAL convention: a template whose top-left corner is the integer ``(x0, y0)`` has its centre at
``(x0 + window / 2, y0 + window / 2)``). Every candidate leaves room for the template plus the
search radius on all sides: ``radius <= x0`` and ``x0 + window + radius <= width`` (same for rows),
so template and search window can be cut without padding.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_EXPECTED_ERROR_M",
    "DEFAULT_MIN_TEXTURE",
    "PIXEL_MODE_RADIUS",
    "TARGET_CANDIDATES",
    "auto_matching_sizes",
    "grid_candidates",
    "keypoint_candidates",
    "select_textured",
    "texture_score",
]

#: Default :func:`select_textured` threshold on :func:`texture_score`. Measured on 64 x 64
#: templates of the 54 real BigEarthNet Sentinel-2 patches (RGB mean, all patches stretched by one
#: common 0.5/99.5 percentile range, as a scene-wide preparation would): open sea 0.01-0.06,
#: flat arable land and forest 0.1-0.4, structured land (relief, field boundaries, roads) up to
#: 4; constant nodata fill gives 0. Stretched scene by scene, land scores 0.5-3.
DEFAULT_MIN_TEXTURE = 0.08

#: Default expected georeferencing error between a Sentinel-1 GRD product and the reference, in
#: metres. Sentinel-1 IW GRD geolocation is good to about 10 m and Sentinel-2 to about 11 m
#: (2 sigma); terrain correction with a 30 m DEM and orbit / timing residuals add a few tens of
#: metres in relief, so 50 m covers the usual case with a margin.
DEFAULT_EXPECTED_ERROR_M = 50.0
#: Automatic search radius of pairs matched in pixels (no georeferencing to size it from); the
#: coarse stage has already removed the large offset, rotation and scale.
PIXEL_MODE_RADIUS = 16
#: Number of grid candidates the automatic spacing aims at on large overlaps.
TARGET_CANDIDATES = 1000
_MAX_WINDOW, _MIN_WINDOW = 64, 16
_MIN_RADIUS, _MAX_RADIUS = 8, 64
_RADIUS_MARGIN = 1.5  # slack for the coarse stage's residual on top of the georeferencing error


def _check_sizes(window: int, radius: int) -> None:
    if window < 1:
        raise ValueError(f"window must be a positive number of pixels, got {window}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0 pixels, got {radius}")


def _corner_range(size: int, window: int, radius: int, axis: str) -> tuple[int, int]:
    """First and last allowed template corner along one axis; ValueError if none fits."""
    lo, hi = radius, size - radius - window
    if hi < lo:
        raise ValueError(
            f"the image is too small for one template plus search window: {axis} is {size} px, "
            f"but window {window} + 2 x radius {radius} = {window + 2 * radius} px are needed; "
            "use a smaller window or search radius"
        )
    return lo, hi


def grid_candidates(width: int, height: int, spacing: int, window: int, radius: int) -> np.ndarray:
    """Template centres on a regular grid, centred in the usable part of the image.

    Args:
        width: Reference image width in pixels.
        height: Reference image height in pixels.
        spacing: Grid spacing in pixels (>= 1). A spacing larger than the image gives the single
            central point.
        window: Template size ``T`` in pixels.
        radius: Search radius ``R`` in pixels.

    Returns:
        ``(N, 2)`` float64 centres ``(col, row)``, row by row; corners are integers, so centres
        are integers for even ``window`` and end in .5 for odd.

    Raises:
        ValueError: ``spacing``/``window``/``radius`` out of range, or not even one template
            plus search window fits into the image.
    """
    _check_sizes(window, radius)
    if spacing < 1:
        raise ValueError(f"grid spacing must be at least 1 pixel, got {spacing}")
    axes = []
    for size, axis in ((width, "width"), (height, "height")):
        lo, hi = _corner_range(size, window, radius, axis)
        count = (hi - lo) // spacing + 1
        start = lo + ((hi - lo) - (count - 1) * spacing) // 2
        axes.append(start + spacing * np.arange(count) + window / 2.0)
    rows, cols = np.meshgrid(axes[1], axes[0], indexing="ij")
    return np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.float64)


def auto_matching_sizes(
    width: int,
    height: int,
    pixel_size_m: float | None = None,
    expected_error_m: float = DEFAULT_EXPECTED_ERROR_M,
    spacing: int | None = None,
    window: int | None = None,
    radius: int | None = None,
) -> tuple[int, int, int]:
    """Grid spacing, template window and search radius that fit an overlap (None = choose).

    The rules (explicit values are kept as given):

    * ``window = clamp(even(min(width, height) / 4), 16, 64)``: 64 px templates, smaller only on
      small overlaps so that several fit across.
    * ``radius = clamp(ceil(1.5 x expected_error_m / pixel_size_m), 8, 64)`` for georeferenced
      pairs, :data:`PIXEL_MODE_RADIUS` (16) without georeferencing; then shrunk (if automatic)
      until one template plus its search window fits: ``window + 2 x radius <= min side``.
    * ``spacing = max(window / 4, round(sqrt(width x height / 1000)))``: about
      :data:`TARGET_CANDIDATES` (1000) candidates on large overlaps, and on small ones a grid
      dense enough for a robust fit and a cross-validated check (a 500 x 500 px overlap gets
      about 680-730 candidates, a 10980 x 10980 px tile about 1000).

    Args:
        width: Overlap width in pixels.
        height: Overlap height in pixels.
        pixel_size_m: Reference pixel size in metres; None for pairs matched in pixels.
        expected_error_m: Expected georeferencing error, metres.
        spacing: Explicit spacing, or None.
        window: Explicit window, or None.
        radius: Explicit search radius, or None.

    Returns:
        ``(spacing, window, radius)`` in pixels.
    """
    side = max(1, min(int(width), int(height)))
    if window is None:
        window = int(np.clip((side // 4) // 2 * 2, _MIN_WINDOW, _MAX_WINDOW))
    if radius is None:
        if pixel_size_m is not None and pixel_size_m > 0:
            radius = int(np.clip(math.ceil(_RADIUS_MARGIN * expected_error_m / pixel_size_m), _MIN_RADIUS,
                                 _MAX_RADIUS))
        else:
            radius = PIXEL_MODE_RADIUS
        radius = max(1, min(radius, (side - window) // 2))
    if spacing is None:
        spacing = max(window // 4, int(round(math.sqrt(float(width) * float(height) / TARGET_CANDIDATES))))
    return int(spacing), int(window), int(radius)


def keypoint_candidates(
    image: np.ndarray,
    max_points: int,
    window: int,
    radius: int,
    min_distance: int,
    valid: np.ndarray | None = None,
    quality: float = 0.01,
) -> np.ndarray:
    """Strong, well-spread corners (Shi-Tomasi) of the prepared reference as template centres.

    Args:
        image: Prepared reference ``(H, W)`` float in [0, 1] (NaN counts as invalid).
        max_points: Most candidates to return (strongest first).
        window: Template size ``T`` in pixels.
        radius: Search radius ``R`` in pixels.
        min_distance: Smallest distance in pixels between two candidates.
        valid: Optional ``(H, W)`` bool mask; corners on or next to invalid pixels are dropped.
        quality: Corners weaker than ``quality`` x the strongest corner are dropped.

    Returns:
        ``(N, 2)`` float64 centres ``(col, row)`` (``N <= max_points``, possibly 0), the
        template corner of each being the integer nearest to ``centre - window / 2``.

    Raises:
        ValueError: Bad arguments, or the image cannot hold one template plus search window.
    """
    _check_sizes(window, radius)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"keypoint_candidates wants one (H, W) band, got shape {img.shape}")
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    h, w = img.shape
    x_lo, x_hi = _corner_range(w, window, radius, "width")
    y_lo, y_hi = _corner_range(h, window, radius, "height")
    ok = np.isfinite(img)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    img = np.where(ok, img, 0.0).astype(np.float32)
    # A pixel index j (centre j + 0.5) gets the template corner round(j + 0.5 - T / 2).
    half = window / 2.0
    cols = np.floor(np.arange(w) + 1.0 - half).astype(int)
    rows = np.floor(np.arange(h) + 1.0 - half).astype(int)
    allowed = ((rows >= y_lo) & (rows <= y_hi))[:, None] & ((cols >= x_lo) & (cols <= x_hi))[None]
    allowed &= ndimage.binary_erosion(ok, iterations=2, border_value=1)
    if not allowed.any():
        return np.zeros((0, 2))
    corners = cv2.goodFeaturesToTrack(
        img, maxCorners=int(max_points), qualityLevel=float(quality),
        minDistance=float(max(min_distance, 1)), mask=allowed.astype(np.uint8), blockSize=5,
    )
    if corners is None:
        return np.zeros((0, 2))
    j = np.rint(corners.reshape(-1, 2)).astype(int)
    x0 = np.floor(j + 1.0 - half)
    return (x0 + half).astype(np.float64)


def texture_score(chips: np.ndarray) -> np.ndarray:
    """How much structure each template holds: the mean gradient magnitude after smoothing.

    The chip is smoothed by a Gaussian (sigma 1 px) to suppress pixel noise, and the gradient
    magnitude is expressed per template width (``|grad| x T``), i.e. roughly "how many full
    dynamic ranges of change does the template see across its width"; a flat or constant chip
    scores ~0. NaN pixels are treated as constant.

    Args:
        chips: ``(N, T, T)`` templates, float in [0, 1].

    Returns:
        ``(N,)`` float64 scores (>= 0), comparable across template sizes.
    """
    c = np.asarray(chips, dtype=np.float32)
    if c.ndim != 3:
        raise ValueError(f"texture_score wants (N, T, T) templates, got shape {c.shape}")
    n = c.shape[0]
    if n == 0:
        return np.zeros(0)
    finite = np.isfinite(c)
    means = np.where(finite, c, 0).reshape(n, -1).sum(axis=1) / np.maximum(
        finite.reshape(n, -1).sum(axis=1), 1
    )
    c = np.where(finite, c, means[:, None, None].astype(np.float32))
    smooth = ndimage.gaussian_filter(c, sigma=(0.0, 1.0, 1.0))
    gy, gx = np.gradient(smooth, axis=(1, 2))
    mag = np.hypot(gx, gy).reshape(n, -1).mean(axis=1, dtype=np.float64)
    return np.asarray(mag * c.shape[2])


def select_textured(
    chips: np.ndarray,
    min_texture: float = DEFAULT_MIN_TEXTURE,
    valid: np.ndarray | None = None,
    min_valid: float = 0.7,
) -> np.ndarray:
    """Which templates are worth matching: enough texture and enough valid pixels.

    Args:
        chips: ``(N, T, T)`` templates, float in [0, 1].
        min_texture: Threshold on :func:`texture_score` (default :data:`DEFAULT_MIN_TEXTURE`).
        valid: Optional ``(N, T, T)`` bool validity masks.
        min_valid: Smallest share of valid (and finite) pixels.

    Returns:
        ``(N,)`` bool, True for the templates to keep.
    """
    c = np.asarray(chips, dtype=np.float32)
    ok = np.isfinite(c)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    masked = np.where(ok, c, np.nan)
    share = ok.reshape(c.shape[0], -1).mean(axis=1) if c.shape[0] else np.zeros(0)
    return (texture_score(masked) >= min_texture) & (share >= min_valid)
