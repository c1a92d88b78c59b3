"""The QGIS plugin object: registers the Processing provider (desktop and qgis_process)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import SarcoregProvider


class SarcoregPlugin:
    """Created by ``classFactory``; ``iface`` is None under qgis_process."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: SarcoregProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API name)
        """Register the provider; called by QGIS desktop (through initGui) and qgis_process."""
        if self.provider is None:
            self.provider = SarcoregProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        """Desktop start-up: all the plugin offers lives in the Processing Toolbox."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider when the plugin is unloaded or reloaded."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
