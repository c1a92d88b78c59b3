"""GDAL ground control points: a VRT of the target carrying the tie points, and ``-gcp`` text.

A GCP ties a target pixel position to a reference map position. GDAL's GCP ``Pixel/Line``
use the GDAL corner convention, ``(0, 0)`` = top-left corner of the top-left pixel and
``(0.5, 0.5)`` = centre of the first pixel. :attr:`TiePoints.target_xy` is already in that
convention (the matcher contract in :mod:`sarcoreg.core.matchers.base` and
:mod:`sarcoreg.core.tiepoints` use GDAL pixel coordinates of the original target raster), so
it goes into the GCPs unchanged. ``X/Y`` are the reference map coordinates; for a reference
without georeferencing they are ``(col, -row)`` and the GCPs carry no projection.

The VRT lets GDAL do the fit: ``gdalwarp -order 1|2|3`` or ``-tps`` on it gives the
co-registered raster (and ``-refine_gcps`` drops outliers).
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from osgeo import gdal

from ..tiepoints import TiePoints
from .atomic import atomic_path
from .points_file import srs_from_text

__all__ = ["gcp_translate_args", "make_gcps", "write_gcp_vrt"]


def _gcp_rows(
    tiepoints: TiePoints, include_outliers: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows to write as GCPs.

    Returns:
        ``(point_id (M,), pixel_line (M, 2), map_xy (M, 2), outlier (M,))`` for the rows with
        finite positions (and, unless ``include_outliers``, no outlier flag).
    """
    ref_xy = np.asarray(tiepoints.ref_xy, dtype=np.float64)
    tgt_xy = np.asarray(tiepoints.target_xy, dtype=np.float64)
    outlier = np.asarray(tiepoints.outlier, dtype=bool)
    keep = np.isfinite(ref_xy).all(axis=1) & np.isfinite(tgt_xy).all(axis=1)
    if not include_outliers:
        keep &= ~outlier
    ids = np.flatnonzero(keep)
    map_xy = tiepoints.reference.pixel_to_map(ref_xy[keep])
    return ids, tgt_xy[keep], map_xy, outlier[keep]


def make_gcps(tiepoints: TiePoints, *, include_outliers: bool = False) -> list[gdal.GCP]:
    """GDAL GCP objects for the tie points.

    Args:
        tiepoints: The tie points (``target_xy`` in GDAL pixel convention of the target).
        include_outliers: Also write outliers (their ``Info`` is ``"outlier"``).

    Returns:
        One ``gdal.GCP`` per usable tie point: ``GCPPixel/GCPLine`` = target pixel position,
        ``GCPX/GCPY`` = reference map position, ``Id`` = the tie point's ``POINT_ID``.
    """
    ids, pix, map_xy, outlier = _gcp_rows(tiepoints, include_outliers)
    return [
        gdal.GCP(
            float(map_xy[k, 0]),
            float(map_xy[k, 1]),
            0.0,
            float(pix[k, 0]),
            float(pix[k, 1]),
            "outlier" if outlier[k] else "",
            str(int(ids[k])),
        )
        for k in range(ids.size)
    ]


def write_gcp_vrt(
    path: Path | str,
    target_path: Path | str,
    tiepoints: TiePoints,
    reference_crs_wkt: str,
    *,
    include_outliers: bool = False,
) -> int:
    """Write a VRT of the target raster whose GCP list holds the tie points (atomically).

    The VRT is made by ``gdal.Translate(format="VRT", GCPs=..., outputSRS=...)``; then its
    GCP attributes are rewritten at full precision (GDAL 3.6 keeps only 4 decimals of
    ``Pixel/Line``) with ``Id`` = ``POINT_ID``, so ``GetGCPs()`` returns exactly the tie
    points. The VRT references ``target_path`` (GDAL stores it relative to the VRT when it
    can), so keep the two together. The target's own geotransform is not carried over: the
    GCPs define the georeferencing.

    Args:
        path: Output ``.vrt`` file.
        target_path: The original target raster that ``tiepoints.target_xy`` refers to.
        tiepoints: The tie points.
        reference_crs_wkt: CRS of the GCPs' map coordinates (WKT or ``EPSG:xxxx``); "" for a
            reference without CRS.
        include_outliers: Also write outliers as GCPs (default: only inliers).

    Returns:
        Number of GCPs written.

    Raises:
        ValueError: If no tie point is usable or the CRS cannot be parsed.
        RuntimeError: If GDAL cannot open ``target_path`` or write the VRT.
    """
    gcps = make_gcps(tiepoints, include_outliers=include_outliers)
    if not gcps:
        raise ValueError(
            "no usable tie points to write as GCPs (all failed"
            + ("" if include_outliers else " or are outliers") + ")"
        )
    srs = srs_from_text(reference_crs_wkt)
    src = gdal.Open(str(target_path))
    if src is None:
        raise RuntimeError(f"GDAL cannot open the target raster {target_path}")
    kwargs: dict[str, object] = {"format": "VRT", "GCPs": gcps}
    if srs is not None:
        kwargs["outputSRS"] = srs.ExportToWkt()
    with atomic_path(path) as tmp:
        out = gdal.Translate(str(tmp), src, **kwargs)
        if out is None:
            raise RuntimeError(f"gdal.Translate could not write the VRT {path}: "
                               f"{gdal.GetLastErrorMsg()}")
        out.FlushCache()
        out = None  # closing writes the VRT file
        _write_exact_gcps(tmp, gcps)
    src = None
    return len(gcps)


def _write_exact_gcps(vrt_path: Path, gcps: list[gdal.GCP]) -> None:
    """Rewrite the VRT's GCP attributes at full precision, with their Id and Info.

    GDAL 3.6 serialises ``Pixel/Line`` with 4 decimals and ``X/Y`` with 12 significant
    digits, and ``gdal.Translate`` drops the GCP ``Id/Info``; GDAL reads any precision back,
    so the values written here come back exactly from ``GetGCPs()``.
    """
    tree = ET.parse(vrt_path)
    elements = tree.getroot().findall("./GCPList/GCP")
    if len(elements) != len(gcps):
        raise RuntimeError(
            f"the VRT {vrt_path} holds {len(elements)} GCPs, expected {len(gcps)}"
        )
    for element, gcp in zip(elements, gcps, strict=True):
        element.set("Id", gcp.Id)
        element.set("Info", gcp.Info)
        element.set("Pixel", repr(float(gcp.GCPPixel)))
        element.set("Line", repr(float(gcp.GCPLine)))
        element.set("X", repr(float(gcp.GCPX)))
        element.set("Y", repr(float(gcp.GCPY)))
    tree.write(vrt_path, encoding="utf-8")


def gcp_translate_args(
    tiepoints: TiePoints, reference_crs_wkt: str, *, include_outliers: bool = False
) -> str:
    """The ``gdal_translate`` argument text that attaches the tie points as GCPs.

    For example ``-gcp 10.5 20.5 500105.0 4999795.0 -gcp ... -a_srs EPSG:32633``; use it as
    ``gdal_translate <args> target.tif target_gcps.vrt``. Numbers are written at full
    precision; the CRS is given as ``EPSG:code`` when GDAL can identify one, else as quoted WKT
    (POSIX shell quoting); no ``-a_srs`` when there is no CRS.

    Args:
        tiepoints: The tie points.
        reference_crs_wkt: CRS of the reference map coordinates; "" for none.
        include_outliers: Also list outliers (default: only inliers).

    Returns:
        The argument text (without program name and file names).
    """
    _, pix, map_xy, _ = _gcp_rows(tiepoints, include_outliers)
    values = np.concatenate([pix, map_xy], axis=1)  # (M, 4): pixel, line, x, y
    parts = ["-gcp " + " ".join(repr(float(v)) for v in row) for row in values]
    srs = srs_from_text(reference_crs_wkt)
    if srs is not None:
        name, code = srs.GetAuthorityName(None), srs.GetAuthorityCode(None)
        if not (name and code):
            srs_copy = srs.Clone()
            if srs_copy.AutoIdentifyEPSG() == 0:
                name, code = srs_copy.GetAuthorityName(None), srs_copy.GetAuthorityCode(None)
        if name and code:
            parts.append(f"-a_srs {name}:{code}")
        else:
            parts.append("-a_srs " + shlex.quote(srs.ExportToWkt()))
    return " ".join(parts)
