"""QGIS Georeferencer ``.points`` files: write tie points as GCPs, read them back.

The format is the one ``QgsGCPList::saveGcps`` writes (QGIS ``src/app/georeferencer``)::

    #CRS: <WKT of the destination CRS, one line>
    mapX,mapY,sourceX,sourceY,enable,dX,dY,residual
    <mapX>,<mapY>,<sourceX>,<sourceY>,<1|0>,<dX>,<dY>,<sqrt(dX^2 + dY^2)>

* ``mapX/mapY``: the destination position, here the reference map coordinates.
* ``sourceX/sourceY``: the matched point in the *source layer's* coordinates, here the target
  raster: its map coordinates when it has a geotransform, otherwise ``(col, -row)`` (the QGIS
  convention for plain images; :meth:`Georef.plain` uses the same one).
* ``enable``: 0 for outliers, 1 otherwise. QGIS ignores ``dX, dY, residual`` on load.

QGIS writes the CRS in WKT2_2019 on one line; so do we. The ``#CRS:`` line is left out when
the reference has no CRS (QGIS then uses the project CRS on load).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import osr

from ..georef import Georef
from ..tiepoints import TiePoints
from .atomic import atomic_write_text

__all__ = ["POINTS_HEADER", "read_points", "srs_from_text", "write_points"]

#: Header line of a ``.points`` file, exactly as QGIS writes it.
POINTS_HEADER = "mapX,mapY,sourceX,sourceY,enable,dX,dY,residual"
_CRS_PREFIX = "#CRS: "


def srs_from_text(crs_text: str) -> osr.SpatialReference | None:
    """Parse a CRS given as WKT, ``EPSG:xxxx``, PROJ string or anything GDAL accepts.

    Args:
        crs_text: The CRS definition; "" or whitespace for "no CRS".

    Returns:
        The spatial reference (traditional GIS axis order: x = easting/longitude), or None
        for an empty ``crs_text``.

    Raises:
        ValueError: If GDAL cannot parse ``crs_text``.
    """
    if not crs_text or not crs_text.strip():
        return None
    srs = osr.SpatialReference()
    try:
        err = srs.SetFromUserInput(crs_text.strip())
    except RuntimeError as exc:  # raised when gdal.UseExceptions() is on
        raise ValueError(f"GDAL cannot read the CRS {crs_text[:80]!r}: {exc}") from exc
    if err != 0:
        raise ValueError(
            f"GDAL cannot read the CRS {crs_text[:80]!r}; give WKT or an 'EPSG:xxxx' code"
        )
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _fmt(value: float) -> str:
    """Full-precision decimal text of a float (Python's shortest round-trip repr)."""
    return repr(float(value))


def write_points(
    path: Path | str,
    tiepoints: TiePoints,
    target_georef: Georef,
    reference_crs_wkt: str,
    *,
    include_outliers: bool = True,
) -> int:
    """Write tie points as a QGIS Georeferencer ``.points`` file (atomically).

    Rows whose reference or target position is not finite (failed matches) are skipped.
    Residuals (reference pixels) are converted to reference map units with the linear part
    of the reference geotransform; rows without a residual get ``nan`` there (QGIS
    recomputes residuals on load and ignores these columns).

    Args:
        path: Output ``.points`` file.
        tiepoints: The tie points; ``tiepoints.reference`` gives the reference grid.
        target_georef: Georeferencing of the target (source) raster that
            ``tiepoints.target_xy`` (``(N, 2)`` target pixels) refers to; use
            :meth:`Georef.plain` for an image without georeferencing.
        reference_crs_wkt: Destination CRS (WKT or ``EPSG:xxxx``); "" for none.
        include_outliers: Keep outliers as disabled rows (``enable = 0``); else drop them.

    Returns:
        Number of GCP rows written.

    Raises:
        ValueError: If ``reference_crs_wkt`` cannot be parsed.
    """
    lines: list[str] = []
    srs = srs_from_text(reference_crs_wkt)
    if srs is not None:
        wkt = srs.ExportToWkt(["FORMAT=WKT2_2019", "MULTILINE=NO"])
        lines.append(_CRS_PREFIX + wkt)
    lines.append(POINTS_HEADER)

    ref_xy = np.asarray(tiepoints.ref_xy, dtype=np.float64)
    tgt_xy = np.asarray(tiepoints.target_xy, dtype=np.float64)
    keep = np.isfinite(ref_xy).all(axis=1) & np.isfinite(tgt_xy).all(axis=1)
    outlier = np.asarray(tiepoints.outlier, dtype=bool)
    if not include_outliers:
        keep &= ~outlier

    map_xy = tiepoints.reference.pixel_to_map(ref_xy[keep])
    source_xy = target_georef.pixel_to_map(tgt_xy[keep])
    lin = tiepoints.reference.matrix[:2, :2]
    res_map = np.asarray(tiepoints.residual_px, dtype=np.float64)[keep] @ lin.T
    res_abs = np.hypot(res_map[:, 0], res_map[:, 1])
    enabled = ~outlier[keep]
    for k in range(map_xy.shape[0]):
        lines.append(
            ",".join(
                [
                    _fmt(map_xy[k, 0]),
                    _fmt(map_xy[k, 1]),
                    _fmt(source_xy[k, 0]),
                    _fmt(source_xy[k, 1]),
                    "1" if enabled[k] else "0",
                    _fmt(res_map[k, 0]),
                    _fmt(res_map[k, 1]),
                    _fmt(res_abs[k]),
                ]
            )
        )
    atomic_write_text(path, "\n".join(lines) + "\n")
    return int(map_xy.shape[0])


def _to_float(text: str, path: Path, line_no: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line_no}: {text!r} is not a number") from None


def read_points(path: Path | str) -> tuple[str, np.ndarray, np.ndarray]:
    """Read a ``.points`` file with the rules of QGIS's ``QgsGCPList::loadGcps``.

    The first line is the CRS when it contains ``"#CRS: "`` (the CRS text is the line with
    that marker removed); the next line (or the first, without a CRS line) is the header and
    is skipped. Each further line is split on ``,`` if it has one, else on tab (the legacy
    format); it needs at least 4 columns; the 5th, if present, is ``enable`` (an integer,
    non-zero = enabled; default enabled). Other columns are ignored, as QGIS does. Unlike
    QGIS, which reads a bad number as 0, a non-numeric coordinate raises.

    Args:
        path: The ``.points`` file.

    Returns:
        ``(crs_text, rows, enabled)``: the CRS text ("" when absent), ``rows`` ``(N, 4)``
        float64 ``[mapX, mapY, sourceX, sourceY]`` and ``enabled`` ``(N,)`` bool.

    Raises:
        ValueError: On a row with fewer than 4 columns or a non-numeric coordinate.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as fh:
        text_lines = fh.read().splitlines()
    crs_text = ""
    start = 1  # the header line is always skipped
    if text_lines and _CRS_PREFIX in text_lines[0]:
        crs_text = text_lines[0].replace(_CRS_PREFIX, "")
        start = 2
    rows: list[list[float]] = []
    enabled: list[bool] = []
    for idx in range(start, len(text_lines)):
        line = text_lines[idx]
        parts = line.split(",") if "," in line else line.split("\t")
        if len(parts) < 4:
            raise ValueError(
                f"{path}, line {idx + 1}: invalid GCP file, a row needs at least 4 columns "
                f"(mapX, mapY, sourceX, sourceY), got {line!r}"
            )
        rows.append([_to_float(p, path, idx + 1) for p in parts[:4]])
        enable = True
        if len(parts) >= 5:
            try:
                enable = int(parts[4].strip()) != 0
            except ValueError:
                enable = False  # QString::toInt gives 0 for text that is not an integer
        enabled.append(enable)
    return crs_text, np.asarray(rows, dtype=np.float64).reshape(-1, 4), np.asarray(enabled, bool)
