"""Output writers of the co-registration engine.

Every writer goes through :func:`atomic_path`, so a cancelled or crashed run never leaves a
half-written file behind.

* :func:`write_points` / :func:`read_points`: QGIS Georeferencer ``.points`` GCP file.
* :func:`write_gcp_vrt` / :func:`gcp_translate_args`: GDAL GCPs (VRT, ``gdal_translate`` text).
* :func:`write_tiepoints_gpkg` / :func:`read_tiepoints_gpkg`: tie-point GeoPackage layer.
* :func:`write_shift_field`: coarse 2-band (dx, dy) GeoTIFF of the fitted model.
* :func:`write_report_html`: self-contained HTML quality report (plots in :mod:`.plots`).
"""

from __future__ import annotations

from .atomic import atomic_path, atomic_write_text
from .gcp_vrt import gcp_translate_args, make_gcps, write_gcp_vrt
from .plots import checkerboard
from .points_file import POINTS_HEADER, read_points, srs_from_text, write_points
from .report_html import render_report_html, write_report_html
from .shift_field import SHIFT_FIELD_NODATA, write_shift_field
from .tiepoint_layer import NODATA_VALUE, open_vector_layer, read_tiepoints_gpkg, write_tiepoints_gpkg

__all__ = [
    "NODATA_VALUE",
    "POINTS_HEADER",
    "SHIFT_FIELD_NODATA",
    "atomic_path",
    "atomic_write_text",
    "checkerboard",
    "gcp_translate_args",
    "make_gcps",
    "open_vector_layer",
    "read_points",
    "read_tiepoints_gpkg",
    "render_report_html",
    "srs_from_text",
    "write_gcp_vrt",
    "write_points",
    "write_report_html",
    "write_shift_field",
    "write_tiepoints_gpkg",
]
