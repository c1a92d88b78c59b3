"""One pass over a large raster into a decimated base, and overviews of any window taken from it.

A decimated read through GDAL (``RasterIO`` with a smaller buffer) of a raster without internal
overviews decompresses every block of it, so each overview the engine asks for (the footprint
and overlap, the radiometric statistics, the coarse offset) would be one more pass over a
10980 x 10980 scene. :func:`build_base` reads the raster once, in full-width strips, and keeps per
``k x k`` cell of full-resolution pixels

* the mean of the valid pixels and how many there are (for averaged overviews), and
* the pixel at the cell's centre (for picked overviews, which keep speckle statistics);

:meth:`OverviewBase.overview` then makes any overview coarser than the cells from these in
memory: area-weighted means of the cells for averaged overviews (exact footprints, so a window's
overview scales by its size over the overview's size per axis, as a GDAL read does), and the
picked pixel of the cell under each overview pixel's centre for picked ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse

__all__ = ["BASE_SIDE", "OverviewBase", "base_factor", "build_base"]

#: Longer side of the base, in cells; overviews of up to about this size come from it.
BASE_SIDE = 2048
#: Full-resolution rows read at a time (rounded to whole cells).
_STRIP_ROWS = 256


def base_factor(width: int, height: int, base_side: int = BASE_SIDE) -> int:
    """Cell size ``k`` (full-resolution pixels per base cell, per axis) for a raster.

    Returns:
        ``ceil(max(width, height) / base_side)``; 1 means the raster is no larger than the base
        and a base would not save anything.
    """
    return max(1, math.ceil(max(width, height) / float(base_side)))


@dataclass
class OverviewBase:
    """Per-cell statistics of a whole raster (see the module docstring).

    Attributes:
        k: Cell size in full-resolution pixels (both axes).
        width: Raster width in pixels.
        height: Raster height in pixels.
        mean: ``(B, ny, nx)`` float32 mean of the valid pixels of each cell, NaN where none.
        count: ``(B, ny, nx)`` float32 number of valid pixels of each cell.
        picked: ``(B, ny, nx)`` float32 value of each cell's centre pixel (NaN = invalid).
    """

    k: int
    width: int
    height: int
    mean: np.ndarray
    count: np.ndarray
    picked: np.ndarray

    def overview(self, window: tuple[int, int, int, int], shape: tuple[int, int], average: bool) -> np.ndarray:
        """The overview of ``window`` ``(x0, y0, w, h)`` (may reach outside the raster) at ``shape``.

        Args:
            window: Full-resolution window; overview pixel ``(c, r)`` covers columns
                ``x0 + c * w / cols`` to ``x0 + (c + 1) * w / cols`` (rows alike).
            shape: ``(rows, cols)`` of the overview.
            average: Mean of the valid pixels under each overview pixel (else the picked pixel
                of the cell under its centre). Either way an overview pixel whose picked pixel
                is invalid is NaN, as in a GDAL read, whose mask is decimated by picking.

        Returns:
            ``(B, rows, cols)`` float32, NaN where there is no valid pixel (or outside the raster).
        """
        x0, y0, w, h = window
        rows, cols = shape
        picked = self._picked(x0, y0, w, h, rows, cols)
        if not average:
            return picked
        wy = _area_weights(y0, h, rows, self.k, self.height)
        wx = _area_weights(x0, w, cols, self.k, self.width)
        out = np.full((self.mean.shape[0], rows, cols), np.nan, np.float32)
        for b in range(self.mean.shape[0]):
            cnt = self.count[b].astype(np.float64)
            total = np.where(cnt > 0, self.mean[b].astype(np.float64), 0.0) * cnt
            num = wy @ (wx @ total.T).T
            den = wy @ (wx @ cnt.T).T
            with np.errstate(invalid="ignore", divide="ignore"):
                out[b] = np.where((den > 0) & np.isfinite(picked[b]), num / np.where(den > 0, den, 1.0), np.nan)
        return out

    def _picked(self, x0: int, y0: int, w: int, h: int, rows: int, cols: int) -> np.ndarray:
        ys = y0 + (np.arange(rows) + 0.5) * (h / rows)
        xs = x0 + (np.arange(cols) + 0.5) * (w / cols)
        iy, ix = np.floor(ys / self.k).astype(np.int64), np.floor(xs / self.k).astype(np.int64)
        ok_y = (ys >= 0) & (ys < self.height)
        ok_x = (xs >= 0) & (xs < self.width)
        ny, nx = self.picked.shape[1:]
        sub = self.picked[:, np.clip(iy, 0, ny - 1)][:, :, np.clip(ix, 0, nx - 1)]
        sub[:, ~ok_y] = np.nan
        sub[:, :, ~ok_x] = np.nan
        return sub.astype(np.float32, copy=False)


def _area_weights(start: float, length: float, n_out: int, k: int, size: int) -> sparse.csr_matrix:
    """``(n_out, n_cells)`` share of each cell's pixels under each overview pixel's footprint.

    Output pixel ``i`` covers ``[start + i * s, start + (i + 1) * s)`` with ``s = length / n_out``;
    cell ``j`` covers ``[j * k, min((j + 1) * k, size))``. The entry is the length of their
    intersection over the cell's length (a cell's pixels are taken as evenly spread in it).
    """
    n_cells = -(-size // k)
    step = length / float(n_out)
    lo = start + np.arange(n_out) * step
    hi = lo + step
    first = np.clip(np.floor(lo / k).astype(np.int64), 0, n_cells)
    last = np.clip(np.ceil(hi / k).astype(np.int64), 0, n_cells)
    span = int(max(1, (last - first).max(initial=1)))
    rows_i, cols_j, vals = [], [], []
    for d in range(span):
        j = first + d
        ok = j < last
        c0 = j * k
        c1 = np.minimum((j + 1) * k, size)
        inter = np.minimum(hi, c1) - np.maximum(lo, c0)
        ok &= inter > 0
        rows_i.append(np.nonzero(ok)[0])
        cols_j.append(j[ok])
        vals.append(inter[ok] / (c1 - c0)[ok])
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows_i), np.concatenate(cols_j))),
                             shape=(n_out, n_cells))


def build_base(read_rows: Callable[[int, int], np.ndarray], width: int, height: int, n_bands: int,
               k: int) -> OverviewBase:
    """Read a raster once, strip by strip, into an :class:`OverviewBase` of ``k x k`` cells.

    Args:
        read_rows: ``(y0, rows)`` -> ``(B, rows, width)`` float32 full-resolution pixels, NaN where
            invalid (nodata, masked).
        width: Raster width.
        height: Raster height.
        n_bands: ``B``.
        k: Cell size (>= 1).

    Returns:
        The base; memory is ``3 * B * ceil(height / k) * ceil(width / k) * 4`` bytes plus one strip.
    """
    ny, nx = -(-height // k), -(-width // k)
    mean = np.full((n_bands, ny, nx), np.nan, np.float32)
    count = np.zeros((n_bands, ny, nx), np.float32)
    picked = np.full((n_bands, ny, nx), np.nan, np.float32)
    strip = k * max(1, _STRIP_ROWS // k)
    pad_x = nx * k - width
    centre = k // 2
    for y in range(0, height, strip):
        rows = min(strip, height - y)
        data = read_rows(y, rows)
        cy0, cy1 = y // k, -(-(y + rows) // k)
        pad_y = (cy1 - cy0) * k - rows
        if pad_x or pad_y:
            data = np.pad(data, ((0, 0), (0, pad_y), (0, pad_x)), constant_values=np.nan)
        for b in range(n_bands):
            # Block means of the values (NaN as 0) and of the validity, by OpenCV's area resampling
            # (an exact k x k box mean at an integer factor): their ratio is the mean of the valid pixels.
            valid = np.isfinite(data[b])
            vals = np.where(valid, data[b], np.float32(0.0)).astype(np.float32, copy=False)
            size = (nx, cy1 - cy0)
            frac = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA)
            avg = cv2.resize(vals, size, interpolation=cv2.INTER_AREA)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean[b, cy0:cy1] = np.where(frac > 0, avg / np.where(frac > 0, frac, 1.0), np.nan)
            count[b, cy0:cy1] = np.rint(frac * (k * k))
        # The centre pixel, clipped into the raster for the partial last row / column of cells.
        py = np.minimum(np.arange(cy1 - cy0) * k + centre, rows - 1)
        px = np.minimum(np.arange(nx) * k + centre, width - 1)
        picked[:, cy0:cy1] = data[:, py][:, :, px]
    return OverviewBase(k, width, height, mean, count, picked)
