"""Shared base of the sarcoreg Processing algorithms."""

from __future__ import annotations

import os
from typing import Any

from osgeo import gdal
from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..settings import PLUGIN_DIR

ICON = str(PLUGIN_DIR / "plugin" / "resources" / "icon.svg")


class SarcoregAlgorithm(QgsProcessingAlgorithm):
    """Common names, icon and help plumbing; subclasses define the parameters and the work."""

    _name = ""
    _display = ""
    _group = ""
    _group_id = ""
    _help = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("sarcoreg", text)

    def name(self) -> str:
        return self._name

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self._display)

    def group(self) -> str:
        return self.tr(self._group)

    def groupId(self) -> str:  # noqa: N802
        return self._group_id

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(self._help)

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def svgIconPath(self) -> str:  # noqa: N802
        return ICON

    def createInstance(self) -> Any:  # noqa: N802
        return type(self)()

    # ----------------------------------------------------------------------------- validation
    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        """Turn the parameters into the job's inputs (paths, options).

        Raises:
            QgsProcessingException: A bad input; the message names the parameter. The default
                checks nothing.
        """
        return {}

    def checkParameterValues(self, parameters: Any, context: Any) -> tuple[bool, str]:  # noqa: N802
        """Check the inputs before anything runs; the message names the bad parameter."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        try:
            self._resolve(parameters, context)
        except QgsProcessingException as exc:
            return False, str(exc)
        return True, ""

    def _label(self, name: str) -> str:
        definition = self.parameterDefinition(name)
        return definition.description() if definition is not None else name

    def _raster_path(self, layer: QgsRasterLayer | None, name: str) -> str:
        """The GDAL-readable source of a raster layer parameter, or an error naming it."""
        label = self._label(name)
        if layer is None:
            raise QgsProcessingException(f"{label}: no raster layer given ({name}).")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{label}: layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
                "sarcoreg reads files with GDAL. Save it as a GeoTIFF (Export > Save As...) and use "
                "that file."
            )
        source = layer.source()
        candidates = [source] + ([source.split("|")[0]] if "|" in source else [])
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            for path in candidates:
                ds = gdal.OpenEx(path, gdal.OF_RASTER)
                if ds is not None:
                    ds = None
                    return path
        finally:
            gdal.PopErrorHandler()
        raise QgsProcessingException(
            f"{label}: GDAL cannot open '{source}' as a raster; use a file-based raster (GeoTIFF, VRT, JP2 ...)."
        )

    def _raster_pair(self, parameters: Any, context: Any) -> tuple[QgsRasterLayer, QgsRasterLayer, str, str]:
        """The REFERENCE and TARGET layers and their files, checked (not the same raster).

        Raises:
            QgsProcessingException: A missing or unreadable raster, or the same raster twice; the
                message names the parameter.
        """
        ref_layer = self.parameterAsRasterLayer(parameters, "REFERENCE", context)
        tgt_layer = self.parameterAsRasterLayer(parameters, "TARGET", context)
        reference = self._raster_path(ref_layer, "REFERENCE")
        target = self._raster_path(tgt_layer, "TARGET")
        if _same_file(reference, target):
            raise QgsProcessingException(
                f"{self._label('TARGET')} (TARGET) is the same raster as the {self._label('REFERENCE')} "
                f"(REFERENCE): '{target}'. Choose the SAR image to co-register as the target."
            )
        assert ref_layer is not None and tgt_layer is not None
        return ref_layer, tgt_layer, reference, target

    def _window(self, parameters: Any, context: Any) -> int:
        """The WINDOW parameter, checked: an even number >= 8."""
        window = self.parameterAsInt(parameters, "WINDOW", context)
        if window < 8 or window % 2:
            raise QgsProcessingException(f"{self._label('WINDOW')} (WINDOW) must be an even number >= 8, got {window}.")
        return window


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (or, for non-files, the same normalised name)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.normpath(a) == os.path.normpath(b)
