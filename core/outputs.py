"""Writes every output of a co-registration into the output folder (atomically, file by file)."""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from osgeo import gdal

from .chips import Preparation
from .estimation import FitResult
from .exports import (
    atomic_path,
    atomic_write_text,
    checkerboard,
    write_gcp_vrt,
    write_points,
    write_report_html,
    write_shift_field,
    write_tiepoints_gpkg,
)
from .methods import methods
from .output_set import OUTPUT_NAMES, final_folder
from .progress import Progress
from .raster_io import CommonGrid, RasterSource
from .tiepoints import TiePoints
from .worker_protocol import to_jsonable

__all__ = ["COG_OPTIONS", "CoregisteredRecipe", "OutputSettings", "coregistered_recipe", "tiepoint_map_images",
           "write_coregistered", "write_outputs", "write_report_json"]

class OutputSettings(Protocol):
    """The options :func:`write_outputs` needs (:class:`~sarcoreg.core.engine.CoregOptions` has them)."""

    @property
    def resampling(self) -> str:
        """GDAL resampling of a warped ``coregistered.tif``."""

    @property
    def spacing(self) -> int | None:
        """Tie-point spacing, reference pixels (resolved: not None); the shift field's step is a quarter."""


#: Tie points whose correspondence map the HTML report shows.
REPORT_MAPS = 4

log = logging.getLogger("sarcoreg.outputs")
#: Creation options of ``coregistered.tif`` (the scale benchmark's GDAL-only reference uses them too).
COG_OPTIONS = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS", "OVERVIEWS=AUTO"]


def write_report_json(path: Path, report: dict[str, Any]) -> None:
    """``report.json``: NaN written as null, indented."""
    atomic_write_text(path, json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n")


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


def _write_cog(path: Path, target: str | gdal.Dataset, recipe: CoregisteredRecipe) -> None:
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
    _write_cog(path, grid.target.dataset, recipe)
    return recipe.how


def _checkerboards(grid: CommonGrid, recipe: CoregisteredRecipe | None, ref_prep: Preparation,
                   tgt_prep: Preparation, size: int = 384) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Before/after checkerboards of a chip in the middle of the overlap.

    "After" reads the co-registered target through ``recipe``'s virtual dataset: the pixels
    ``coregistered.tif`` holds (it is written losslessly), while that file is still being written.
    """
    x0, y0, w, h = grid.overlap
    s = int(min(size, w, h))
    if s < 16:
        return None, None
    cx, cy = x0 + (w - s) // 2, y0 + (h - s) // 2
    ref_chip = ref_prep.read(grid.reference, cx, cy, s)
    before = checkerboard(np.nan_to_num(ref_chip), np.nan_to_num(tgt_prep.read(grid.target_on_grid, cx, cy, s)))
    after = None
    if recipe is not None:
        g = grid.reference.georef
        corners = g.pixel_to_map(np.array([[cx, cy], [cx + s, cy + s]], np.float64))
        bounds = (min(corners[:, 0]), min(corners[:, 1]), max(corners[:, 0]), max(corners[:, 1]))
        ds = gdal.Warp("", recipe.vrt(grid.target.dataset), format="MEM", outputBounds=bounds, width=s, height=s,
                       dstSRS=g.crs_wkt or None, resampleAlg="bilinear", dstAlpha=True)
        src = RasterSource("coregistered target", ds, grid.target.bands, g)
        after = checkerboard(np.nan_to_num(ref_chip), np.nan_to_num(tgt_prep.apply(src.read(0, 0, s, s))))
    return before, after


def tiepoint_map_images(maps: np.ndarray | None, tiepoints: TiePoints, count: int = REPORT_MAPS
                        ) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """PNGs of the matcher's map over the search window for the best few tie points.

    The tie points are the inliers with the highest scores (valid matches when there are fewer
    inliers). For ``bnn`` the map is shown as the distance ``h = 1 / score - 1`` (lower = more
    similar, the network's own quantity); for other matchers as the similarity they compute.

    Args:
        maps: ``(N, 2 R + 1, 2 R + 1)`` maps of the matcher (one per tie-point row), or None.
        tiepoints: The tie points (same rows).
        count: How many maps at most.

    Returns:
        ``(caption -> PNG bytes, what was shown)``: both empty when there are no maps.
    """
    from .correspondence import correspondence_map_png

    if maps is None or len(maps) != len(tiepoints.score) or count < 1:
        return {}, []
    inl = np.asarray(tiepoints.inlier, bool)
    valid = np.isfinite(tiepoints.score) & np.isfinite(tiepoints.shift_px).all(axis=1)
    pool = np.flatnonzero(inl & valid)
    if len(pool) == 0:
        pool = np.flatnonzero(valid)
    order = pool[np.argsort(-np.asarray(tiepoints.score)[pool], kind="stable")][:count]
    images: dict[str, bytes] = {}
    shown: list[dict[str, Any]] = []
    matcher = str(tiepoints.matcher)
    map_kind = next((m.map_kind for m in methods() if m.name == matcher), "similarity")
    for k in order:
        cmap = np.asarray(maps[k], np.float64)
        if not np.isfinite(cmap).any():
            continue
        if map_kind == "distance":  # the map holds 1 / (1 + h) of a distance h
            with np.errstate(divide="ignore", invalid="ignore"):
                cmap = 1.0 / cmap - 1.0
            label, lower, what = f"{matcher.upper()} distance h (lower = more similar)", True, "distance"
        else:
            label, lower, what = f"{matcher} similarity", False, "similarity"
        x, y = (float(v) for v in tiepoints.ref_xy[k])
        title = f"tie point {k}, reference px ({x:.0f}, {y:.0f}): {matcher} {what}"
        caption = (f"Tie point {k} ({'inlier' if inl[k] else 'not an inlier'}, score {float(tiepoints.score[k]):.3f}): "
                   f"{matcher} {what} map over the search window, displacement in pixels")
        images[caption] = correspondence_map_png(cmap, title=title, label=label, lower_is_better=lower)
        shown.append({"tiepoint": int(k), "ref_xy": [x, y], "map": what, "matcher": matcher,
                      "size": int(cmap.shape[0])})
    return images, shown


def write_outputs(out_dir: Path, grid: CommonGrid, fit: FitResult, tiepoints: TiePoints, report: dict[str, Any],
                  wanted: list[str], settings: OutputSettings, ref_prep: Preparation, tgt_prep: Preparation,
                  progress: Progress, timings: dict[str, float], maps: np.ndarray | None = None,
                  extra_images: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Write the ``wanted`` outputs into ``out_dir``; returns key -> path of what was written.

    ``settings`` says how the co-registered raster is resampled and how dense the shift field is.

    :func:`sarcoreg.core.engine.coregister` passes the staging folder of its
    :class:`~sarcoreg.core.output_set.OutputSet`; ``report["outputs"]`` names the final paths.

    ``maps`` are the matcher's maps over the search windows (one per tie point); the HTML report
    shows them for a few tie points (:func:`tiepoint_map_images`); ``extra_images`` (caption ->
    PNG bytes, e.g. the shared-modality images) are embedded after them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / OUTPUT_NAMES[k] for k in OUTPUT_NAMES}
    done: dict[str, Path] = {}
    ref_crs = grid.crs_wkt  # the reference's CRS, or the one assumed for it ("" for none)
    steps = [k for k in ("tiepoints", "points", "gcp_vrt", "shifts", "coregistered", "report_html", "report_json")
             if k in wanted]
    recipe: CoregisteredRecipe | None = None
    cog: Future[None] | None = None
    pool: ThreadPoolExecutor | None = None
    if "coregistered" in wanted:
        # The largest output, and GDAL's work alone: written by a thread of its own (GDAL runs without
        # the GIL, on a dataset handle of its own) while the other outputs are made here.
        recipe = coregistered_recipe(grid, fit, settings.resampling)
        report["coregistered_by"] = recipe.how
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sarcoreg-cog")
        cog = pool.submit(_write_cog, paths["coregistered"], grid.target.path, recipe)
    try:
        for i, key in enumerate(steps):
            progress.report(i / len(steps), f"writing {OUTPUT_NAMES[key]}")
            p = paths[key]
            if key == "tiepoints":
                write_tiepoints_gpkg(p, tiepoints)
            elif key == "points":
                write_points(p, tiepoints, grid.target.georef, ref_crs)
            elif key == "gcp_vrt":
                write_gcp_vrt(p, grid.target.path, tiepoints, ref_crs)
            elif key == "shifts":
                if settings.spacing is None:
                    raise ValueError("the shift field needs a resolved tie-point spacing")
                step = max(4, settings.spacing // 4)
                # The model is already in reference-grid pixels: its inverse gives the grid position.
                write_shift_field(p, grid.reference_georef, fit.inverse.apply, step)
            elif key == "coregistered":
                pass  # being written by the COG thread; waited for below
            elif key == "report_html":
                before, after = _checkerboards(grid, recipe, ref_prep, tgt_prep)
                images, shown = tiepoint_map_images(maps, tiepoints)
                report["report_maps"] = shown
                write_report_html(p, report, tiepoints, checkerboard_before=before, checkerboard_after=after,
                                  extra_images={**images, **(extra_images or {})})
            elif key == "report_json":
                if cog is not None:
                    cog.result()  # report.json comes last, once every other file is there
                write_report_json(p, report)
            done[key] = p
        if cog is not None:
            cog.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)  # never leave the thread writing into a folder being cleaned up
    done = {k: paths[k] for k in steps}
    # Where the files end up once the engine moves the staged set in (final_folder).
    report["outputs"] = {k: str(final_folder(out_dir) / v.name) for k, v in done.items()}
    progress.report(1.0, "outputs written")
    return done
