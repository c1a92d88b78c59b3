"""Work on tie points read back from a layer: export them as GCPs, warp with them, evaluate.

The QGIS algorithms *Export GCPs*, *Warp with tie points* and *Evaluate co-registration* read a
point layer in QGIS, hand its attribute columns to the worker as JSON, and everything numeric
happens here. Any point layer works when it has the fields these operations need, so a tie-point
layer edited by hand (points moved, outliers toggled) or made by another tool can be used.

**Column format** (:data:`PointColumns`, what :func:`layer_columns` returns and the QGIS side
sends)::

    {"x": [...], "y": [...], "fields": {"TGT_X_IM": [...], "OUTLIER": [...], ...}}

``x``/``y`` are the point geometries in the layer CRS (None for a feature without geometry) and
``fields`` the attribute columns (None for NULL). Numbers equal to the AROSICS stand-in -9999
count as missing (NaN), as the tie-point GeoPackage writes failed points that way.

**Tie-point fields** (the names of :data:`sarcoreg.core.tiepoints.TIEPOINT_FIELDS`):

* the point geometry (else ``X_MAP, Y_MAP``): the reference map position; it wins over the
  fields, so a point moved by hand counts where it now lies;
* ``TGT_X_IM, TGT_Y_IM`` (required): the matched position in the target raster's pixels (GDAL
  convention, ``(0, 0)`` = top-left corner of the top-left pixel);
* ``OUTLIER`` (else ``L1_OUTLIER``/``L2_OUTLIER``; else none is an outlier);
* ``X_IM, Y_IM`` with ``X_MAP, Y_MAP``: the reference pixel grid, recovered by
  :func:`infer_reference_grid` when no reference raster is given;
* ``POINT_ID``, ``RES_X_PX, RES_Y_PX``: optional, carried into the exports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, osr

from .estimation import fit_transform, radial_stats
from .estimation.stats import json_float
from .exports import (
    NODATA_VALUE,
    atomic_write_text,
    gcp_translate_args,
    open_vector_layer,
    read_points,
    render_report_html,
    srs_from_text,
    write_gcp_vrt,
    write_points,
)
from .georef import Georef
from .progress import Progress
from .raster_io import CommonGrid, RasterSource, open_raster
from .tiepoints import TiePoints

__all__ = [
    "PointColumns",
    "REQUIRED_FIELDS",
    "TiePointTable",
    "checkpoints_from_points_file",
    "evaluate_checkpoints",
    "evaluate_from_params",
    "export_gcps",
    "export_gcps_from_params",
    "infer_reference_grid",
    "layer_columns",
    "table_from_columns",
    "to_tiepoints",
    "warp_from_params",
    "warp_with_tiepoints",
]

PointColumns = dict[str, Any]
#: Fields a tie-point layer needs for GCP export and warping.
REQUIRED_FIELDS: tuple[str, str] = ("TGT_X_IM", "TGT_Y_IM")
#: Largest output raster :func:`warp_with_tiepoints` makes on an inferred grid (pixels).
MAX_WARP_PIXELS = 40_000 * 40_000


@dataclass
class TiePointTable:
    """Tie points as read from a layer, ``N`` rows.

    Attributes:
        map_xy: Reference map position (geometry, else ``X_MAP, Y_MAP``), ``(N, 2)``; NaN if none.
        target_px: Matched target pixel position ``TGT_X_IM, TGT_Y_IM``, ``(N, 2)``; NaN if failed.
        outlier: Outlier flag, ``(N,)`` bool.
        point_id: ``POINT_ID`` (else the row number), ``(N,)`` int64.
        ref_px: Reference pixel position ``X_IM, Y_IM``, ``(N, 2)``; NaN when absent.
        field_map_xy: ``X_MAP, Y_MAP`` as stored, ``(N, 2)``; NaN when absent.
        residual_px: ``RES_X_PX, RES_Y_PX``, ``(N, 2)``; NaN when absent.
        crs_wkt: CRS of the map positions ("" for none).
    """

    map_xy: np.ndarray
    target_px: np.ndarray
    outlier: np.ndarray
    point_id: np.ndarray
    ref_px: np.ndarray
    field_map_xy: np.ndarray
    residual_px: np.ndarray
    crs_wkt: str

    def __len__(self) -> int:
        return int(self.map_xy.shape[0])

    def usable(self, include_outliers: bool) -> np.ndarray:
        """Rows with finite map and target positions (and no outlier flag unless included), ``(N,)``."""
        ok = np.isfinite(self.map_xy).all(axis=1) & np.isfinite(self.target_px).all(axis=1)
        return ok if include_outliers else ok & ~self.outlier


def _numbers(values: Sequence[Any] | None, n: int, name: str) -> np.ndarray:
    """A numeric column as float64 ``(n,)``: None, NaN, text and -9999 become NaN."""
    if values is None:
        return np.full(n, np.nan)
    if len(values) != n:
        raise ValueError(f"field {name} has {len(values)} values for {n} points")
    out = np.full(n, np.nan)
    for i, v in enumerate(values):
        if v is None or isinstance(v, str | bytes):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f != NODATA_VALUE:
            out[i] = f
    return out


def _flags(values: Sequence[Any] | None, n: int) -> np.ndarray:
    """A boolean column ``(n,)``: true for True, non-zero numbers and "true"/"yes"/"1"."""
    if values is None:
        return np.zeros(n, bool)
    out = np.zeros(n, bool)
    for i, v in enumerate(values):
        if isinstance(v, str):
            out[i] = v.strip().lower() in ("true", "t", "yes", "y", "1")
        elif v is not None:
            try:
                out[i] = bool(float(v)) if not isinstance(v, bool) else v
            except (TypeError, ValueError):
                out[i] = False
    return out


def _pair(fields: Mapping[str, Sequence[Any]], a: str, b: str, n: int) -> np.ndarray:
    return np.column_stack([_numbers(fields.get(a), n, a), _numbers(fields.get(b), n, b)])


def table_from_columns(
    columns: PointColumns,
    crs_wkt: str = "",
    *,
    target_fields: tuple[str, str] = REQUIRED_FIELDS,
) -> TiePointTable:
    """Read the :data:`PointColumns` of a tie-point layer.

    Args:
        columns: ``{"x": [...], "y": [...], "fields": {...}}`` (see the module docstring).
        crs_wkt: CRS of the geometry and ``X_MAP, Y_MAP`` ("" for none).
        target_fields: Names of the target pixel fields.

    Returns:
        The :class:`TiePointTable`.

    Raises:
        ValueError: No points, a required field missing (the message lists the layer's fields),
            or columns of different lengths.
    """
    fields: Mapping[str, Sequence[Any]] = columns.get("fields") or {}
    xs, ys = list(columns.get("x") or []), list(columns.get("y") or [])
    n = len(xs) if xs else (len(next(iter(fields.values()))) if fields else 0)
    if n == 0:
        raise ValueError("the tie-point layer has no points")
    missing = [f for f in target_fields if f not in fields]
    if missing:
        raise ValueError(
            f"the tie-point layer has no field(s) {', '.join(missing)} (the matched position in the target "
            f"raster's pixels); its fields are: {', '.join(fields) or 'none'}. Use a layer made by "
            "'Extract tie points' or 'Co-register SAR to optical', or add these fields."
        )
    if len(ys) != len(xs):
        raise ValueError(f"x has {len(xs)} values but y has {len(ys)}")
    geom = np.column_stack([_numbers(xs, n, "x"), _numbers(ys, n, "y")]) if xs else np.full((n, 2), np.nan)
    field_map = _pair(fields, "X_MAP", "Y_MAP", n)
    map_xy = np.where(np.isfinite(geom).all(axis=1)[:, None], geom, field_map)
    if "OUTLIER" in fields:
        outlier = _flags(fields["OUTLIER"], n)
    else:
        outlier = _flags(fields.get("L1_OUTLIER"), n) | _flags(fields.get("L2_OUTLIER"), n)
    ids = _numbers(fields.get("POINT_ID"), n, "POINT_ID")
    point_id = np.where(np.isfinite(ids), ids, np.arange(n)).astype(np.int64)
    return TiePointTable(
        map_xy=map_xy,
        target_px=_pair(fields, target_fields[0], target_fields[1], n),
        outlier=outlier,
        point_id=point_id,
        ref_px=_pair(fields, "X_IM", "Y_IM", n),
        field_map_xy=field_map,
        residual_px=_pair(fields, "RES_X_PX", "RES_Y_PX", n),
        crs_wkt=crs_wkt or "",
    )


def layer_columns(path: str | Path, layer_name: str | None = None) -> tuple[PointColumns, str]:
    """Read any OGR point layer (GeoPackage, Shapefile, GeoJSON ...) as :data:`PointColumns`.

    Args:
        path: The vector file.
        layer_name: Layer to read; None for the first.

    Returns:
        ``(columns, crs_wkt)``; ``crs_wkt`` is "" for a layer without CRS (or with GeoPackage's
        undefined Cartesian SRS, which plain images get).

    Raises:
        FileNotFoundError: GDAL cannot open ``path``.
        KeyError: No such layer.
    """
    ds, layer = open_vector_layer(path, layer_name)
    defn = layer.GetLayerDefn()
    names = [defn.GetFieldDefn(k).GetName() for k in range(defn.GetFieldCount())]
    cols: PointColumns = {"x": [], "y": [], "fields": {name: [] for name in names}}
    for feat in layer:
        g = feat.GetGeometryRef()
        cols["x"].append(g.GetX() if g is not None and not g.IsEmpty() else None)
        cols["y"].append(g.GetY() if g is not None and not g.IsEmpty() else None)
        for name in names:
            cols["fields"][name].append(feat.GetField(name))
    srs = layer.GetSpatialRef()
    wkt = ""
    if srs is not None and not (srs.IsLocal() and "Undefined" in (srs.GetName() or "")):
        wkt = srs.ExportToWkt()
    return cols, wkt


def infer_reference_grid(table: TiePointTable, tolerance_px: float = 1e-3) -> Georef | None:
    """The reference pixel grid the tie points were measured on, from ``X_IM, Y_IM`` and ``X_MAP, Y_MAP``.

    A least-squares affine ``(col, row) -> (x, y)`` through the stored pairs. It is accepted
    when it reproduces every pair within ``tolerance_px`` reference pixels (the engine writes
    them from one geotransform, so they agree to rounding).

    Returns:
        The :class:`Georef` (``width = height = 0``: the grid's extent is not known), or None
        when the fields are missing, fewer than 3 points are usable, the points are collinear,
        or the pairs do not come from one affine grid.
    """
    ok = np.isfinite(table.ref_px).all(axis=1) & np.isfinite(table.field_map_xy).all(axis=1)
    if int(ok.sum()) < 3:
        return None
    px, mp = table.ref_px[ok], table.field_map_xy[ok]
    design = np.column_stack([px, np.ones(len(px))])
    if np.linalg.matrix_rank(design) < 3:
        return None
    coef, *_ = np.linalg.lstsq(design, mp, rcond=None)  # (3, 2): rows dx/col, dy/row, offset
    matrix = np.array([[coef[0, 0], coef[1, 0], coef[2, 0]], [coef[0, 1], coef[1, 1], coef[2, 1]], [0, 0, 1]])
    if abs(np.linalg.det(matrix[:2, :2])) < 1e-300:
        return None
    # Snap to the grid's own precision (a millionth of a pixel): the fit leaves ~1e-11 noise.
    digits = 6 - math.floor(math.log10(float(np.abs(matrix[:2, :2]).max())))
    gt = tuple(round(float(v), digits) + 0.0 for v in
               (matrix[0, 2], matrix[0, 0], matrix[0, 1], matrix[1, 2], matrix[1, 0], matrix[1, 1]))
    georef = Georef(tuple(float(v) for v in gt), table.crs_wkt, 0, 0)  # type: ignore[arg-type]
    err = georef.map_to_pixel(mp) - px
    if float(np.abs(err).max()) > tolerance_px:
        return None
    return georef


def to_tiepoints(table: TiePointTable, reference: Georef | None = None) -> TiePoints:
    """A :class:`TiePoints` for the core writers (``.points``, GCP VRT, report).

    Args:
        table: The tie points read from a layer.
        reference: Grid the reference pixel positions refer to. None: the grid from
            :func:`infer_reference_grid`, else map coordinates as "pixels" (identity
            geotransform), which keeps every map position exact.

    Returns:
        Tie points whose ``ref_xy`` is the map position on ``reference``'s grid, ``target_xy``
        the target pixel position, outliers as level-1 outliers; no shifts or scores.
    """
    reference = reference or infer_reference_grid(table) or Georef((0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
                                                                   table.crs_wkt, 0, 0)
    n = len(table)
    ref_xy = np.full((n, 2), np.nan)
    ok = np.isfinite(table.map_xy).all(axis=1)
    ref_xy[ok] = reference.map_to_pixel(table.map_xy[ok])
    return TiePoints(
        ref_xy=ref_xy,
        target_xy=table.target_px.copy(),
        shift_px=np.full((n, 2), np.nan),
        score=np.full(n, np.nan),
        reliability=np.full(n, np.nan),
        residual_px=table.residual_px.copy(),
        l1_outlier=table.outlier.copy(),
        l2_outlier=np.zeros(n, bool),
        errors=[""] * n,
        matcher="",
        window=0,
        reference=reference,
    )


# --------------------------------------------------------------------------------- GCP export
def export_gcps(
    table: TiePointTable,
    target_path: str | Path,
    *,
    points_path: str | Path | None = None,
    vrt_path: str | Path | None = None,
    include_outliers: bool = False,
) -> dict[str, Any]:
    """Write the tie points as GCPs: a QGIS ``.points`` file, a GDAL VRT, and ``-gcp`` text.

    Outliers are left out unless ``include_outliers``; then the ``.points`` file has them as
    disabled rows (``enable = 0``) and the VRT and the argument text carry them as GCPs (the
    VRT's GCP ``Info`` says "outlier").

    Args:
        table: The tie points.
        target_path: The raster ``TGT_X_IM, TGT_Y_IM`` refer to (the VRT wraps it; its
            georeferencing gives the ``.points`` source coordinates).
        points_path: ``.points`` file to write, or None.
        vrt_path: ``.vrt`` file to write, or None.
        include_outliers: Also export outliers (see above).

    Returns:
        ``{"n_gcps", "n_outliers", "n_failed", "gcp_args", "points", "vrt"}``: GCPs exported,
        outliers in the layer, rows without a position, the ``gdal_translate`` argument text,
        and the files written ("" when not asked for).

    Raises:
        ValueError: No usable tie point, or a CRS GDAL cannot parse.
        RasterInputError: The target raster cannot be read.
    """
    usable = table.usable(include_outliers)
    if not usable.any():
        raise ValueError(
            f"none of the {len(table)} tie points is usable as a GCP (all failed"
            + ("" if include_outliers else " or are flagged as outliers; include outliers to export them")
            + ")"
        )
    target = open_raster(target_path, role="target")
    tiepoints = to_tiepoints(table)
    result: dict[str, Any] = {
        "n_gcps": int(usable.sum()),
        "n_outliers": int(table.outlier.sum()),
        "n_failed": int((~table.usable(True)).sum()),
        "points": "",
        "vrt": "",
    }
    if points_path:
        write_points(points_path, tiepoints, target.georef, table.crs_wkt, include_outliers=include_outliers)
        result["points"] = str(points_path)
    if vrt_path:
        write_gcp_vrt(vrt_path, target.path, tiepoints, table.crs_wkt, include_outliers=include_outliers)
        result["vrt"] = str(vrt_path)
    result["gcp_args"] = gcp_translate_args(tiepoints, table.crs_wkt, include_outliers=include_outliers)
    return result


# --------------------------------------------------------------------------------- warping
def _transform_xy(xy: np.ndarray, src_wkt: str, dst_wkt: str) -> np.ndarray:
    """Map positions ``(N, 2)`` from one CRS to another (unchanged when either is empty or both agree)."""
    src, dst = srs_from_text(src_wkt), srs_from_text(dst_wkt)
    if src is None or dst is None or src.IsSame(dst):
        return xy
    ct = osr.CoordinateTransformation(src, dst)
    out = np.full_like(xy, np.nan)
    ok = np.isfinite(xy).all(axis=1)
    if ok.any():
        pts = np.asarray(ct.TransformPoints(xy[ok].tolist()), dtype=np.float64)
        out[ok] = pts[:, :2]
    return out


def _footprint_box(model: Any, width: int, height: int, n: int = 21) -> tuple[int, int, int, int]:
    """Whole-pixel box ``(c0, r0, w, h)`` on the grid covering the target's border mapped by ``model``."""
    t = np.linspace(0.0, 1.0, n)
    border = np.concatenate([
        np.column_stack([t * width, np.zeros(n)]),
        np.column_stack([t * width, np.full(n, float(height))]),
        np.column_stack([np.zeros(n), t * height]),
        np.column_stack([np.full(n, float(width)), t * height]),
    ])
    mapped = model.apply(border)
    mapped = mapped[np.isfinite(mapped).all(axis=1)]
    if len(mapped) == 0:
        raise ValueError("the fitted transform maps the target raster nowhere (no finite position)")
    c0, r0 = np.floor(mapped.min(axis=0)).astype(int)
    c1, r1 = np.ceil(mapped.max(axis=0)).astype(int)
    return int(c0), int(r0), int(c1 - c0), int(r1 - r0)


def _fit(table: TiePointTable, grid: Georef, use: np.ndarray, kind: str, threshold_px: float, seed: int,
         tps_smoothing: float) -> Any:
    ref_px = grid.map_to_pixel(table.map_xy[use])
    return fit_transform(table.target_px[use], ref_px, kind, threshold_px=threshold_px, seed=seed,
                         tps_smoothing=tps_smoothing)


def warp_with_tiepoints(
    table: TiePointTable,
    target_path: str | Path,
    out_path: str | Path,
    kind: str = "affine",
    *,
    reference_path: str | Path | None = None,
    include_outliers: bool = False,
    threshold_px: float = 2.0,
    seed: int = 0,
    tps_smoothing: float = 0.1,
    resampling: str = "bilinear",
) -> dict[str, Any]:
    """Fit a ``kind`` transform to the tie points and write the corrected target as a COG.

    The transform maps target pixels (``TGT_X_IM, TGT_Y_IM``) onto pixels of the *reference
    grid*: the reference raster's grid when ``reference_path`` is given (the output then covers
    the reference extent, as the engine's output does), else the grid recovered from the
    layer's ``X_IM, Y_IM`` / ``X_MAP, Y_MAP`` fields (the output then covers the target's
    footprint). The fit is robust (:func:`fit_transform`, threshold in reference pixels).
    Writing goes through :func:`sarcoreg.core.outputs.write_coregistered`: shift and affine in
    the target's own CRS only rewrite the geotransform; other transforms warp through GCPs
    sampled from the model.

    Args:
        table: The tie points (map positions in ``table.crs_wkt``).
        target_path: The raster to correct (the one ``TGT_X_IM, TGT_Y_IM`` refer to).
        out_path: Output GeoTIFF (Cloud-Optimised), written atomically.
        kind: One of :data:`sarcoreg.core.estimation.TRANSFORM_KINDS`.
        reference_path: Raster whose grid the output takes; None to use the layer's grid.
        include_outliers: Also use points flagged as outliers.
        threshold_px: Inlier threshold of the robust fit, reference pixels.
        seed: Seed of the robust fit.
        tps_smoothing: Thin-plate-spline smoothing (``tps`` only).
        resampling: GDAL resampling of warps.

    Returns:
        ``{"output", "how", "fit", "n_points", "n_used", "grid"}``: the file, "geotransform" or
        "warp", the fit summary (:meth:`FitResult.to_dict`), the layer's rows, the rows used,
        and the output grid (geotransform, size, CRS WKT).

    Raises:
        ValueError: Too few usable points for ``kind``, no reference grid (give a reference
            raster), or an output grid too large (the transform extrapolates wildly).
        RasterInputError: A raster cannot be read.
    """
    from .outputs import write_coregistered

    target = open_raster(target_path, role="target")
    use = table.usable(include_outliers)
    crs = table.crs_wkt
    if reference_path:
        reference = open_raster(reference_path, [1], role="reference")
        if not reference.georef.georeferenced:
            raise ValueError(f"reference raster '{reference_path}' has no georeferencing; it cannot give "
                             "the output grid")
        grid = reference.georef
        if reference.georef.crs_wkt and crs:
            table = _with_map_xy(table, _transform_xy(table.map_xy, crs, reference.georef.crs_wkt))
        crs = reference.georef.crs_wkt or crs
    else:
        inferred = infer_reference_grid(table)
        if inferred is None:
            raise ValueError(
                "the tie-point layer does not give its reference grid (fields X_IM, Y_IM, X_MAP, Y_MAP "
                "from one grid); give a reference raster for the output grid"
            )
        grid = inferred
    fit = _fit(table, grid, use, kind, threshold_px, seed, tps_smoothing)
    if reference_path:
        ref_src = reference
    else:
        c0, r0, w, h = _footprint_box(fit.model, target.width, target.height)
        if w * h > MAX_WARP_PIXELS or w <= 0 or h <= 0:
            raise ValueError(
                f"the '{kind}' transform maps the target onto {w} x {h} pixels: it extrapolates far beyond "
                "the tie points; use a simpler transform or give a reference raster for the output grid"
            )
        origin = grid.pixel_to_map(np.array([[c0, r0]], np.float64))[0]
        x0, dx, rx, y0, ry, dy = grid.geotransform
        grid = Georef((float(origin[0]), dx, rx, float(origin[1]), ry, dy), crs, w, h)
        fit = _fit(table, grid, use, kind, threshold_px, seed, tps_smoothing)  # in the output grid's pixels
        # An empty VRT of the output size stands for the reference: write_coregistered only reads
        # its size and georeferencing.
        ref_src = RasterSource("", gdal.GetDriverByName("VRT").Create("", w, h, 0), [], grid)
    common = CommonGrid(ref_src, target, target, (0, 0, ref_src.width, ref_src.height), "georeferenced")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    how = write_coregistered(out, common, fit, resampling)
    return {
        "output": str(out),
        "how": how,
        "fit": fit.to_dict(),
        "n_points": len(table),
        "n_used": int(use.sum()),
        "grid": {"geotransform": list(ref_src.georef.geotransform), "size": [ref_src.width, ref_src.height],
                 "crs_wkt": crs},
    }


def _with_map_xy(table: TiePointTable, map_xy: np.ndarray) -> TiePointTable:
    return TiePointTable(map_xy, table.target_px, table.outlier, table.point_id, table.ref_px,
                         np.full_like(map_xy, np.nan), table.residual_px, table.crs_wkt)


# --------------------------------------------------------------------------------- evaluation
def _pixel_transformer(ds: gdal.Dataset, path: str) -> tuple[gdal.Transformer, str]:
    """GDAL transformer pixel -> map of the raster's own georeferencing, and its CRS WKT."""
    gt = ds.GetGeoTransform(can_return_null=True)
    if gt is not None and gt != (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        return gdal.Transformer(ds, None, []), ds.GetProjection() or ""
    if ds.GetGCPCount() > 0:
        return gdal.Transformer(ds, None, []), ds.GetGCPProjection() or ""
    raise ValueError(f"raster '{path}' has no georeferencing (no geotransform and no GCPs): nothing to evaluate")


def _apply(transformer: gdal.Transformer, xy: np.ndarray, inverse: bool = False) -> np.ndarray:
    out = np.full_like(xy, np.nan, dtype=np.float64)
    ok = np.isfinite(xy).all(axis=1)
    if ok.any():
        res, success = transformer.TransformPoints(1 if inverse else 0, [(float(x), float(y), 0.0) for x, y in xy[ok]])
        arr = np.array([(r[0], r[1]) for r in res], dtype=np.float64)
        arr[~np.asarray(success, bool)] = np.nan
        out[ok] = arr
    return out


def checkpoints_from_points_file(
    path: str | Path, raster_path: str | Path, source_frame: str = "pixel"
) -> tuple[np.ndarray, np.ndarray, str]:
    """Check points from a QGIS ``.points`` file (enabled rows only).

    Args:
        path: The ``.points`` file: ``mapX, mapY`` = the true position (CRS of its ``#CRS:``
            line, else the raster's), ``sourceX, sourceY`` = the feature in the evaluated raster.
        raster_path: The evaluated raster.
        source_frame: How ``sourceX, sourceY`` are given: "pixel" = ``(col, -row)``, the QGIS
            Georeferencer convention for an image without georeferencing; "map" = map
            coordinates of the raster's own georeferencing (what sarcoreg and QGIS >= 3.26 write
            for a georeferenced source).

    Returns:
        ``(true_map_xy (N, 2), pixel_xy (N, 2), crs_text)``.

    Raises:
        ValueError: Bad file, unknown ``source_frame``, or no enabled row.
    """
    if source_frame not in ("pixel", "map"):
        raise ValueError(f"source_frame must be 'pixel' or 'map', got {source_frame!r}")
    crs_text, rows, enabled = read_points(path)
    rows = rows[enabled]
    if len(rows) == 0:
        raise ValueError(f"{path} has no enabled check point")
    if source_frame == "pixel":
        pixel = np.column_stack([rows[:, 2], -rows[:, 3]])
    else:
        ds = gdal.Open(str(raster_path))
        transformer, _ = _pixel_transformer(ds, str(raster_path))
        pixel = _apply(transformer, rows[:, 2:4], inverse=True)
    return rows[:, :2].copy(), pixel, crs_text


def evaluate_checkpoints(
    raster_path: str | Path,
    true_map_xy: np.ndarray,
    pixel_xy: np.ndarray,
    crs_wkt: str = "",
    *,
    point_ids: Sequence[Any] | None = None,
    report_html: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate the georeferencing of a raster against independent check points.

    A check point is a feature whose true map position is known (``true_map_xy``, in
    ``crs_wkt``) and whose pixel position in the evaluated raster is known (``pixel_xy``, GDAL
    convention). The raster's georeferencing (geotransform, or GCPs through GDAL's transformer)
    places that pixel at a map position; the check point's error is that position minus the
    true one, in the raster's CRS. For a raster corrected by a geotransform (shift / affine
    co-registration) the pixel positions are those in the original target; for a warped raster
    they must be measured on the warped raster.

    Args:
        raster_path: The evaluated raster (e.g. the co-registered output).
        true_map_xy: True positions ``(N, 2)``.
        pixel_xy: Positions of the same features in the raster's pixels ``(N, 2)``.
        crs_wkt: CRS of ``true_map_xy`` ("" = the raster's CRS); transformed when it differs.
        point_ids: Identifier per check point (default 0..N-1).
        report_html: HTML report to write (atomically), or None.

    Returns:
        ``{"n", "rmse", "rmse_x", "rmse_y", "ce90", "mean", "median", "max"}`` in map units of
        the raster's CRS, the same with ``_px`` (raster pixels), ``pixel_size``, ``crs_wkt``
        (the raster's), and ``points``: per-point lists ``id, pixel_x, pixel_y, true_x, true_y,
        est_x, est_y, dx, dy, error`` (positions in the raster's CRS). Rows with a missing
        coordinate are left out.

    Raises:
        ValueError: No georeferencing, shapes that differ, or no usable check point.
    """
    true_xy = np.asarray(true_map_xy, dtype=np.float64).reshape(-1, 2)
    pix = np.asarray(pixel_xy, dtype=np.float64).reshape(-1, 2)
    if true_xy.shape != pix.shape:
        raise ValueError(f"true_map_xy {true_xy.shape} and pixel_xy {pix.shape} differ in shape")
    ids = list(point_ids) if point_ids is not None else list(range(len(pix)))
    if len(ids) != len(pix):
        raise ValueError(f"point_ids has {len(ids)} values for {len(pix)} check points")
    ds = gdal.Open(str(raster_path))
    if ds is None:
        raise ValueError(f"GDAL cannot open the raster '{raster_path}'")
    transformer, raster_crs = _pixel_transformer(ds, str(raster_path))
    true_xy = _transform_xy(true_xy, crs_wkt, raster_crs)
    est = _apply(transformer, pix)
    ok = np.isfinite(est).all(axis=1) & np.isfinite(true_xy).all(axis=1)
    if not ok.any():
        raise ValueError(f"none of the {len(pix)} check points has a usable position")
    centre = np.array([[ds.RasterXSize / 2, ds.RasterYSize / 2]], np.float64)
    probe = _apply(transformer, np.concatenate([centre, centre + [1.0, 0.0], centre + [0.0, 1.0]]))
    pixel_size = float((np.hypot(*(probe[1] - probe[0])) + np.hypot(*(probe[2] - probe[0]))) / 2.0)
    err = est[ok] - true_xy[ok]
    stats = radial_stats(err)
    result: dict[str, Any] = {k: json_float(v) for k, v in stats.items() if k != "n"}
    result["n"] = int(stats["n"])
    result.update({f"{k}_px": json_float(stats[k] / pixel_size) for k in
                   ("rmse", "rmse_x", "rmse_y", "ce90", "mean", "median", "max")})
    result["pixel_size"] = pixel_size
    result["crs_wkt"] = raster_crs
    result["n_skipped"] = int((~ok).sum())
    result["points"] = {
        "id": [ids[i] for i in np.flatnonzero(ok)],
        "pixel_x": pix[ok, 0].tolist(), "pixel_y": pix[ok, 1].tolist(),
        "true_x": true_xy[ok, 0].tolist(), "true_y": true_xy[ok, 1].tolist(),
        "est_x": est[ok, 0].tolist(), "est_y": est[ok, 1].tolist(),
        "dx": err[:, 0].tolist(), "dy": err[:, 1].tolist(), "error": np.hypot(err[:, 0], err[:, 1]).tolist(),
    }
    if report_html:
        _write_evaluation_html(Path(report_html), str(raster_path), ds, raster_crs, true_xy[ok], pix[ok],
                               err / pixel_size, result)
    return result


def _write_evaluation_html(path: Path, raster_path: str, ds: gdal.Dataset, crs: str, true_xy: np.ndarray,
                           pix: np.ndarray, err_px: np.ndarray, result: dict[str, Any]) -> None:
    """Write the check-point report with the engine's report writer.

    Each check point becomes a "tie point" at its true position whose shift and residual are its
    error in raster pixels.
    """
    gt = ds.GetGeoTransform(can_return_null=True)
    georef = (Georef(tuple(float(v) for v in gt), crs, ds.RasterXSize, ds.RasterYSize)  # type: ignore[arg-type]
              if gt is not None else Georef.plain(ds.RasterXSize, ds.RasterYSize))
    n = len(pix)
    tp = TiePoints(
        ref_xy=georef.map_to_pixel(true_xy) if gt is not None else pix.copy(),
        target_xy=pix, shift_px=err_px, score=np.full(n, np.nan), reliability=np.ones(n),
        residual_px=err_px, l1_outlier=np.zeros(n, bool), l2_outlier=np.zeros(n, bool), errors=[""] * n,
        matcher="check points", window=0, reference=georef,
    )
    report = {
        "method": "independent check points",
        "transform": {"type": "as georeferenced in the raster"},
        "rmse_px": result["rmse_px"], "rmse_map": result["rmse"], "ce90_px": result["ce90_px"],
        "n_tiepoints": result["n"], "n_inliers": result["n"],
        "raster": raster_path, "ce90_map": result["ce90"], "rmse_x_map": result["rmse_x"],
        "rmse_y_map": result["rmse_y"], "mean_error_map": result["mean"], "max_error_map": result["max"],
        "pixel_size": result["pixel_size"], "check_points_skipped": result["n_skipped"],
    }
    text = render_report_html(report, tp, checkerboard_before=None, checkerboard_after=None,
                              title="sarcoreg check-point evaluation")
    atomic_write_text(path, text)


# --------------------------------------------------------------------------------- worker jobs
def _table(params: Mapping[str, Any]) -> TiePointTable:
    if params.get("layer_path"):
        columns, wkt = layer_columns(params["layer_path"], params.get("layer_name"))
        return table_from_columns(columns, params.get("crs_wkt") or wkt)
    return table_from_columns(params.get("columns") or {}, params.get("crs_wkt") or "")


def export_gcps_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Worker job ``export_gcps``: parameters in, :func:`export_gcps` result out.

    Params: ``columns`` (or ``layer_path``), ``crs_wkt``, ``target``, ``points``, ``vrt``,
    ``include_outliers``.
    """
    if not params.get("target"):
        raise ValueError("export_gcps job needs 'target'")
    progress.report(0.1, "reading tie points")
    table = _table(params)
    progress.report(0.3, "writing GCPs")
    out = export_gcps(table, params["target"], points_path=params.get("points") or None,
                      vrt_path=params.get("vrt") or None, include_outliers=bool(params.get("include_outliers")))
    progress.report(1.0, f"{out['n_gcps']} GCPs exported")
    return out


def warp_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Worker job ``warp_tiepoints``: parameters in, :func:`warp_with_tiepoints` result out.

    Params: ``columns`` (or ``layer_path``), ``crs_wkt``, ``target``, ``output``, ``transform``,
    ``reference``, ``include_outliers``, ``threshold_px``, ``seed``, ``resampling``.
    """
    for key in ("target", "output"):
        if not params.get(key):
            raise ValueError(f"warp_tiepoints job needs '{key}'")
    progress.report(0.1, "reading tie points")
    table = _table(params)
    progress.report(0.3, "fitting and warping")
    out = warp_with_tiepoints(
        table, params["target"], params["output"], str(params.get("transform", "affine")),
        reference_path=params.get("reference") or None,
        include_outliers=bool(params.get("include_outliers")),
        threshold_px=float(params.get("threshold_px", 2.0)), seed=int(params.get("seed", 0)),
        tps_smoothing=float(params.get("tps_smoothing", 0.1)), resampling=str(params.get("resampling", "bilinear")),
    )
    progress.report(1.0, f"written ({out['how']})")
    return out


def evaluate_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Worker job ``evaluate``: parameters in, :func:`evaluate_checkpoints` result out.

    Params: ``raster``, ``report_html``, and either ``true_xy``, ``pixel_xy``, ``ids``,
    ``crs_wkt`` (a layer read in QGIS) or ``points_file``, ``source_frame``.
    """
    if not params.get("raster"):
        raise ValueError("evaluate job needs 'raster'")
    progress.report(0.1, "reading check points")
    if params.get("points_file"):
        true_xy, pixel, crs = checkpoints_from_points_file(params["points_file"], params["raster"],
                                                           str(params.get("source_frame", "pixel")))
        ids: list[Any] | None = None
    else:
        true_xy = np.asarray(params.get("true_xy") or [], dtype=np.float64).reshape(-1, 2)
        pixel = np.asarray(params.get("pixel_xy") or [], dtype=np.float64).reshape(-1, 2)
        pixel[pixel == NODATA_VALUE] = np.nan  # failed tie points used as check points
        crs, ids = str(params.get("crs_wkt") or ""), params.get("ids")
        if len(true_xy) == 0:
            raise ValueError("no check points given")
    out = evaluate_checkpoints(params["raster"], true_xy, pixel, crs, point_ids=ids,
                               report_html=params.get("report_html") or None)
    progress.report(1.0, f"{out['n']} check points, RMSE {out['rmse']:.3f}")
    return out
