"""The Processing provider ``sarcoreg`` ("SAR-Optical Co-registration")."""

from __future__ import annotations

import os

from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import all_algorithms
from .settings import PLUGIN_DIR, SETTING_MODEL_FOLDERS, SETTING_PYTHON, default_interpreter

ICON = str(PLUGIN_DIR / "plugin" / "resources" / "icon.svg")
#: Graphical models shipped with the plugin (``*.model3``), offered as algorithms of the provider.
MODELS_DIR = PLUGIN_DIR / "plugin" / "models"


class SarcoregProvider(QgsProcessingProvider):
    """Holds every sarcoreg algorithm; id ``sarcoreg``."""

    def id(self) -> str:  # noqa: A003 (QGIS API name)
        return "sarcoreg"

    def name(self) -> str:
        return "SAR-Optical Co-registration"

    def longName(self) -> str:  # noqa: N802
        return "SAR-Optical Co-registration (sarcoreg)"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def svgIconPath(self) -> str:  # noqa: N802
        return ICON

    def load(self) -> bool:
        """Register the provider's settings, then its algorithms."""
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting

            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(
                Setting(self.name(), SETTING_PYTHON, "Python interpreter for the sarcoreg worker "
                        "(empty: " + default_interpreter() + ")", "", valuetype=Setting.FILE)
            )
            ProcessingConfig.addSetting(
                Setting(self.name(), SETTING_MODEL_FOLDERS, "Model folders for the sarcoreg worker (separated by "
                        "'" + os.pathsep + "'; trained models are added here)", "")
            )
            ProcessingConfig.readSettings()
        except Exception:  # Processing's Python side unavailable: defaults still work
            pass
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig

            ProcessingConfig.removeSetting(SETTING_PYTHON)
            ProcessingConfig.removeSetting(SETTING_MODEL_FOLDERS)
        except Exception:
            pass

    def loadAlgorithms(self) -> None:  # noqa: N802
        for alg in all_algorithms():
            self.addAlgorithm(alg)
        for path in sorted(MODELS_DIR.glob("*.model3")):
            model = QgsProcessingModelAlgorithm()
            if model.fromFile(str(path)):
                model.setSourceFilePath(str(path))
                self.addAlgorithm(model)
