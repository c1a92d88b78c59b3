"""Footprints of target rasters as polygons in one CRS (for the summary layer and map)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Footprints", "target_footprints"]

#: Points per raster edge of a footprint (so that a reprojected edge bends like the raster's).
_EDGE_POINTS = 8


class Footprints:
    """Polygons of rasters in a common CRS.

    Attributes:
        crs_wkt: WKT of the polygons' CRS ("" when no raster had one).
        rings: Per raster its outer ring ``[(x, y), ...]`` (closed), or None when the raster has
            no georeferencing or cannot be opened.
    """

    def __init__(self, crs_wkt: str, rings: list[list[tuple[float, float]] | None]) -> None:
        self.crs_wkt = crs_wkt
        self.rings = rings


def _edge_ring(width: int, height: int) -> list[tuple[float, float]]:
    """Pixel positions along the raster's border, clockwise from the top-left corner, closed."""
    n = _EDGE_POINTS
    top = [(width * i / n, 0.0) for i in range(n)]
    right = [(float(width), height * i / n) for i in range(n)]
    bottom = [(width * (n - i) / n, float(height)) for i in range(n)]
    left = [(0.0, height * (n - i) / n) for i in range(n)]
    ring = top + right + bottom + left
    return ring + [ring[0]]


def target_footprints(paths: Sequence[str]) -> Footprints:
    """The footprint of every raster in ``paths``, in their shared CRS or else in WGS 84 (lon, lat).

    Rasters without a geotransform or CRS, or that cannot be opened, get None (the row keeps no
    geometry); nothing here raises for one bad raster.
    """
    from osgeo import gdal, osr

    infos: list[tuple[osr.SpatialReference, list[float], int, int] | None] = []
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        for path in paths:
            ds = gdal.Open(str(path)) if path else None
            if ds is None or not ds.GetProjection():
                infos.append(None)
                continue
            gt = list(ds.GetGeoTransform(can_return_null=True) or [])
            srs = osr.SpatialReference()
            if not gt or srs.ImportFromWkt(ds.GetProjection()) != 0:
                infos.append(None)
                continue
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            infos.append((srs, gt, ds.RasterXSize, ds.RasterYSize))
            ds = None
    finally:
        gdal.PopErrorHandler()
    known = [i for i in infos if i is not None]
    if not known:
        return Footprints("", [None] * len(infos))
    out = known[0][0]
    if not all(i[0].IsSame(out) for i in known):
        out = osr.SpatialReference()
        out.ImportFromEPSG(4326)
        out.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    rings: list[list[tuple[float, float]] | None] = []
    for info in infos:
        if info is None:
            rings.append(None)
            continue
        srs, gt, w, h = info
        pts = [(gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5]) for c, r in _edge_ring(w, h)]
        if not srs.IsSame(out):
            tr = osr.CoordinateTransformation(srs, out)
            try:
                pts = [(x, y) for x, y, *_ in tr.TransformPoints(pts)]
            except RuntimeError:
                rings.append(None)
                continue
        rings.append(pts)
    return Footprints(out.ExportToWkt(), rings)
