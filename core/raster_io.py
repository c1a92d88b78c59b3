"""Raster input for the engine: GDAL datasets, windowed reads, masks, and the common grid.

Everything is read in windows (or decimated overviews), so a 10980 x 10980 scene is never held
whole in memory. The target is brought onto the reference grid lazily through a GDAL warped VRT
(different CRS, resolution or GCP georeferencing), and a GDAL transformer maps positions on the
reference grid back to the original target's pixels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from .decimation import OverviewBase, base_factor, build_base
from .georef import Georef

__all__ = ["RasterSource", "CommonGrid", "open_raster", "common_grid", "RasterInputError"]

gdal.UseExceptions()
log = logging.getLogger("sarcoreg.raster_io")
if "GDAL_CACHEMAX" not in os.environ:
    # GDAL's default block cache is 5 % of RAM; 256 MiB is plenty for windowed matching and keeps
    # a tile-sized run's memory bounded on small machines.
    gdal.SetCacheMax(256 * 1024 * 1024)


class RasterInputError(ValueError):
    """An input raster cannot be used; the message names the file and what to do."""


@dataclass
class RasterSource:
    """An opened raster with the bands the engine will use.

    Attributes:
        path: File name (or any GDAL dataset name).
        dataset: The open GDAL dataset (or a warped VRT of it).
        bands: 1-based band numbers used.
        georef: Georeferencing of ``dataset`` (``Georef.plain`` when it has none).
        has_gcps: The raster is georeferenced by GCPs rather than a geotransform.
        alpha_band: 1-based alpha band that masks every band (warped VRTs), or None.
        role: "reference", "target" or "raster": named in error messages.
    """

    path: str
    dataset: gdal.Dataset
    bands: list[int]
    georef: Georef
    has_gcps: bool = False
    alpha_band: int | None = None
    role: str = "raster"
    _overviews: dict[tuple[int, tuple[int, int, int, int], bool], tuple[np.ndarray, float]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _base: OverviewBase | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.dataset.RasterXSize)

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.dataset.RasterYSize)

    @property
    def dtype_name(self) -> str:
        """GDAL data type name of the first used band."""
        return str(gdal.GetDataTypeName(self.dataset.GetRasterBand(self.bands[0]).DataType))

    def read(
        self,
        x0: int,
        y0: int,
        w: int,
        h: int,
        out_shape: tuple[int, int] | None = None,
        average: bool = True,
    ) -> np.ndarray:
        """:meth:`_read`, with GDAL read failures turned into an error naming the role and the file.

        Raises:
            RasterInputError: GDAL cannot read the pixels (a damaged or truncated file); GDAL's
                own message follows on a second line.
        """
        try:
            return self._read(x0, y0, w, h, out_shape, average)
        except RuntimeError as exc:
            raise RasterInputError(
                f"the {self.role} raster '{self.path}' is damaged or incomplete: GDAL could not read its pixels "
                f"(a truncated download or copy?). Download or export it again.\nGDAL: {exc}"
            ) from None

    def _read(
        self,
        x0: int,
        y0: int,
        w: int,
        h: int,
        out_shape: tuple[int, int] | None = None,
        average: bool = True,
    ) -> np.ndarray:
        """Read a window of the used bands as float32, NaN where masked (nodata, alpha, outside).

        The window may reach outside the raster: those pixels are NaN.

        Args:
            x0: Left pixel column of the window (may be negative).
            y0: Top pixel row of the window (may be negative).
            w: Window width in pixels.
            h: Window height in pixels.
            out_shape: ``(rows, cols)`` to read decimated; default full resolution.
            average: Decimate by averaging (smooth overviews for matching) rather than by
                picking pixels (keeps speckle statistics for modality detection).

        Returns:
            ``(B, rows, cols)`` float32.
        """
        rows, cols = out_shape or (h, w)
        out = np.full((len(self.bands), rows, cols), np.nan, np.float32)
        # Part of the window inside the raster, and where it lands in the output.
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x0 + w, self.width), min(y0 + h, self.height)
        if ix1 <= ix0 or iy1 <= iy0:
            return out
        sx, sy = cols / w, rows / h
        ox0, oy0 = int(round((ix0 - x0) * sx)), int(round((iy0 - y0) * sy))
        ox1, oy1 = int(round((ix1 - x0) * sx)), int(round((iy1 - y0) * sy))
        if ox1 <= ox0 or oy1 <= oy0:
            return out
        bw, bh = ox1 - ox0, oy1 - oy0
        decimating = bw < ix1 - ix0 or bh < iy1 - iy0
        resample = gdal.GRIORA_Average if (decimating and average) else gdal.GRIORA_NearestNeighbour
        alpha = None
        if self.alpha_band is not None:
            alpha = self.dataset.GetRasterBand(self.alpha_band).ReadAsArray(
                ix0, iy0, ix1 - ix0, iy1 - iy0, buf_xsize=bw, buf_ysize=bh,
                resample_alg=gdal.GRIORA_NearestNeighbour)
        for k, b in enumerate(self.bands):
            band = self.dataset.GetRasterBand(b)
            data = band.ReadAsArray(ix0, iy0, ix1 - ix0, iy1 - iy0, buf_xsize=bw, buf_ysize=bh,
                                    resample_alg=resample).astype(np.float32)
            mask_band = band.GetMaskBand()
            if band.GetMaskFlags() != gdal.GMF_ALL_VALID:
                mask = mask_band.ReadAsArray(ix0, iy0, ix1 - ix0, iy1 - iy0, buf_xsize=bw, buf_ysize=bh)
                data[mask == 0] = np.nan
            nodata = band.GetNoDataValue()
            if nodata is not None and not np.isnan(nodata):
                data[data == np.float32(nodata)] = np.nan
            if alpha is not None:
                data[alpha == 0] = np.nan
            out[k, oy0:oy1, ox0:ox1] = data
        return out

    def read_overview(self, max_side: int, window: tuple[int, int, int, int] | None = None,
                      average: bool = True) -> tuple[np.ndarray, float]:
        """A decimated read of ``window`` (default: whole raster) whose longer side is <= max_side.

        A large raster without internal overviews is read once, whole, into a decimated base
        (:mod:`~sarcoreg.core.decimation`) that serves every overview coarser than its cells;
        finer ones, small rasters and rasters with overviews are read through GDAL.

        Returns:
            ``((B, rows, cols) float32, factor)`` where ``factor`` is full-resolution pixels per
            overview pixel.
        """
        x0, y0, w, h = window or (0, 0, self.width, self.height)
        key = (max_side, (x0, y0, w, h), average)
        if key in self._overviews:  # each overview is one full pass over a large raster: keep it
            return self._overviews[key]
        factor = max(1.0, max(w, h) / float(max_side))
        shape = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
        base = self.overview_base((x0, y0, w, h), shape)
        if base is not None:
            ov = base.overview((x0, y0, w, h), shape, average)
        else:
            ov = self.read(x0, y0, w, h, out_shape=shape, average=average)
        self._overviews[key] = (ov, factor)
        return self._overviews[key]

    def overview_base(self, window: tuple[int, int, int, int] | None = None,
                      shape: tuple[int, int] | None = None) -> OverviewBase | None:
        """The decimated base of this raster (read on first use), or None where GDAL reads are cheaper.

        Args:
            window: With ``shape``: return the base only if that overview is no finer than its
                cells; without: the base whenever the raster gets one.
            shape: ``(rows, cols)`` of the overview wanted.

        Returns:
            None for a raster no larger than :data:`~sarcoreg.core.decimation.BASE_SIDE`, one
            with internal overviews (GDAL reads those cheaply), or when the base is too coarse
            for the overview asked for.
        """
        k = base_factor(self.width, self.height)
        if k < 2 or self.dataset.GetRasterBand(self.bands[0]).GetOverviewCount() > 0:
            return None
        if window is not None and shape is not None:
            _, _, w, h = window
            if w / shape[1] < k or h / shape[0] < k:
                return None
        if self._base is None:
            self._base = build_base(lambda y, rows: self.read(0, y, self.width, rows), self.width, self.height,
                                    len(self.bands), k)
        return self._base


def _georef_of(ds: gdal.Dataset) -> tuple[Georef, bool]:
    gt = ds.GetGeoTransform(can_return_null=True)
    wkt = ds.GetProjection() or ""
    if gt is not None and gt != (0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        return Georef(tuple(float(v) for v in gt), wkt, ds.RasterXSize, ds.RasterYSize), False  # type: ignore[arg-type]
    has_gcps = ds.GetGCPCount() > 0
    return Georef.plain(ds.RasterXSize, ds.RasterYSize), has_gcps


def open_raster(path: str | Path, bands: Sequence[int] | None = None, role: str = "raster") -> RasterSource:
    """Open ``path`` with GDAL and check the requested bands.

    Args:
        path: Anything GDAL opens (GeoTIFF, JP2, PNG/JPG, VRT, SAFE ...).
        bands: 1-based band numbers; default all bands (an alpha band is left out).
        role: "reference" or "target", used in error messages.

    Raises:
        RasterInputError: the file is missing, unreadable, or a band does not exist.
    """
    p = str(path)
    if "://" not in p and not p.startswith("/vsi") and not Path(p).exists():
        raise RasterInputError(f"{role} raster '{p}' does not exist")
    try:
        ds = gdal.Open(p, gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise RasterInputError(
            f"the {role} raster '{p}' is damaged or incomplete (or not a raster format GDAL reads): GDAL cannot "
            f"open it. Download or export it again, or convert it to GeoTIFF.\nGDAL: {exc}"
        ) from None
    if ds is None or ds.RasterCount == 0:
        raise RasterInputError(f"{role} raster '{p}' has no raster bands (is it a vector file?)")
    if bands:
        bad = [b for b in bands if not 1 <= int(b) <= ds.RasterCount]
        if bad:
            raise RasterInputError(
                f"{role} raster '{p}' has {ds.RasterCount} band(s); band(s) {bad} do not exist "
                f"(bands are numbered from 1)"
            )
        use = [int(b) for b in bands]
    else:
        use = [b for b in range(1, ds.RasterCount + 1)
               if ds.GetRasterBand(b).GetColorInterpretation() != gdal.GCI_AlphaBand] or [1]
    georef, has_gcps = _georef_of(ds)
    return RasterSource(p, ds, use, georef, has_gcps, role=role)


@dataclass
class CommonGrid:
    """The reference grid shared by both images, and the mapping back to the target's pixels.

    Attributes:
        reference: The reference raster.
        target: The original target raster.
        target_on_grid: The target resampled onto the reference grid (a lazy warped VRT, or the
            target itself when both are plain images or already on the same grid).
        overlap: ``(x0, y0, w, h)`` window of the reference grid covered by both images.
        mode: "georeferenced" (map coordinates relate the two) or "pixel" (plain images, or a
            reference without georeferencing: everything is in the reference's pixels).
        assumed_crs_wkt: CRS taken for the reference grid's map coordinates when the reference
            has a geotransform but no CRS and the target has one ("" otherwise); see
            :attr:`crs_wkt`.
        warnings: What was assumed about the georeferencing, in plain words (the engine copies
            them into ``report["warnings"]``).
        target_to_grid_affine: ``3 x 3`` matrix mapping original target pixels to reference-grid
            pixels when that mapping is affine (same CRS, geotransforms, no GCPs), else None;
            the identity when there is no transformer (same grid or pixel mode).
    """

    reference: RasterSource
    target: RasterSource
    target_on_grid: RasterSource
    overlap: tuple[int, int, int, int]
    mode: str
    _transformer: gdal.Transformer | None = field(default=None, repr=False)
    assumed_crs_wkt: str = ""
    warnings: list[str] = field(default_factory=list)
    target_to_grid_affine: np.ndarray | None = field(default=None, repr=False)

    @property
    def crs_wkt(self) -> str:
        """CRS of the reference grid's map coordinates: the reference's, else the assumed one, else ""."""
        return self.reference.georef.crs_wkt or self.assumed_crs_wkt

    @property
    def reference_georef(self) -> Georef:
        """The reference's georeferencing with :attr:`crs_wkt` as its CRS (what the outputs carry)."""
        return replace(self.reference.georef, crs_wkt=self.crs_wkt)

    def target_to_grid_matrix(self) -> np.ndarray | None:
        """``3 x 3`` affine matrix original target pixel -> reference-grid pixel, or None when not affine.

        The identity without a transformer (target already on the grid, or pixel mode), the
        product ``inv(reference geotransform) @ target geotransform`` for a target in the same
        CRS with a geotransform, None for another CRS or GCP georeferencing (use
        :meth:`target_to_grid`).
        """
        if self._transformer is None:
            return np.eye(3)
        return None if self.target_to_grid_affine is None else np.array(self.target_to_grid_affine, np.float64)

    def grid_to_target(self, xy: np.ndarray) -> np.ndarray:
        """Reference-grid pixel ``(N, 2)`` -> original target pixel ``(N, 2)`` (NaN stays NaN)."""
        return self._transform(xy, to_target=True)

    def target_to_grid(self, xy: np.ndarray) -> np.ndarray:
        """Original target pixel ``(N, 2)`` -> reference-grid pixel ``(N, 2)``."""
        return self._transform(xy, to_target=False)

    def _transform(self, xy: np.ndarray, to_target: bool) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self._transformer is None:
            return xy.copy()
        out = np.full_like(xy, np.nan)
        ok = np.isfinite(xy).all(axis=1)
        if ok.any():
            pts = [(float(x), float(y), 0.0) for x, y in xy[ok]]
            # The transformer goes target (source) -> reference (destination).
            res, success = self._transformer.TransformPoints(1 if to_target else 0, pts)
            arr = np.array([(r[0], r[1]) for r in res], dtype=np.float64)
            arr[~np.asarray(success, bool)] = np.nan
            out[ok] = arr
        return out


def _crs_of(src: RasterSource) -> str:
    """CRS WKT of a raster's georeferencing (its GCPs' projection for GCP rasters); "" for none."""
    if src.has_gcps:
        return str(src.dataset.GetGCPProjection() or "")
    return src.georef.crs_wkt if src.georef.georeferenced else ""


def _is_georeferenced(src: RasterSource) -> bool:
    """The raster has a geotransform or GCPs (with or without a CRS)."""
    return src.has_gcps or src.georef.georeferenced


def common_grid(reference: RasterSource, target: RasterSource, resample: str = "bilinear") -> CommonGrid:
    """Bring ``target`` onto ``reference``'s grid (lazily) and find the overlap.

    How the georeferencing is used:

    * Both georeferenced (geotransform or GCPs) with a CRS: the target is warped (VRT, on
      demand) into the reference CRS and grid; the overlap is where both have data footprints.
    * One of them has a geotransform (or GCPs) but no CRS: it is taken to be in the other's CRS,
      with a warning; neither has a CRS: both geotransforms are taken to be in one CRS, with a
      warning. The grid is then georeferenced as above (no CRS is made up for the outputs when
      neither has one).
    * The reference has no georeferencing at all (a plain image): the rasters are matched in
      pixel coordinates (mode "pixel", a warning when the target is georeferenced); everything,
      the co-registered raster included, is in the reference's pixels (the plain-image
      convention map ``x = col, y = -row``) without a CRS. The target's georeferencing is not
      carried over onto the reference: nothing ties the two, and a grid made up from it would
      look georeferenced while it is not.
    * The target has no georeferencing at all: pixel mode too, with a warning when the
      reference is georeferenced (the outputs are on the reference grid, in its CRS).

    Raises:
        RasterInputError: the footprints do not overlap, or a CRS cannot be used.
    """
    warnings: list[str] = []
    if _is_georeferenced(reference) and _is_georeferenced(target):
        ref_crs, tgt_crs = _crs_of(reference), _crs_of(target)
        common, assumed = ref_crs or tgt_crs, ""
        if ref_crs and not tgt_crs:
            warnings.append(f"the target raster '{target.path}' has georeferencing but no CRS: it is taken to be "
                            "in the reference's CRS (assign its CRS if that is wrong)")
        elif tgt_crs and not ref_crs:
            assumed = tgt_crs
            warnings.append(f"the reference raster '{reference.path}' has georeferencing but no CRS: it is taken to "
                            "be in the target's CRS, and the outputs carry that CRS (assign its CRS if that is wrong)")
        elif not ref_crs and not tgt_crs:
            warnings.append("neither raster has a CRS: their geotransforms are taken to be in one and the same "
                            "(unnamed) CRS; the outputs carry no CRS")
        for message in warnings:
            log.warning(message)
        same_crs = not (ref_crs and tgt_crs) or _same_crs(tgt_crs, ref_crs)
        same_grid = (not target.has_gcps and target.georef.geotransform == reference.georef.geotransform
                     and target.width == reference.width and target.height == reference.height and same_crs)
        affine: np.ndarray | None = None
        if same_grid:
            on_grid, transformer = target, None
        else:
            on_grid = _warped_onto(reference, target, resample, tgt_crs or common, common)
            srs_options = [f"{key}={wkt}" for key, wkt in (("SRC_SRS", tgt_crs or common), ("DST_SRS", common))
                           if wkt]
            transformer = gdal.Transformer(target.dataset, reference.dataset, srs_options)
            if same_crs and not target.has_gcps and not reference.has_gcps:
                affine = np.linalg.inv(reference.georef.matrix) @ target.georef.matrix
        prefetch_overview_bases(reference, on_grid)
        overlap = _overlap_window(reference, on_grid, target)
        return CommonGrid(reference, target, on_grid, overlap, "georeferenced", transformer,
                          assumed_crs_wkt=assumed, warnings=warnings, target_to_grid_affine=affine)
    if _is_georeferenced(target):
        warnings.append(
            f"the reference raster '{reference.path}' has no georeferencing: the rasters are matched in pixel "
            "coordinates (column, row) and the outputs are in the reference's pixel coordinates without a CRS; "
            "the target's georeferencing is not used")
    elif _is_georeferenced(reference):
        warnings.append(
            f"the target raster '{target.path}' has no georeferencing: both rasters are matched in pixel "
            "coordinates (column, row), the target's pixel (0, 0) on the reference's pixel (0, 0)")
    for message in warnings:
        log.warning(message)
    prefetch_overview_bases(reference, target)
    for src, role in ((reference, "reference"), (target, "target")):
        _require_valid_pixels(src, role)  # pixel mode has no overlap search that would find it
    w, h = min(reference.width, target.width), min(reference.height, target.height)
    return CommonGrid(reference, target, target, (0, 0, w, h), "pixel", None, warnings=warnings)


def prefetch_overview_bases(*sources: RasterSource) -> None:
    """Read the decimated bases of ``sources`` (those that get one) at the same time, one thread each.

    Each is a full pass over a large raster; GDAL decompresses (and warps) without holding the
    GIL, so two passes take about as long as one on two cores. The sources must not share a GDAL
    dataset handle (a warped VRT of the target and the reference do not).
    """
    todo = list({id(s): s for s in sources if s._base is None}.values())
    _in_parallel(*(src.overview_base for src in todo))


def _in_parallel(*calls: Callable[[], object]) -> None:
    """Run ``calls`` in threads of their own (inline when there is one); re-raise the first error."""
    if len(calls) < 2:
        for call in calls:
            call()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="sarcoreg-overview") as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def _same_crs(a: str, b: str) -> bool:
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def _warped_onto(reference: RasterSource, target: RasterSource, resample: str, src_crs: str = "",
                 dst_crs: str = "") -> RasterSource:
    """The target warped (lazily, a VRT) onto the reference grid.

    Args:
        reference: The reference raster (north-up geotransform).
        target: The target raster.
        resample: GDAL resampling name.
        src_crs: CRS of the target's georeferencing ("" for none: then ``dst_crs`` is not used
            either, and the geotransforms alone relate the two).
        dst_crs: CRS of the reference grid.
    """
    x0, dx, _, y0, _, dy = reference.georef.geotransform
    srs: dict[str, str] = {"srcSRS": src_crs, "dstSRS": dst_crs} if src_crs and dst_crs else {}
    options = gdal.WarpOptions(
        format="VRT",
        **srs,
        outputBounds=(x0, y0 + dy * reference.height, x0 + dx * reference.width, y0),
        width=reference.width,
        height=reference.height,
        resampleAlg=resample,
        dstAlpha=True,
        multithread=False,
    )
    if reference.georef.geotransform[2] or reference.georef.geotransform[4]:
        raise RasterInputError(
            f"reference raster '{reference.path}' has a rotated geotransform; warp it north-up first "
            "(gdalwarp) and use that as the reference"
        )
    # Only the used bands (WarpOptions' srcBands needs GDAL >= 3.7).
    source = target.dataset
    if target.bands != list(range(1, target.dataset.RasterCount + 1)):
        source = gdal.Translate("", target.dataset, format="VRT", bandList=target.bands)
    try:
        vrt = gdal.Warp("", source, options=options)
    except RuntimeError as exc:
        raise RasterInputError(
            f"cannot bring the target '{target.path}' onto the reference grid of '{reference.path}': {exc}"
        ) from None
    n = len(target.bands)
    georef, _ = _georef_of(vrt)
    return RasterSource(f"{target.path} (on the reference grid)", vrt, list(range(1, n + 1)), georef,
                        alpha_band=n + 1, role=target.role)


def _require_valid_pixels(src: RasterSource, role: str) -> None:
    """Raise when ``src`` has no valid pixel at all (every pixel nodata, NaN or masked).

    The decimated overview (already read) is checked first; only when it has no valid pixel is
    the raster scanned at full resolution, in strips, to be sure.

    Raises:
        RasterInputError: No valid pixel; the message names the role, the bands and the nodata value.
    """
    ov, _ = src.read_overview(512)
    if np.isfinite(ov).any():
        return
    step = max(1, 4_000_000 // max(1, src.width * len(src.bands)))
    for y in range(0, src.height, step):
        if np.isfinite(src.read(0, y, src.width, min(step, src.height - y))).any():
            return
    band = src.dataset.GetRasterBand(src.bands[0])
    nodata = band.GetNoDataValue()
    if nodata is None:
        what = "NaN (no nodata value is set)"
    elif np.isnan(nodata):
        what = "NaN, its nodata value"
    else:
        what = f"the nodata value {nodata:g}"
    flags = band.GetMaskFlags()
    if flags & (gdal.GMF_PER_DATASET | gdal.GMF_ALPHA) and not flags & gdal.GMF_NODATA:
        what += " or masked by its mask / alpha band"
    bands = ", ".join(str(b) for b in src.bands)
    raise RasterInputError(
        f"the {role} raster '{src.path}' has no valid pixels: every pixel of band(s) {bands} is {what}. Check that "
        "the right file and bands were chosen and that its nodata value is right (gdalinfo -stats), or use "
        "another raster."
    )


def _overlap_window(reference: RasterSource, on_grid: RasterSource, target: RasterSource | None = None
                    ) -> tuple[int, int, int, int]:
    """Bounding window of reference pixels where the warped target has data.

    Raises:
        RasterInputError: The reference or the target (``target``: the original, else
            ``on_grid``) has no valid pixel at all, or their footprints do not overlap.
    """
    ov, factor = on_grid.read_overview(512)
    valid = np.isfinite(ov).any(axis=0)
    ref_ov, rfactor = reference.read_overview(512)
    ref_valid = np.isfinite(ref_ov).any(axis=0)
    if ref_valid.shape == valid.shape:
        valid &= ref_valid
    if not valid.any():
        # Say so when one of them has no valid pixel at all: that is not an overlap problem.
        _require_valid_pixels(reference, "reference")
        _require_valid_pixels(target or on_grid, "target")
        raise RasterInputError(
            f"the target '{on_grid.path}' and the reference '{reference.path}' do not overlap "
            "(after reprojection into the reference CRS their data footprints share no pixel); "
            "check that you picked the right pair and that both CRSs are right"
        )
    rows, cols = np.nonzero(valid)
    x0 = int(np.floor(cols.min() * factor))
    y0 = int(np.floor(rows.min() * factor))
    x1 = int(min(reference.width, np.ceil((cols.max() + 1) * factor)))
    y1 = int(min(reference.height, np.ceil((rows.max() + 1) * factor)))
    return x0, y0, x1 - x0, y1 - y0
