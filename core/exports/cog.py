"""``coregistered.tif``: the target corrected onto the reference, as a Cloud-Optimised GeoTIFF.

:func:`coregistered_recipe` says how (a new geotransform over the target's own pixels, or a warp
through GCPs sampled from the fitted chain); :func:`write_cog` writes a recipe applied to a target
(atomically); :func:`write_coregistered` does both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from osgeo import gdal

from .atomic import atomic_path

if TYPE_CHECKING:
    from ..estimation import FitResult
    from ..raster_io import CommonGrid

__all__ = ["COG_OPTIONS", "CoregisteredRecipe", "coregistered_recipe", "write_cog", "write_coregistered"]

#: Creation options of ``coregistered.tif`` (the scale benchmark's GDAL-only reference uses them too).
COG_OPTIONS = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS", "OVERVIEWS=AUTO"]


def _gt(matrix: np.ndarray) -> tuple[float, ...]:
    return (float(matrix[0, 2]), float(matrix[0, 0]), float(matrix[0, 1]),
            float(matrix[1, 2]), float(matrix[1, 0]), float(matrix[1, 1]))


def _nodata_for(ds: gdal.Dataset) -> float:
    band = ds.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    if nodata is not None:
        return float(nodata)
    return float("nan") if band.DataType in (gdal.GDT_Float32, gdal.GDT_Float64) else 0.0


@dataclass(frozen=True)
class CoregisteredRecipe:
    """How ``coregistered.tif`` is made from the target's pixels (see :func:`write_coregistered`).

    Attributes:
        how: "geotransform" (the target's own pixels under a new geotransform) or "warp".
        crs: CRS WKT of the output ("" for none).
        geotransform: The new geotransform ("geotransform").
        gcps: Target pixel -> map GCPs sampled from the fitted chain ("warp").
        bounds: Output bounds ``(xmin, ymin, xmax, ymax)`` on the reference grid ("warp").
        size: Output ``(width, height)`` ("warp").
        resampling: GDAL resampling of the warp.
    """

    how: str
    crs: str
    geotransform: tuple[float, ...] | None = None
    gcps: tuple[tuple[float, float, float, float], ...] = ()
    bounds: tuple[float, float, float, float] | None = None
    size: tuple[int, int] | None = None
    resampling: str = "bilinear"

    def vrt(self, target: gdal.Dataset) -> gdal.Dataset:
        """The co-registered target as a virtual dataset over ``target`` (nothing is read yet)."""
        if self.how == "geotransform":
            assert self.geotransform is not None
            vrt = gdal.Translate("", target, format="VRT")
            vrt.SetGeoTransform(self.geotransform)
            vrt.SetProjection(self.crs)  # "" drops a CRS the target had: the reference grid has none
            return vrt
        assert self.bounds is not None and self.size is not None
        gcps = [gdal.GCP(mx, my, 0.0, px, py) for px, py, mx, my in self.gcps]
        src = gdal.Translate("", target, format="VRT", GCPs=gcps, outputSRS=self.crs or None)
        return gdal.Warp("", src, format="VRT", outputBounds=self.bounds, width=self.size[0], height=self.size[1],
                         resampleAlg=self.resampling, dstSRS=self.crs or None, dstNodata=_nodata_for(target),
                         tps=True)


def coregistered_recipe(grid: CommonGrid, fit: FitResult, resampling: str) -> CoregisteredRecipe:
    """How to make the co-registered target of ``fit`` (see :func:`write_coregistered`)."""
    ref, tgt = grid.reference, grid.target
    model = fit.model
    crs = grid.crs_wkt
    t2g = grid.target_to_grid_matrix()
    if model.is_affine and t2g is not None:
        return CoregisteredRecipe("geotransform", crs, geotransform=_gt(ref.georef.matrix @ model.matrix_px @ t2g))
    n = 21
    xs, ys = np.meshgrid(np.linspace(0, tgt.width, n), np.linspace(0, tgt.height, n))
    px = np.column_stack([xs.ravel(), ys.ravel()])
    mp = ref.georef.pixel_to_map(model.apply(grid.target_to_grid(px)))
    gcps = tuple((float(p[0]), float(p[1]), float(m[0]), float(m[1])) for p, m in zip(px, mp, strict=True)
                 if np.isfinite(m).all())
    x0, dx, _, y0, _, dy = ref.georef.geotransform
    return CoregisteredRecipe("warp", crs, gcps=gcps, bounds=(x0, y0 + dy * ref.height, x0 + dx * ref.width, y0),
                              size=(ref.width, ref.height), resampling=resampling)


def write_cog(path: Path, target: str | gdal.Dataset, recipe: CoregisteredRecipe) -> None:
    """Write ``recipe`` applied to ``target`` (a dataset, or a name to open: a handle of its own) as a COG."""
    source = gdal.Open(target, gdal.GA_ReadOnly) if isinstance(target, str) else target
    vrt = recipe.vrt(source)
    with atomic_path(path) as tmp:
        out = gdal.Translate(str(tmp), vrt, format="COG", creationOptions=COG_OPTIONS)
        if out is None:
            raise RuntimeError(f"GDAL could not write {path}")
        out = None


def write_coregistered(path: Path, grid: CommonGrid, fit: FitResult, resampling: str) -> str:
    """Write the co-registered target (all its bands) as a Cloud-Optimised GeoTIFF.

    ``fit.model`` is the correction in reference-grid pixels (see
    :class:`sarcoreg.core.engine.CoregResult`); a target pixel goes through the target's own
    georeferencing onto the reference grid (:meth:`CommonGrid.target_to_grid`), through the
    correction to a reference pixel, and through the reference geotransform to the map. When
    both steps are affine (a shift / affine correction and a target in the same CRS with a
    geotransform, or pixel mode) the new geotransform is their matrix product: no resampling,
    the pixel values are the target's own, copied by GDAL straight from the source into the COG
    (a rotated target keeps a rotated geotransform). Otherwise the target is warped onto the
    reference grid through GCPs sampled densely from that chain (thin-plate spline between
    them). The output carries the grid's CRS (:attr:`CommonGrid.crs_wkt`; none for a reference
    without one).

    Returns:
        "geotransform" or "warp": how the raster was made.
    """
    recipe = coregistered_recipe(grid, fit, resampling)
    write_cog(path, grid.target.dataset, recipe)
    return recipe.how
