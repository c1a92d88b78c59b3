"""Raster input for the engine: GDAL datasets, windowed reads, masks, and the common grid.

Everything is read in windows (or decimated overviews), so a 10980 x 10980 scene is never held
whole in memory. The target is brought onto the reference grid lazily through a GDAL warped VRT
(different CRS, resolution or GCP georeferencing), and a GDAL transformer maps positions on the
reference grid back to the original target's pixels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

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
        self._overviews[key] = (self.read(x0, y0, w, h, out_shape=shape, average=average), factor)
        return self._overviews[key]


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


def _has_crs(src: RasterSource) -> bool:
    if src.has_gcps:
        return bool(src.dataset.GetGCPProjection())
    return src.georef.georeferenced and bool(src.georef.crs_wkt)


@dataclass
class CommonGrid:
    """The reference grid shared by both images, and the mapping back to the target's pixels.

    Attributes:
        reference: The reference raster.
        target: The original target raster.
        target_on_grid: The target resampled onto the reference grid (a lazy warped VRT, or the
            target itself when both are plain images or already on the same grid).
        overlap: ``(x0, y0, w, h)`` window of the reference grid covered by both images.
        mode: "georeferenced" (map coordinates relate the two) or "pixel" (plain images).
    """

    reference: RasterSource
    target: RasterSource
    target_on_grid: RasterSource
    overlap: tuple[int, int, int, int]
    mode: str
    _transformer: gdal.Transformer | None = field(default=None, repr=False)

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


def common_grid(reference: RasterSource, target: RasterSource, resample: str = "bilinear") -> CommonGrid:
    """Bring ``target`` onto ``reference``'s grid (lazily) and find the overlap.

    Both georeferenced with a CRS: the target is warped (VRT, on demand) into the reference CRS
    and grid; the overlap is where both have data footprints. Otherwise both are treated as
    plain images in pixel coordinates (a warning says so when only one is georeferenced).

    Raises:
        RasterInputError: the footprints do not overlap, or a CRS cannot be used.
    """
    ref_crs, tgt_crs = _has_crs(reference), _has_crs(target)
    if ref_crs and tgt_crs:
        same_grid = (not target.has_gcps and target.georef.geotransform == reference.georef.geotransform
                     and target.width == reference.width and target.height == reference.height
                     and _same_crs(target.georef.crs_wkt, reference.georef.crs_wkt))
        if same_grid:
            on_grid, transformer = target, None
        else:
            on_grid = _warped_onto(reference, target, resample)
            transformer = gdal.Transformer(target.dataset, reference.dataset, [])
        overlap = _overlap_window(reference, on_grid, target)
        return CommonGrid(reference, target, on_grid, overlap, "georeferenced", transformer)
    if ref_crs != tgt_crs:
        which = "reference" if not ref_crs else "target"
        log.warning("the %s raster has no usable georeferencing: both rasters are matched in "
                    "pixel coordinates (column, row)", which)
    w, h = min(reference.width, target.width), min(reference.height, target.height)
    return CommonGrid(reference, target, target, (0, 0, w, h), "pixel", None)


def _same_crs(a: str, b: str) -> bool:
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def _warped_onto(reference: RasterSource, target: RasterSource, resample: str) -> RasterSource:
    x0, dx, _, y0, _, dy = reference.georef.geotransform
    options = gdal.WarpOptions(
        format="VRT",
        dstSRS=reference.georef.crs_wkt,
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
