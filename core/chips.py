"""Cutting prepared template / search-window chips from the common grid, batch by batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .matchers.base import ChipBatch
from .prepare import PercentileStretch, prepare_optical, prepare_sar
from .raster_io import RasterSource

__all__ = ["Preparation", "cut_chips"]

_LEE_HALO = 2  # the 5 x 5 Lee filter needs 2 pixels around a window


@dataclass(frozen=True)
class Preparation:
    """How one raster's windows become matcher input (global statistics fixed once).

    Attributes:
        modality: "sar" or "optical".
        stretch: Global percentile stretch fitted on an overview.
        sar_scale: Scale of SAR values ("amplitude", "intensity", "db").
        speckle_filter: Lee-filter SAR windows.
        weights: Optical band weights (None: defaults of :func:`optical_to_gray`).
    """

    modality: str
    stretch: PercentileStretch
    sar_scale: str = "db"
    speckle_filter: bool = False
    weights: Sequence[float] | None = None

    @property
    def halo(self) -> int:
        """Extra pixels to read around a window for filtering."""
        return _LEE_HALO if (self.modality == "sar" and self.speckle_filter) else 0

    def apply(self, bands: np.ndarray) -> np.ndarray:
        """``(B, H, W)`` raw values -> ``(H, W)`` float32 in [0, 1], NaN = nodata."""
        if self.modality == "sar":
            return prepare_sar(bands, scale=self.sar_scale, stretch=self.stretch,  # type: ignore[arg-type]
                               speckle_filter=self.speckle_filter)
        return prepare_optical(bands, weights=self.weights, stretch=self.stretch)

    def read(self, source: RasterSource, x0: int, y0: int, size: int) -> np.ndarray:
        """Read and prepare a ``size`` x ``size`` window with top-left ``(x0, y0)``."""
        h = self.halo
        raw = source.read(x0 - h, y0 - h, size + 2 * h, size + 2 * h)
        out = self.apply(raw)
        return out[h:h + size, h:h + size] if h else out


def cut_chips(
    reference: RasterSource,
    target_on_grid: RasterSource,
    ref_prep: Preparation,
    tgt_prep: Preparation,
    centres: np.ndarray,
    window: int,
    radius: int,
    offset: tuple[int, int] = (0, 0),
) -> ChipBatch:
    """Templates around ``centres`` in the reference and search windows in the target.

    Args:
        reference: The reference raster.
        target_on_grid: The target on the reference grid.
        ref_prep: Preparation of reference windows.
        tgt_prep: Preparation of target windows.
        centres: Template centres, integer reference pixel coordinates ``(N, 2)``.
        window: Template size ``T`` (even).
        radius: Search radius ``R``.
        offset: Whole-pixel ``(dx, dy)`` prior shift: the search window is centred on
            ``centre + offset`` (the caller adds it back to the matched positions).

    Returns:
        A :class:`ChipBatch` with NaN replaced by the chip's mean and validity masks set.
    """
    n = len(centres)
    s = window + 2 * radius
    refs = np.empty((n, window, window), np.float32)
    tgts = np.empty((n, s, s), np.float32)
    for k, (cx, cy) in enumerate(np.asarray(centres, dtype=np.int64)):
        x0, y0 = int(cx) - window // 2, int(cy) - window // 2
        refs[k] = ref_prep.read(reference, x0, y0, window)
        tgts[k] = tgt_prep.read(target_on_grid, x0 - radius + offset[0], y0 - radius + offset[1], s)
    ref_valid = np.isfinite(refs)
    tgt_valid = np.isfinite(tgts)
    for arr, valid in ((refs, ref_valid), (tgts, tgt_valid)):
        counts = valid.sum(axis=(1, 2))
        means = np.where(counts > 0, np.nansum(np.where(valid, arr, 0.0), axis=(1, 2)) / np.maximum(counts, 1), 0.0)
        np.copyto(arr, np.broadcast_to(means[:, None, None], arr.shape).astype(np.float32), where=~valid)
    return ChipBatch(refs, tgts, np.asarray(centres, np.float64), ref_valid, tgt_valid)
