"""Structural matching with CFOG descriptors (channel features of orientated gradients).

Ye, Bruzzone, Shan, Bovolo and Zhu (2019), "Fast and robust matching for multimodal remote
sensing image registration", IEEE TGRS 57(11). Per pixel, the gradient is projected on ``K``
orientations over 0..180 degrees and the *absolute* value kept, so a SAR/optical contrast
reversal leaves the descriptor unchanged; the channels are smoothed by a 3-D Gaussian (spatially
and across orientation, kernel [1, 2, 1]) and L2-normalised per pixel. The similarity of every
displacement is then a normalised cross-correlation of the feature cubes, summed over the
channels and computed for the whole batch at once with FFTs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.fft
from scipy import ndimage

from ..methods import get_method
from .base import ChipBatch, Matcher, MatchResult
from .peaks import fill_invalid, nodata_errors, result_from_maps

__all__ = ["StructuralMatcher", "cfog_features", "feature_ncc_maps"]


def cfog_features(
    images: np.ndarray,
    orientations: int = 9,
    sigma: float = 0.8,
    presmooth: float = 0.0,
    eps: float = 1.0,
) -> np.ndarray:
    """CFOG feature cubes of a batch of images.

    Args:
        images: ``(N, H, W)`` float images without NaN (intensities in [0, 1]).
        orientations: Number ``K`` of gradient orientations over 0..180 degrees.
        sigma: Spatial standard deviation (pixels) of the Gaussian smoothing of the channels.
        presmooth: Standard deviation of a Gaussian applied to the images before the gradient
            (0 = none); a value of 1-2 tames SAR speckle.
        eps: Regulariser of the per-pixel L2 normalisation, relative to each image's median
            gradient norm: flat pixels (norm << median) get small vectors instead of amplified
            noise.

    Returns:
        ``(N, K, H, W)`` float32 feature cubes.
    """
    img = np.asarray(images, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"cfog_features wants (N, H, W) images, got shape {img.shape}")
    if orientations < 2:
        raise ValueError(f"orientations must be at least 2, got {orientations}")
    if presmooth > 0:
        img = ndimage.gaussian_filter(img, sigma=(0.0, presmooth, presmooth))
    gy, gx = np.gradient(img, axis=(1, 2))
    theta = np.arange(orientations, dtype=np.float32) * np.float32(np.pi / orientations)
    cos = np.cos(theta)[None, :, None, None]
    sin = np.sin(theta)[None, :, None, None]
    feat = np.abs(cos * gx[:, None] + sin * gy[:, None]).astype(np.float32)
    if sigma > 0:
        feat = ndimage.gaussian_filter(feat, sigma=(0.0, 0.0, sigma, sigma))
    # Orientation is periodic over 180 degrees: smooth across channels with wrap-around.
    feat = 0.5 * feat + 0.25 * (np.roll(feat, 1, axis=1) + np.roll(feat, -1, axis=1))
    norm = np.sqrt((feat * feat).sum(axis=1, keepdims=True))
    scale = np.median(norm.reshape(norm.shape[0], -1), axis=1)[:, None, None, None]
    return (feat / (norm + eps * scale + 1e-12)).astype(np.float32)


def feature_ncc_maps(templates: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of feature cubes over all displacements, via FFT.

    Each channel is centred on its own mean (over the template, resp. over the window's
    template-sized part at that displacement); products are summed over channels and pixels.

    Args:
        templates: ``(N, K, T, T)`` template feature cubes.
        windows: ``(N, K, S, S)`` search-window feature cubes, ``S >= T``.

    Returns:
        ``(N, S - T + 1, S - T + 1)`` float32 correlations in [-1, 1]; entry ``[v, u]`` is the
        template with its top-left corner at ``(u, v)``.
    """
    n, k, t, _ = templates.shape
    s = windows.shape[-1]
    m = s - t + 1
    if templates.shape[:2] != windows.shape[:2] or s < t:
        raise ValueError(
            f"feature cubes disagree: templates {templates.shape}, windows {windows.shape}"
        )
    tz = templates.astype(np.float64) - templates.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
    fw = scipy.fft.rfft2(windows.astype(np.float64), s=(s, s), workers=-1)
    ft = scipy.fft.rfft2(tz, s=(s, s), workers=-1)
    cross = scipy.fft.irfft2((fw * np.conj(ft)).sum(axis=1), s=(s, s), workers=-1)[:, :m, :m]
    # Window sums over every template-sized box, also by FFT (a correlation with a box of ones).
    box = np.conj(scipy.fft.rfft2(np.ones((t, t)), s=(s, s)))
    s1 = scipy.fft.irfft2(fw * box, s=(s, s), workers=-1)[..., :m, :m]
    sq = (windows.astype(np.float64) ** 2).sum(axis=1)
    s2 = scipy.fft.irfft2(scipy.fft.rfft2(sq, s=(s, s), workers=-1) * box, s=(s, s),
                          workers=-1)[..., :m, :m]
    var_w = s2 - (s1 * s1).sum(axis=1) / float(t * t)
    var_t = (tz * tz).sum(axis=(1, 2, 3))[:, None, None]
    denom = np.sqrt(np.maximum(var_w, 0.0) * var_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 1e-12, cross / denom, 0.0)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


class StructuralMatcher(Matcher):
    """CFOG structural matcher: robust to SAR speckle and SAR/optical contrast reversal.

    Args:
        orientations: Number of gradient orientations over 0..180 degrees.
        sigma: Spatial smoothing of the orientation channels (pixels).
        presmooth: Gaussian smoothing of the images before the gradient (pixels); helps with
            speckle, blurs fine optical detail.
        min_valid: Smallest share of valid pixels in template and search window.
    """

    name: ClassVar[str] = "structural"
    description: ClassVar[str] = get_method("structural").description

    def __init__(
        self,
        orientations: int = 9,
        sigma: float = 0.8,
        presmooth: float = 1.0,
        min_valid: float = 0.7,
    ) -> None:
        if orientations < 2:
            raise ValueError(f"orientations must be at least 2, got {orientations}")
        if sigma < 0 or presmooth < 0:
            raise ValueError(f"sigma and presmooth must be >= 0, got {sigma}, {presmooth}")
        if not 0.0 <= min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
        self.orientations = int(orientations)
        self.sigma = float(sigma)
        self.presmooth = float(presmooth)
        self.min_valid = float(min_valid)

    def features(self, images: np.ndarray) -> np.ndarray:
        """CFOG cubes ``(N, K, H, W)`` of ``(N, H, W)`` images with this matcher's options."""
        return cfog_features(images, self.orientations, self.sigma, self.presmooth)

    def match(self, chips: ChipBatch) -> MatchResult:
        """Match the CFOG cubes of every template over its search window.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)``.

        Returns:
            Rows with score = the peak feature correlation and maps ``(N, 2R + 1, 2R + 1)``.
        """
        ref = fill_invalid(chips.reference, chips.reference_valid)
        tgt = fill_invalid(chips.target, chips.target_valid)
        # Features of the template are computed on the template alone (its own border),
        # those of the window on the whole window, as the engine will see them.
        f_ref = self.features(ref)
        f_tgt = self.features(tgt)
        maps = feature_ncc_maps(f_ref, f_tgt)
        errors, weight = nodata_errors(chips, self.min_valid)
        return result_from_maps(chips, maps, self.name, weight=weight, errors=errors)
