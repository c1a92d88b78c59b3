"""Processing algorithms of the sarcoreg provider."""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm


def all_algorithms() -> list[QgsProcessingAlgorithm]:
    """A fresh instance of every algorithm the provider offers."""
    from .coregister import CoregisterAlgorithm
    from .diagnostics import DiagnosticsAlgorithm

    return [CoregisterAlgorithm(), DiagnosticsAlgorithm()]
