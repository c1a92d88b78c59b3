"""Correspondence maps of any map-producing matcher at chosen points, written as a GeoTIFF.

For each point, the engine's own preparation (:func:`~sarcoreg.core.engine._preparation`), chip
cutting (:func:`~sarcoreg.core.chips.cut_chips`) and matcher run on a template centred on the
point; the matcher's similarity map ``maps[k][R + dy, R + dx]`` (see
:class:`~sarcoreg.core.matchers.base.MatchResult`) is then placed on the map: the cell of
displacement ``(dx, dy)`` is centred at ``point + (dx, dy)`` reference pixels.

Layout of the GeoTIFF (one rule for one or many points): a single-band **mosaic** on the
reference grid shifted by half a pixel (template centres are pixel corners, so displacement
cells are centred on them). It covers the bounding box of all maps; cells outside every map are
nodata (NaN). Where the maps of two points overlap (points closer than ``2 R + 1`` pixels) the
point listed later wins; the result says how many points were overlapped. Each cell thus shows,
at its true place, how similar the target is when the template is moved there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal

from .chips import cut_chips
from .engine import CoregOptions, _modality, _preparation, resolve_matching_options
from .matchers.base import get_matcher
from .methods import method_names
from .progress import Progress
from .raster_io import common_grid, open_raster

__all__ = ["PointMaps", "correspondence_maps_at", "run_from_params", "snap_points"]

log = logging.getLogger("sarcoreg.correspondence_maps")


@dataclass
class PointMaps:
    """The maps of :func:`correspondence_maps_at`.

    Attributes:
        centres: Template centres used, integer reference pixel corners, ``(N, 2)`` int64.
        maps: Similarity maps ``(N, 2 R + 1, 2 R + 1)`` float32 (NaN: not evaluated / no data).
        peak_shift: Displacement ``(dx, dy)`` of each map's best match (sub-pixel), ``(N, 2)``;
            NaN where the matcher found none.
        reliability: The matcher's reliability of each match, ``(N,)``.
        errors: Per-point reason of a failed match ("" when valid).
        device: Device the matcher ran on.
    """

    centres: np.ndarray
    maps: np.ndarray
    peak_shift: np.ndarray
    reliability: np.ndarray
    errors: list[str]
    device: str


def snap_points(points_px: np.ndarray) -> np.ndarray:
    """Reference pixel positions ``(N, 2)`` -> nearest pixel corners ``(N, 2)`` int64 (template centres)."""
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite reference pixel positions")
    return np.round(pts).astype(np.int64)


def correspondence_maps_at(
    reference: str | Path,
    target: str | Path,
    points_px: np.ndarray,
    options: CoregOptions | None = None,
    progress: Progress | None = None,
) -> PointMaps:
    """Similarity maps of ``options.method`` around reference pixel positions.

    Args:
        reference: Reference raster (its grid is the map's grid).
        target: Target raster (resampled onto the reference grid as in the engine).
        points_px: Positions in reference pixel coordinates ``(N, 2)``; snapped to the nearest
            pixel corner (see :func:`snap_points`).
        options: Method, window, search radius, bands, modalities, matcher options (the
            engine's :class:`CoregOptions`; spacing, transform and coarse are ignored).
        progress: Progress / cancel, checked between batches.

    Returns:
        :class:`PointMaps`.

    Raises:
        ValueError: a bad option, no point, a point outside the reference, or a matcher that
            produces no maps (e.g. ``sift``).
    """
    opts = options or CoregOptions()
    opts.validate()
    progress = progress or Progress()
    centres = snap_points(points_px)
    if len(centres) == 0:
        raise ValueError("no points given: pass at least one reference pixel position")
    ref = open_raster(reference, opts.reference_bands, role="reference")
    tgt = open_raster(target, opts.target_bands, role="target")
    outside = ~((centres[:, 0] >= 0) & (centres[:, 0] <= ref.width) & (centres[:, 1] >= 0)
                & (centres[:, 1] <= ref.height))
    if outside.any():
        k = int(np.nonzero(outside)[0][0])
        raise ValueError(
            f"point {k} at reference pixel {tuple(int(v) for v in centres[k])} lies outside the reference "
            f"raster ({ref.width} x {ref.height} px); give points inside it"
        )
    grid = common_grid(ref, tgt, opts.resampling)
    opts, _ = resolve_matching_options(opts, grid)  # automatic window / radius (None) for this pair
    window, radius = int(opts.window or 0), int(opts.search_radius or 0)
    progress.report(0.05, "preparing radiometry")
    ref_sample, _ = ref.read_overview(1024, grid.overlap, average=False)
    tgt_sample, _ = grid.target_on_grid.read_overview(1024, grid.overlap, average=False)
    ref_prep = _preparation(ref, ref_sample, _modality(opts.reference_modality, ref_sample), opts)
    tgt_prep = _preparation(grid.target_on_grid, tgt_sample, _modality(opts.target_modality, tgt_sample), opts)
    matcher = get_matcher(opts.method, **opts.matcher_options)
    batch = max(1, int(getattr(matcher, "batch_size", 64)))
    m = 2 * radius + 1
    n = len(centres)
    maps = np.full((n, m, m), np.nan, np.float32)
    peak = np.full((n, 2), np.nan)
    reliability = np.zeros(n)
    errors: list[str] = []
    for start in range(0, n, batch):
        progress.report(0.1 + 0.9 * start / n, f"correspondence maps {start}/{n} ({opts.method})")
        chips = cut_chips(grid.reference, grid.target_on_grid, ref_prep, tgt_prep, centres[start:start + batch],
                          window, radius)
        res = matcher.match(chips)
        if res.maps is None:
            raise ValueError(
                f"method '{opts.method}' gives no correspondence maps; use one of the dense matchers "
                f"({', '.join(method_names(kind='window', maps=True))})"
            )
        stop = start + len(chips)
        maps[start:stop] = res.maps
        peak[start:stop] = np.where(res.valid[:, None], res.shift_xy, np.nan)
        reliability[start:stop] = res.reliability
        errors += list(res.errors)
    progress.report(1.0, f"{n} correspondence map(s) done")
    return PointMaps(centres, maps, peak, reliability, errors, str(getattr(matcher, "device", "cpu")))


def write_maps_geotiff(pm: PointMaps, reference: str | Path, path: str | Path) -> dict[str, Any]:
    """Write the mosaic GeoTIFF described in the module docstring.

    Args:
        pm: Maps from :func:`correspondence_maps_at`.
        reference: The reference raster (geotransform and CRS).
        path: Output ``.tif`` (written under a ``.partial`` name, then renamed).

    Returns:
        ``{"path", "width", "height", "overlapped_points"}``.
    """
    ref_ds = gdal.Open(str(reference))
    if ref_ds is None:
        raise ValueError(f"cannot open the reference raster '{reference}'")
    m = pm.maps.shape[1]
    r = (m - 1) // 2
    # Top-left corner of each map in reference pixel coordinates: centre - R - 0.5.
    lo = pm.centres - r
    x_min, y_min = lo.min(axis=0)
    x_max, y_max = (lo + m).max(axis=0)
    width, height = int(x_max - x_min), int(y_max - y_min)
    mosaic = np.full((height, width), np.nan, np.float32)
    owner = np.full((height, width), -1, np.int64)
    for k in range(len(pm.centres)):
        c0, r0 = int(lo[k, 0] - x_min), int(lo[k, 1] - y_min)
        mosaic[r0:r0 + m, c0:c0 + m] = pm.maps[k]
        owner[r0:r0 + m, c0:c0 + m] = k
    overlapped = int(sum(1 for k in range(len(pm.centres)) if not (owner == k).sum() == m * m))
    if overlapped:
        log.warning("%d of %d correspondence maps are partly covered by a later point's map "
                    "(points closer than %d px)", overlapped, len(pm.centres), m)
    x0, dx, rx, y0, ry, dy = ref_ds.GetGeoTransform()
    px, py = float(x_min) - 0.5, float(y_min) - 0.5
    gt = (x0 + px * dx + py * rx, dx, rx, y0 + px * ry + py * dy, ry, dy)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial.tif")
    ds = gdal.GetDriverByName("GTiff").Create(str(partial), width, height, 1, gdal.GDT_Float32,
                                              ["COMPRESS=DEFLATE", "TILED=YES"])
    ds.SetGeoTransform(gt)
    ds.SetProjection(ref_ds.GetProjection())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(float("nan"))
    band.SetDescription("similarity")
    band.WriteArray(mosaic)
    ds = None
    partial.replace(out)
    return {"path": str(out), "width": width, "height": height, "overlapped_points": overlapped}


def run_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Worker job ``correspondence_map``.

    Params:
        reference, target (str): raster paths.
        points_map (list of [x, y]): points in the reference CRS (map units), or
        points_px (list of [col, row]): points in reference pixels.
        output (str): GeoTIFF to write.
        png_dir (str, optional): a PNG plot per point goes there (``map_NNN.png``).
        options (dict): :class:`CoregOptions` fields (method, window, search_radius, ...).

    Returns:
        ``{"output", "pngs", "points": [{"col", "row", "peak_dx", "peak_dy", "reliability",
        "error"}], "device", "overlapped_points"}``.
    """
    for key in ("reference", "target", "output"):
        if not params.get(key):
            raise ValueError(f"correspondence_map job needs '{key}'")
    opts = CoregOptions.from_dict(dict(params.get("options") or {}))
    if params.get("points_px") is not None:
        pts = np.asarray(params["points_px"], np.float64).reshape(-1, 2)
    elif params.get("points_map") is not None:
        ref = open_raster(params["reference"], role="reference")
        pts = ref.georef.map_to_pixel(np.asarray(params["points_map"], np.float64).reshape(-1, 2))
    else:
        raise ValueError("correspondence_map job needs 'points_map' or 'points_px'")
    pm = correspondence_maps_at(params["reference"], params["target"], pts, opts, progress.sub(0.0, 0.9))
    written = write_maps_geotiff(pm, params["reference"], params["output"])
    pngs: list[str] = []
    if params.get("png_dir"):
        from .correspondence import plot_correspondence_map

        for k in range(len(pm.centres)):
            progress.report(0.9 + 0.1 * k / len(pm.centres), f"plot {k + 1}/{len(pm.centres)}")
            c, r = (int(v) for v in pm.centres[k])
            pngs.append(str(plot_correspondence_map(
                pm.maps[k], Path(params["png_dir"]) / f"map_{k:03d}.png",
                title=f"point {k}: reference pixel ({c}, {r}), {opts.method}")))
    points = [
        {"col": int(pm.centres[k, 0]), "row": int(pm.centres[k, 1]),
         "peak_dx": _num(pm.peak_shift[k, 0]), "peak_dy": _num(pm.peak_shift[k, 1]),
         "reliability": float(pm.reliability[k]), "error": pm.errors[k]}
        for k in range(len(pm.centres))
    ]
    log.info("correspondence maps of %d point(s) written to %s (device %s)", len(points), written["path"], pm.device)
    return {"output": written["path"], "pngs": pngs, "points": points, "device": pm.device,
            "overlapped_points": written["overlapped_points"]}


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
