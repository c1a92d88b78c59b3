"""Writes every output of a co-registration into the output folder (atomically, file by file)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

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
from .output_set import final_folder
from .progress import Progress
from .raster_io import CommonGrid, RasterSource
from .tiepoints import TiePoints
from .worker_protocol import to_jsonable

__all__ = ["tiepoint_map_images", "write_coregistered", "write_outputs", "write_report_json"]

#: Tie points whose correspondence map the HTML report shows.
REPORT_MAPS = 4

log = logging.getLogger("sarcoreg.outputs")
_COG_OPTIONS = ["COMPRESS=DEFLATE", "PREDICTOR=YES", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS", "OVERVIEWS=AUTO"]


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


def write_coregistered(path: Path, grid: CommonGrid, fit: FitResult, resampling: str) -> str:
    """Write the co-registered target (all its bands) as a Cloud-Optimised GeoTIFF.

    ``fit.model`` is the correction in reference-grid pixels (see
    :class:`sarcoreg.core.engine.CoregResult`); a target pixel goes through the target's own
    georeferencing onto the reference grid (:meth:`CommonGrid.target_to_grid`), through the
    correction to a reference pixel, and through the reference geotransform to the map. When
    both steps are affine (a shift / affine correction and a target in the same CRS with a
    geotransform, or pixel mode) the new geotransform is their matrix product: no resampling,
    the pixel values are the target's own (a rotated target keeps a rotated geotransform).
    Otherwise the target is warped onto the reference grid through GCPs sampled densely from
    that chain (thin-plate spline between them). The output carries the grid's CRS
    (:attr:`CommonGrid.crs_wkt`; none for a reference without one).

    Returns:
        "geotransform" or "warp": how the raster was made.
    """
    ref, tgt = grid.reference, grid.target
    model = fit.model
    crs = grid.crs_wkt
    t2g = grid.target_to_grid_matrix()
    if model.is_affine and t2g is not None:
        vrt = gdal.Translate("", tgt.dataset, format="VRT")
        vrt.SetGeoTransform(_gt(ref.georef.matrix @ model.matrix_px @ t2g))
        vrt.SetProjection(crs)  # "" drops a CRS the target had: the reference grid has none
        how = "geotransform"
    else:
        n = 21
        xs, ys = np.meshgrid(np.linspace(0, tgt.width, n), np.linspace(0, tgt.height, n))
        px = np.column_stack([xs.ravel(), ys.ravel()])
        mp = ref.georef.pixel_to_map(model.apply(grid.target_to_grid(px)))
        gcps = [gdal.GCP(float(m[0]), float(m[1]), 0.0, float(p[0]), float(p[1])) for p, m in zip(px, mp, strict=True)
                if np.isfinite(m).all()]
        src = gdal.Translate("", tgt.dataset, format="VRT", GCPs=gcps, outputSRS=crs or None)
        x0, dx, _, y0, _, dy = ref.georef.geotransform
        vrt = gdal.Warp("", src, format="VRT", outputBounds=(x0, y0 + dy * ref.height, x0 + dx * ref.width, y0),
                        width=ref.width, height=ref.height, resampleAlg=resampling,
                        dstSRS=crs or None, dstNodata=_nodata_for(tgt.dataset), tps=True)
        how = "warp"
    with atomic_path(path) as tmp:
        out = gdal.Translate(str(tmp), vrt, format="COG", creationOptions=_COG_OPTIONS)
        if out is None:
            raise RuntimeError(f"GDAL could not write {path}")
        out = None
    return how


def _checkerboards(grid: CommonGrid, coregistered: Path | None, ref_prep: Preparation, tgt_prep: Preparation,
                   size: int = 384) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Before/after checkerboards of a chip in the middle of the overlap."""
    x0, y0, w, h = grid.overlap
    s = int(min(size, w, h))
    if s < 16:
        return None, None
    cx, cy = x0 + (w - s) // 2, y0 + (h - s) // 2
    ref_chip = ref_prep.read(grid.reference, cx, cy, s)
    before = checkerboard(np.nan_to_num(ref_chip), np.nan_to_num(tgt_prep.read(grid.target_on_grid, cx, cy, s)))
    after = None
    if coregistered is not None and coregistered.exists():
        g = grid.reference.georef
        corners = g.pixel_to_map(np.array([[cx, cy], [cx + s, cy + s]], np.float64))
        bounds = (min(corners[:, 0]), min(corners[:, 1]), max(corners[:, 0]), max(corners[:, 1]))
        ds = gdal.Warp("", str(coregistered), format="MEM", outputBounds=bounds, width=s, height=s,
                       dstSRS=g.crs_wkt or None, resampleAlg="bilinear", dstAlpha=True)
        src = RasterSource(str(coregistered), ds, grid.target.bands, g)
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
    for k in order:
        cmap = np.asarray(maps[k], np.float64)
        if not np.isfinite(cmap).any():
            continue
        if matcher == "bnn":
            with np.errstate(divide="ignore", invalid="ignore"):
                cmap = 1.0 / cmap - 1.0
            label, lower, what = "BNN distance h (lower = more similar)", True, "distance"
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
                  wanted: list[str], opts: Any, ref_prep: Preparation, tgt_prep: Preparation, progress: Progress,
                  timings: dict[str, float], maps: np.ndarray | None = None,
                  extra_images: dict[str, bytes] | None = None) -> dict[str, Path]:
    """Write the ``wanted`` outputs into ``out_dir``; returns key -> path of what was written.

    :func:`sarcoreg.core.engine.coregister` passes the staging folder of its
    :class:`~sarcoreg.core.output_set.OutputSet`; ``report["outputs"]`` names the final paths.

    ``maps`` are the matcher's maps over the search windows (one per tie point); the HTML report
    shows them for a few tie points (:func:`tiepoint_map_images`); ``extra_images`` (caption ->
    PNG bytes, e.g. the shared-modality images) are embedded after them.
    """
    from .engine import OUTPUT_NAMES

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / OUTPUT_NAMES[k] for k in OUTPUT_NAMES}
    done: dict[str, Path] = {}
    ref_crs = grid.crs_wkt  # the reference's CRS, or the one assumed for it ("" for none)
    steps = [k for k in ("tiepoints", "points", "gcp_vrt", "shifts", "coregistered", "report_html", "report_json")
             if k in wanted]
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
            step = max(4, opts.spacing // 4)
            # The model is already in reference-grid pixels: its inverse gives the grid position.
            write_shift_field(p, grid.reference_georef, fit.inverse.apply, step)
        elif key == "coregistered":
            report["coregistered_by"] = write_coregistered(p, grid, fit, opts.resampling)
        elif key == "report_html":
            before, after = _checkerboards(grid, done.get("coregistered"), ref_prep, tgt_prep)
            images, shown = tiepoint_map_images(maps, tiepoints)
            report["report_maps"] = shown
            write_report_html(p, report, tiepoints, checkerboard_before=before, checkerboard_after=after,
                              extra_images={**images, **(extra_images or {})})
        elif key == "report_json":
            write_report_json(p, report)
        done[key] = p
    # Where the files end up once the engine moves the staged set in (final_folder).
    report["outputs"] = {k: str(final_folder(out_dir) / v.name) for k, v in done.items()}
    progress.report(1.0, "outputs written")
    return done
