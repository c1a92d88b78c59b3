"""The tie-point table as a GeoPackage point layer (AROSICS-style field names).

One point per tie point at its reference map position (``X_MAP, Y_MAP``), in the reference
CRS. Plain images (map coordinates ``(col, -row)``, no CRS) get the GeoPackage's "Undefined
Cartesian SRS" (``srs_id -1``), which GDAL reports as a ``LOCAL_CS`` of that name. Every column of
:data:`sarcoreg.core.tiepoints.TIEPOINT_FIELDS` becomes a field: ``int`` -> Integer64,
``float`` -> Real, ``str`` -> String, ``bool`` -> Integer with the Boolean subtype. As in
AROSICS, numbers that are NaN (failed points) are written as -9999.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import ogr, osr

from ..tiepoints import TIEPOINT_FIELDS, TiePoints
from .atomic import atomic_path
from .points_file import srs_from_text

__all__ = ["NODATA_VALUE", "read_tiepoints_gpkg", "write_tiepoints_gpkg"]

_UNDEFINED_CARTESIAN = "Undefined Cartesian SRS"

#: Stand-in for NaN in numeric fields (the AROSICS convention).
NODATA_VALUE = -9999.0

_OGR_TYPES: dict[str, tuple[int, int]] = {
    "int": (ogr.OFTInteger64, ogr.OFSTNone),
    "float": (ogr.OFTReal, ogr.OFSTNone),
    "str": (ogr.OFTString, ogr.OFSTNone),
    "bool": (ogr.OFTInteger, ogr.OFSTBoolean),
}


def write_tiepoints_gpkg(
    path: Path | str, tiepoints: TiePoints, layer_name: str = "tiepoints"
) -> int:
    """Write all tie points (failed ones included) to a new GeoPackage (atomically).

    An existing file at ``path`` is replaced as a whole.

    Args:
        path: Output ``.gpkg`` file.
        tiepoints: The tie points; ``tiepoints.reference`` gives grid and CRS.
        layer_name: Name of the point layer.

    Returns:
        Number of features written.

    Raises:
        RuntimeError: If GDAL cannot create the GeoPackage or a feature.
        ValueError: If the reference CRS cannot be parsed.
    """
    columns = tiepoints.columns()
    srs = srs_from_text(tiepoints.reference.crs_wkt)
    if srs is None:
        # GeoPackage has no "no CRS": srs_id -1 is the spec's undefined Cartesian SRS (GDAL
        # maps this name to it); without it GDAL would use srs_id 0, undefined *geographic*.
        srs = osr.SpatialReference()
        srs.SetLocalCS(_UNDEFINED_CARTESIAN)
    n = len(tiepoints)
    driver = ogr.GetDriverByName("GPKG")
    if driver is None:
        raise RuntimeError("this GDAL build has no GeoPackage (GPKG) driver")
    with atomic_path(path) as tmp:
        ds = driver.CreateDataSource(str(tmp))
        if ds is None:
            raise RuntimeError(f"GDAL cannot create the GeoPackage {path}")
        layer = ds.CreateLayer(layer_name, srs, ogr.wkbPoint)
        if layer is None:
            raise RuntimeError(f"GDAL cannot create the layer {layer_name!r} in {path}")
        for name, kind in TIEPOINT_FIELDS:
            ftype, subtype = _OGR_TYPES[kind]
            defn = ogr.FieldDefn(name, ftype)
            defn.SetSubType(subtype)
            if layer.CreateField(defn) != 0:
                raise RuntimeError(f"GDAL cannot create the field {name} in {path}")
        layer_defn = layer.GetLayerDefn()
        layer.StartTransaction()
        for i in range(n):
            feat = ogr.Feature(layer_defn)
            for name, kind in TIEPOINT_FIELDS:
                value = columns[name][i]
                if kind == "float":
                    v = float(value)
                    feat.SetField(name, v if np.isfinite(v) else NODATA_VALUE)
                elif kind == "int":
                    feat.SetField(name, int(value))
                elif kind == "bool":
                    feat.SetField(name, 1 if bool(value) else 0)
                else:
                    feat.SetField(name, str(value))
            x, y = float(columns["X_MAP"][i]), float(columns["Y_MAP"][i])
            if np.isfinite(x) and np.isfinite(y):
                point = ogr.Geometry(ogr.wkbPoint)
                point.AddPoint_2D(x, y)
                feat.SetGeometry(point)
            if layer.CreateFeature(feat) != 0:
                raise RuntimeError(f"GDAL cannot write tie point {i} to {path}")
        layer.CommitTransaction()
        layer = None
        ds = None  # closing flushes the GeoPackage
    return n


def open_vector_layer(path: Path | str, layer_name: str | None = None) -> tuple[ogr.DataSource, ogr.Layer]:
    """Open a vector file and one of its layers (the first when ``layer_name`` is None).

    Returns:
        ``(dataset, layer)``: keep the dataset referenced while the layer is used.

    Raises:
        FileNotFoundError: If GDAL cannot open ``path``.
        KeyError: If the layer does not exist.
    """
    ds = ogr.Open(str(path))
    if ds is None:
        raise FileNotFoundError(f"GDAL cannot open {path} as a vector data set")
    layer = ds.GetLayerByName(layer_name) if layer_name else ds.GetLayer(0)
    if layer is None:
        raise KeyError(f"{path} has no layer {layer_name!r}")
    return ds, layer


def read_tiepoints_gpkg(
    path: Path | str, layer_name: str | None = None
) -> dict[str, np.ndarray | list[str]]:
    """Read a tie-point layer back as plain columns (values exactly as stored).

    Failed points' numbers come back as :data:`NODATA_VALUE` (-9999), as they are in the
    file. Integer64 -> int64 array, Real -> float64 array, Boolean -> bool array, anything
    else -> list of str ("" for NULL).

    Args:
        path: The GeoPackage.
        layer_name: Layer to read; None for the first layer.

    Returns:
        Field name -> column of length N, in the layer's field order.

    Raises:
        FileNotFoundError: If GDAL cannot open ``path``.
        KeyError: If the layer does not exist.
    """
    ds, layer = open_vector_layer(path, layer_name)
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(k) for k in range(defn.GetFieldCount())]
    raw: dict[str, list[object]] = {f.GetName(): [] for f in fields}
    layer.ResetReading()
    for feat in layer:
        for f in fields:
            raw[f.GetName()].append(feat.GetField(f.GetName()))
    out: dict[str, np.ndarray | list[str]] = {}
    for f in fields:
        name, values = f.GetName(), raw[f.GetName()]
        if f.GetType() == ogr.OFTInteger and f.GetSubType() == ogr.OFSTBoolean:
            out[name] = np.asarray([bool(v) for v in values], dtype=bool)
        elif f.GetType() in (ogr.OFTInteger, ogr.OFTInteger64):
            out[name] = np.asarray(values, dtype=np.int64)
        elif f.GetType() == ogr.OFTReal:
            out[name] = np.asarray(
                [np.nan if v is None else v for v in values], dtype=np.float64
            )
        else:
            out[name] = ["" if v is None else str(v) for v in values]
    del layer, ds  # close the file
    return out
