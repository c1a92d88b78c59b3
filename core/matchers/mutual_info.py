"""Mutual information of intensities over the search displacements.

Mutual information only assumes that the two intensities are statistically dependent, not
linearly related, so it copes with SAR/optical differences better than correlation; it is slow
(one joint histogram per displacement) and its surface is rough. The search is therefore coarse
to fine: a grid of displacements with spacing ``step`` on Gaussian-blurred chips (which widens the
peak so the grid cannot step over it), then every displacement within ``step // 2 + 1`` of the
best grid point on the original chips, then a hill climb over 3 x 3 neighbourhoods until the best
displacement is a local maximum. The returned maps hold the mutual information (nats) of the
original chips where evaluated and NaN elsewhere.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from ..methods import get_method
from .base import ChipBatch, Matcher, MatchResult
from .peaks import fill_invalid, nodata_errors, result_from_maps

__all__ = ["MutualInfoMatcher", "quantize"]

# Bound on the number of (chip, displacement) template-sized patches gathered at once.
_PATCH_PIXELS_PER_CHUNK = 8_000_000


def quantize(images: np.ndarray, valid: np.ndarray, bins: int) -> np.ndarray:
    """Bin indices of each image, stretched between its valid 1st and 99th percentiles.

    Args:
        images: ``(N, H, W)`` float images.
        valid: ``(N, H, W)`` bool masks.
        bins: Number of intensity bins.

    Returns:
        ``(N, H, W)`` int32 indices in ``[0, bins)``.
    """
    n = images.shape[0]
    flat = np.where(valid, images, np.nan).reshape(n, -1).astype(np.float64)
    empty = ~valid.reshape(n, -1).any(axis=1)
    flat[empty] = 0.0
    lo, hi = np.nanpercentile(flat, [1.0, 99.0], axis=1)
    scale = bins / np.maximum(hi - lo, 1e-6)
    q = np.floor((images - lo[:, None, None]) * scale[:, None, None])
    return np.clip(q, 0, bins - 1).astype(np.int32)


class _Evaluator:
    """Mutual information of every template at chosen displacements inside its window."""

    def __init__(
        self, ref_bins: np.ndarray, ref_valid: np.ndarray, tgt_bins: np.ndarray,
        tgt_valid: np.ndarray, bins: int,
    ) -> None:
        n, t, _ = ref_bins.shape
        self.n, self.t, self.bins = n, t, bins
        self.ref = ref_bins.reshape(n, 1, t * t).astype(np.int64) * bins
        self.ref_w = ref_valid.reshape(n, 1, t * t).astype(np.float64)
        # (N, M, M, T, T) views: every template-sized patch of every search window.
        self.tgt_view = sliding_window_view(tgt_bins, (1, t, t))[:, :, :, 0]
        self.tgt_valid_view = sliding_window_view(tgt_valid, (1, t, t))[:, :, :, 0]

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """MI for template corners ``(u, v)``, both ``(N, D)`` int; returns ``(N, D)``."""
        n, d = u.shape
        out = np.empty((n, d))
        b2 = self.bins * self.bins
        chunk = max(1, _PATCH_PIXELS_PER_CHUNK // max(1, n * self.t * self.t))
        rows = np.arange(n)[:, None]
        for s in range(0, d, chunk):
            uu, vv = u[:, s:s + chunk], v[:, s:s + chunk]
            k = uu.shape[1]
            patches = self.tgt_view[rows, vv, uu].reshape(n, k, -1)
            weights = self.ref_w * self.tgt_valid_view[rows, vv, uu].reshape(n, k, -1)
            offset = (np.arange(n * k, dtype=np.int64) * b2).reshape(n, k, 1)
            idx = self.ref + patches + offset
            hist = np.bincount(idx.ravel(), weights.ravel(), minlength=n * k * b2)
            out[:, s:s + k] = _mutual_information(hist.reshape(n, k, self.bins, self.bins))
        return out


def _mutual_information(hist: np.ndarray) -> np.ndarray:
    """MI in nats of joint histograms ``(..., B, B)``; NaN for empty histograms."""
    total = hist.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = hist / total
        pa = p.sum(axis=-1, keepdims=True)
        pb = p.sum(axis=-2, keepdims=True)
        terms = np.where(p > 0, p * np.log(p / (pa * pb)), 0.0)
    mi = terms.sum(axis=(-2, -1))
    return np.where(total[..., 0, 0] > 0, mi, np.nan)


class MutualInfoMatcher(Matcher):
    """Mutual-information matcher with a coarse-to-fine displacement search.

    Args:
        bins: Intensity bins per image of the joint histogram.
        step: Spacing of the coarse displacement grid (1 = exhaustive search).
        min_valid: Smallest share of valid pixels in template and search window.
    """

    name: ClassVar[str] = "mi"
    description: ClassVar[str] = get_method("mi").description

    def __init__(self, bins: int = 32, step: int = 4, min_valid: float = 0.7) -> None:
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        if not 0.0 <= min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
        self.bins = int(bins)
        self.step = int(step)
        self.min_valid = float(min_valid)

    def match(self, chips: ChipBatch) -> MatchResult:
        """Search every template's best mutual information inside its window.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)``.

        Returns:
            Rows with score = the peak MI (nats) and maps ``(N, 2R + 1, 2R + 1)``, NaN where a
            displacement was not evaluated.
        """
        n, r = len(chips), chips.radius
        m = 2 * r + 1
        ref_valid = _mask(chips.reference, chips.reference_valid)
        tgt_valid = _mask(chips.target, chips.target_valid)
        ref = fill_invalid(chips.reference, ref_valid)
        tgt = fill_invalid(chips.target, tgt_valid)
        fine = _Evaluator(
            quantize(ref, ref_valid, self.bins), ref_valid,
            quantize(tgt, tgt_valid, self.bins), tgt_valid, self.bins,
        )
        maps = np.full((n, m, m), np.nan)
        rows = np.arange(n)[:, None]

        def evaluate(u: np.ndarray, v: np.ndarray) -> None:
            todo = np.isnan(maps[rows, v, u])
            if todo.any():
                maps[rows, v, u] = np.where(todo, fine(u, v), maps[rows, v, u])

        def best() -> tuple[np.ndarray, np.ndarray]:
            filled = np.where(np.isfinite(maps), maps, -np.inf).reshape(n, -1)
            v, u = np.divmod(filled.argmax(axis=1), m)
            return u, v

        if self.step > 1 and m > self.step:
            grid = np.unique(np.concatenate([np.arange(0, m, self.step), [m - 1]]))
            gv, gu = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
            gu_n = np.broadcast_to(gu, (n, gu.size))
            gv_n = np.broadcast_to(gv, (n, gv.size))
            blur = self.step / 2.0
            coarse = _Evaluator(
                quantize(_blur(ref, blur), ref_valid, self.bins), ref_valid,
                quantize(_blur(tgt, blur), tgt_valid, self.bins), tgt_valid, self.bins,
            )(gu_n, gv_n)
            pick = np.nan_to_num(coarse, nan=-np.inf).argmax(axis=1)
            cu, cv = gu[pick], gv[pick]
            evaluate(np.ascontiguousarray(gu_n), np.ascontiguousarray(gv_n))
            half = self.step // 2 + 1
        else:
            cu = cv = np.full(n, r)
            half = r
        off = np.arange(-half, half + 1)
        du, dv = (a.ravel() for a in np.meshgrid(off, off, indexing="xy"))
        evaluate(np.clip(cu[:, None] + du, 0, m - 1), np.clip(cv[:, None] + dv, 0, m - 1))
        # Hill climb: make sure the best displacement is a local maximum of the fine MI.
        ring_u, ring_v = (a.ravel() for a in np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="xy"))
        for _ in range(m):
            u, v = best()
            nu = np.clip(u[:, None] + ring_u, 0, m - 1)
            nv = np.clip(v[:, None] + ring_v, 0, m - 1)
            if not np.isnan(maps[rows, nv, nu]).any():
                break
            evaluate(nu, nv)
        errors, weight = nodata_errors(chips, self.min_valid)
        return result_from_maps(chips, maps, self.name, weight=weight, errors=errors)


def _mask(images: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Validity mask: the given one (or all True) and finite pixels."""
    ok = np.isfinite(images)
    return ok & np.asarray(valid, bool) if valid is not None else ok


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of every ``(N, H, W)`` image (not across the batch)."""
    return np.asarray(ndimage.gaussian_filter(images, sigma=(0.0, sigma, sigma)), np.float32)
