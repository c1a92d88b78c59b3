"""Shared plumbing of the tie-point tools: point-layer reading and checks that name the parameter.

The algorithms *Export GCPs*, *Warp with tie points* and *Evaluate co-registration* read their
point layer here into plain JSON columns (see :mod:`sarcoreg.core.tiepoint_ops`) and hand them
to the worker; nothing here imports numpy.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureRequest,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsUnitTypes,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .base import SarcoregAlgorithm

#: Fields holding the matched target pixel position (``sarcoreg.core.tiepoint_ops.REQUIRED_FIELDS``).
TARGET_PIXEL_FIELDS: tuple[str, str] = ("TGT_X_IM", "TGT_Y_IM")
#: Tie-point fields the worker uses besides the required ones (sent when the layer has them).
OPTIONAL_FIELDS: tuple[str, ...] = (
    "POINT_ID", "X_IM", "Y_IM", "X_MAP", "Y_MAP", "OUTLIER", "L1_OUTLIER", "L2_OUTLIER", "RES_X_PX", "RES_Y_PX",
)


def crs_wkt(crs: QgsCoordinateReferenceSystem) -> str:
    """The CRS as WKT for GDAL, "" when it is not valid (no CRS)."""
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED) if crs.isValid() else ""


def plain_value(value: Any) -> Any:
    """A JSON-able attribute value: NULL -> None, numbers and booleans kept, anything else as text."""
    if isinstance(value, QVariant):
        return None if value.isNull() else plain_value(value.value())
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def point_xy(feature: Any) -> tuple[float | None, float | None]:
    """The feature's point (first part of a multipoint), or ``(None, None)`` without geometry."""
    geom = feature.geometry()
    if geom is None or geom.isNull() or geom.isEmpty():
        return None, None
    if geom.isMultipart():
        parts = geom.asMultiPoint()
        if not parts:
            return None, None
        return parts[0].x(), parts[0].y()
    p = geom.asPoint()
    return p.x(), p.y()


def source_columns(
    source: QgsProcessingFeatureSource, names: list[str], feedback: QgsProcessingFeedback | None = None
) -> dict[str, Any]:
    """``{"x", "y", "fields"}`` of the features of ``source`` (the fields in ``names`` it has)."""
    available = set(source.fields().names())
    use = [n for n in names if n in available]
    request = QgsFeatureRequest().setSubsetOfAttributes(use, source.fields())
    columns: dict[str, Any] = {"x": [], "y": [], "fields": {n: [] for n in use}}
    for feature in source.getFeatures(request):
        if feedback is not None and feedback.isCanceled():
            break
        x, y = point_xy(feature)
        columns["x"].append(x)
        columns["y"].append(y)
        for n in use:
            columns["fields"][n].append(plain_value(feature[n]))
    return columns


class PointToolAlgorithm(SarcoregAlgorithm):
    """Base of the tie-point tools: labels, raster paths and point-layer checks naming the parameter."""

    _group = "Tie points"
    _group_id = "tiepoints"

    def _point_source(
        self, parameters: Any, name: str, context: Any, required: tuple[str, ...] = ()
    ) -> QgsProcessingFeatureSource:
        """The point layer parameter ``name``: present, points, not empty, with the ``required`` fields."""
        label = self._label(name)
        source = self.parameterAsSource(parameters, name, context)
        if source is None:
            raise QgsProcessingException(f"{label} ({name}): no point layer given.")
        if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PointGeometry:
            raise QgsProcessingException(
                f"{label} ({name}): '{source.sourceName()}' is not a point layer "
                f"({QgsWkbTypes.displayString(source.wkbType())})."
            )
        if source.featureCount() == 0:
            raise QgsProcessingException(f"{label} ({name}): the layer '{source.sourceName()}' has no features.")
        names = source.fields().names()
        missing = [f for f in required if f not in names]
        if missing:
            raise QgsProcessingException(
                f"{label} ({name}): the layer '{source.sourceName()}' has no field(s) {', '.join(missing)}; "
                f"its fields are {', '.join(names) or 'none'}. Use the tie points of 'Extract tie points' or "
                "'Co-register SAR to optical', or a layer with the same fields."
            )
        return source

    def _check_units(self, crs: QgsCoordinateReferenceSystem, name: str, what: str) -> None:
        """A valid CRS must have map units (a local CRS without units cannot be measured in)."""
        if crs.isValid() and crs.mapUnits() == QgsUnitTypes.DistanceUnknownUnit:
            raise QgsProcessingException(
                f"{self._label(name)} ({name}): the CRS of {what} ('{crs.description() or crs.authid()}') has no "
                "map units; assign a projected CRS (Layer Properties > Source) or reproject it."
            )
