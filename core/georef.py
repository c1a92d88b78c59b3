"""Georeferencing of a raster: geotransform, CRS and the pixel <-> map conversions.

Pure numpy; the GDAL reading lives in :mod:`sarcoreg.core.raster_io`.
Pixel coordinates follow GDAL: ``(col, row)``, ``(0, 0)`` is the top-left corner of the
top-left pixel. A raster without georeferencing gets the QGIS convention for plain images:
map ``x = col``, map ``y = -row`` (so it shows upright in QGIS), and an empty CRS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Georef"]

_PLAIN_IMAGE_GT = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class Georef:
    """Affine georeferencing of a raster grid.

    Attributes:
        geotransform: GDAL geotransform ``(x0, dx, rx, y0, ry, dy)``.
        crs_wkt: CRS as WKT; "" for rasters without a CRS (plain images, local grids).
        width: Raster width in pixels.
        height: Raster height in pixels.
        georeferenced: False for plain images (PNG/JPG without world file).
    """

    geotransform: tuple[float, float, float, float, float, float]
    crs_wkt: str
    width: int
    height: int
    georeferenced: bool = True

    @classmethod
    def plain(cls, width: int, height: int) -> Georef:
        """Georef of an image without georeferencing (map x = col, map y = -row)."""
        return cls(_PLAIN_IMAGE_GT, "", width, height, georeferenced=False)

    @property
    def matrix(self) -> np.ndarray:
        """3 x 3 matrix mapping pixel ``(col, row, 1)`` to map ``(x, y, 1)``."""
        x0, dx, rx, y0, ry, dy = self.geotransform
        return np.array([[dx, rx, x0], [ry, dy, y0], [0.0, 0.0, 1.0]])

    @property
    def pixel_size(self) -> float:
        """Mean absolute pixel size in map units (for converting pixel errors to map units)."""
        m = self.matrix
        return float((np.hypot(m[0, 0], m[1, 0]) + np.hypot(m[0, 1], m[1, 1])) / 2.0)

    def pixel_to_map(self, xy: np.ndarray) -> np.ndarray:
        """Pixel ``(N, 2)`` -> map ``(N, 2)``."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return xy @ m[:2, :2].T + m[:2, 2]

    def map_to_pixel(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` -> pixel ``(N, 2)``."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        inv = np.linalg.inv(self.matrix)
        return xy @ inv[:2, :2].T + inv[:2, 2]

    def with_matrix(self, matrix: np.ndarray) -> Georef:
        """A copy whose pixel -> map matrix is ``matrix`` (3 x 3 affine)."""
        m = np.asarray(matrix, dtype=np.float64)
        gt = (m[0, 2], m[0, 0], m[0, 1], m[1, 2], m[1, 0], m[1, 1])
        return Georef(tuple(float(v) for v in gt), self.crs_wkt, self.width, self.height,  # type: ignore[arg-type]
                      self.georeferenced)
