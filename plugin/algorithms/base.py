"""Shared base of the sarcoreg Processing algorithms."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingAlgorithm
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
