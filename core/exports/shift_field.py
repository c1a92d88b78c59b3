"""The displacement field of the fitted model as a coarse 2-band GeoTIFF (dx, dy).

Each cell of the output covers ``step_px x step_px`` reference pixels; its geotransform is the
reference's with the pixel size multiplied by ``step_px``, in the reference CRS (for a plain
reference the plain-image convention map ``(col, -row)`` scaled the same way). The value of a
cell is the model evaluated at the cell centre ``p`` (reference pixel coordinates):
``inverse_model_fn(p) - p``, i.e. how far (in reference pixels) the target content that
belongs at ``p`` sits from ``p`` once the target is put on the reference grid. Band 1 is dx
(columns, positive = east/right), band 2 dy (rows, positive = down/south).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..georef import Georef
from .atomic import atomic_path

__all__ = ["SHIFT_FIELD_NODATA", "shift_field_grid", "write_shift_field"]

#: Nodata value of both bands (cells where the model gives no finite value).
SHIFT_FIELD_NODATA = -9999.0

_ROWS_PER_CHUNK_POINTS = 1_000_000


def shift_field_grid(reference_georef: Georef, step_px: int) -> tuple[int, int, np.ndarray]:
    """Size and cell centres of the coarse grid.

    Args:
        reference_georef: Georeferencing of the reference raster.
        step_px: Cell size in reference pixels (>= 1).

    Returns:
        ``(n_cols, n_rows, centres)`` with ``centres`` ``(n_rows, n_cols, 2)`` the cell
        centres in reference pixel coordinates ``(col, row)``. The last column/row may
        reach past the raster edge when the size is not a multiple of ``step_px``.

    Raises:
        ValueError: If ``step_px`` is not a positive integer.
    """
    if int(step_px) != step_px or step_px < 1:
        raise ValueError(f"step_px must be a positive whole number of pixels, got {step_px!r}")
    step = int(step_px)
    n_cols = max(1, math.ceil(reference_georef.width / step))
    n_rows = max(1, math.ceil(reference_georef.height / step))
    cols = (np.arange(n_cols, dtype=np.float64) + 0.5) * step
    rows = (np.arange(n_rows, dtype=np.float64) + 0.5) * step
    cc, rr = np.meshgrid(cols, rows)
    return n_cols, n_rows, np.stack([cc, rr], axis=-1)


def write_shift_field(
    path: Path | str,
    reference_georef: Georef,
    inverse_model_fn: Callable[[np.ndarray], np.ndarray],
    step_px: int,
) -> tuple[int, int]:
    """Write the model's displacement field as a tiled, deflate-compressed GeoTIFF (atomically).

    Args:
        path: Output ``.tif`` file.
        reference_georef: Georeferencing of the reference raster (grid, CRS).
        inverse_model_fn: Plain callable mapping reference pixel positions ``(N, 2)``
            ``(col, row)`` to the matching target positions **on the reference grid** (i.e.
            in reference pixel units after the target is resampled onto the reference grid,
            not in the original target raster's pixels), ``(N, 2)``. Non-finite outputs
            become nodata.
        step_px: Cell size of the output in reference pixels.

    Returns:
        ``(n_cols, n_rows)`` of the written raster.

    Raises:
        ValueError: If ``step_px`` is invalid or ``inverse_model_fn`` returns a wrong shape.
        RuntimeError: If GDAL cannot write the file.
    """
    n_cols, n_rows, centres = shift_field_grid(reference_georef, step_px)
    flat = centres.reshape(-1, 2)
    shift = np.empty_like(flat)
    chunk = max(n_cols, _ROWS_PER_CHUNK_POINTS // n_cols * n_cols)
    for start in range(0, flat.shape[0], chunk):
        part = flat[start:start + chunk]
        moved = np.asarray(inverse_model_fn(part.copy()), dtype=np.float64)
        if moved.shape != part.shape:
            raise ValueError(
                f"inverse_model_fn must map (N, 2) to (N, 2); got {moved.shape} for {part.shape}"
            )
        shift[start:start + chunk] = moved - part
    shift[~np.isfinite(shift).all(axis=1)] = SHIFT_FIELD_NODATA
    dx = shift[:, 0].reshape(n_rows, n_cols).astype(np.float32)
    dy = shift[:, 1].reshape(n_rows, n_cols).astype(np.float32)

    x0, px, rx, y0, ry, py = reference_georef.geotransform
    step = float(step_px)
    geotransform = (x0, px * step, rx * step, y0, ry * step, py * step)
    driver = gdal.GetDriverByName("GTiff")
    options = ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=3"]
    with atomic_path(path) as tmp:
        ds = driver.Create(str(tmp), n_cols, n_rows, 2, gdal.GDT_Float32, options)
        if ds is None:
            raise RuntimeError(f"GDAL cannot create the GeoTIFF {path}: {gdal.GetLastErrorMsg()}")
        ds.SetGeoTransform(geotransform)
        if reference_georef.crs_wkt:
            ds.SetProjection(reference_georef.crs_wkt)
        ds.SetMetadataItem("SHIFT_UNITS", "reference pixels")
        ds.SetMetadataItem("STEP_PX", str(int(step_px)))
        descriptions = (
            "dx: target shift along columns, reference pixels",
            "dy: target shift along rows (down), reference pixels",
        )
        for band_no, (data, text) in enumerate(zip((dx, dy), descriptions, strict=True), start=1):
            band = ds.GetRasterBand(band_no)
            band.SetDescription(text)
            band.SetNoDataValue(SHIFT_FIELD_NODATA)
            band.WriteArray(data)
            band = None
        ds.FlushCache()
        ds = None  # closing writes the file
    return n_cols, n_rows
