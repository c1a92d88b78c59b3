"""Processing algorithms of the sarcoreg provider."""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm


def all_algorithms() -> list[QgsProcessingAlgorithm]:
    """A fresh instance of every algorithm the provider offers."""
    from .diagnostics import DiagnosticsAlgorithm

    algs: list[QgsProcessingAlgorithm] = [DiagnosticsAlgorithm()]
    try:
        from .coregister import CoregisterAlgorithm

        algs.append(CoregisterAlgorithm())
    except ImportError:
        pass
    return algs
