"""Shared base of the sarcoreg Processing algorithms."""

from __future__ import annotations

import os
from typing import Any

from osgeo import gdal
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ...core.output_set import InputOverwriteError, refuse_input_overwrite
from ..settings import PLUGIN_DIR

ICON = str(PLUGIN_DIR / "plugin" / "resources" / "icon.svg")


class SarcoregAlgorithm(QgsProcessingAlgorithm):
    """Common names, icon and help plumbing; subclasses define the parameters and the work."""

    _name = ""
    _display = ""
    _group = ""
    _group_id = ""
    _help = ""
    #: Files each output-folder parameter gets (parameter name -> file names): checked against
    #: the inputs like the folder itself.
    _folder_files: dict[str, tuple[str, ...]] = {}

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
            self._refuse_overwriting_inputs(parameters, context)
            self._resolve(parameters, context)
        except QgsProcessingException as exc:
            return False, str(exc)
        return True, ""

    def prepareAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> bool:  # noqa: N802
        """Refuse outputs over inputs on every path that runs the algorithm (models, scripts, batch)."""
        self._refuse_overwriting_inputs(parameters, context)
        return True

    # ----------------------------------------------------------------------------- inputs vs outputs
    def _input_files(self, parameters: Any, context: Any) -> list[tuple[str, str]]:
        """``(label, file)`` of every layer or file input given (sources of layers, files, folders)."""
        found: list[tuple[str, str]] = []
        for definition in self.parameterDefinitions():
            name = definition.name()
            if definition.isDestination() or parameters.get(name) in (None, ""):
                continue
            try:
                if isinstance(definition, QgsProcessingParameterRasterLayer):
                    layers = [self.parameterAsRasterLayer(parameters, name, context)]
                elif isinstance(definition, (QgsProcessingParameterFeatureSource, QgsProcessingParameterVectorLayer)):
                    layers = [self.parameterAsVectorLayer(parameters, name, context)]
                elif isinstance(definition, QgsProcessingParameterMultipleLayers):
                    layers = list(self.parameterAsLayerList(parameters, name, context))
                elif isinstance(definition, QgsProcessingParameterFile):
                    found.append((f"input {definition.description()} ({name})",
                                  self.parameterAsFile(parameters, name, context) or ""))
                    continue
                else:
                    continue
            except QgsProcessingException:
                continue  # a bad value: the check that owns the parameter says so
            found += [(f"input {definition.description()} ({name})", layer.source())
                      for layer in layers if layer is not None and layer.source()]
        return found

    def _output_files(self, parameters: Any, context: Any) -> list[tuple[str, str]]:
        """``(label, path)`` of every output given: files, layers, folders and the files a folder gets."""
        found: list[tuple[str, str]] = []
        for definition in self.destinationParameterDefinitions():
            name = definition.name()
            if parameters.get(name) in (None, ""):
                continue
            label = f"output {definition.description()} ({name})"
            try:
                if isinstance(definition, QgsProcessingParameterFolderDestination):
                    folder = self.parameterAsFileOutput(parameters, name, context) or ""
                    found.append((label, folder))
                    found += [(f"{label} file {f}", os.path.join(folder, f))
                              for f in self._folder_files.get(name, ()) if folder]
                elif isinstance(definition, QgsProcessingParameterFileDestination):
                    found.append((label, self.parameterAsFileOutput(parameters, name, context) or ""))
                else:  # raster / vector destinations, feature sinks
                    found.append((label, self.parameterAsOutputLayer(parameters, name, context) or ""))
            except QgsProcessingException:
                continue
        return found

    def _refuse_overwriting_inputs(self, parameters: Any, context: Any) -> None:
        """Refuse any output path that resolves to one of the inputs (symlinks and hard links too).

        Raises:
            QgsProcessingException: The message names the output and the input.
        """
        try:
            refuse_input_overwrite(self._output_files(parameters, context), self._input_files(parameters, context))
        except InputOverwriteError as exc:
            raise QgsProcessingException(str(exc)) from None

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
