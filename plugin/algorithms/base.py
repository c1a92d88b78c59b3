"""Shared base of the sarcoreg Processing algorithms."""

from __future__ import annotations

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
