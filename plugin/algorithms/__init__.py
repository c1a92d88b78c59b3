"""Processing algorithms of the sarcoreg provider."""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm


def all_algorithms() -> list[QgsProcessingAlgorithm]:
    """A fresh instance of every algorithm the provider offers."""
    from .batch_coregister import BatchCoregisterAlgorithm
    from .coregister import CoregisterAlgorithm
    from .correspondence_map import CorrespondenceMapAlgorithm
    from .diagnostics import DiagnosticsAlgorithm
    from .evaluate import EvaluateAlgorithm
    from .export_gcps import ExportGcpsAlgorithm
    from .extract_tiepoints import ExtractTiePointsAlgorithm
    from .install_model_pack import InstallModelPackAlgorithm
    from .shared_layers import SharedLayersAlgorithm
    from .train_model import TrainModelAlgorithm
    from .warp_tiepoints import WarpWithTiePointsAlgorithm

    return [
        CoregisterAlgorithm(),
        DiagnosticsAlgorithm(),
        SharedLayersAlgorithm(),
        ExtractTiePointsAlgorithm(),
        ExportGcpsAlgorithm(),
        WarpWithTiePointsAlgorithm(),
        EvaluateAlgorithm(),
        CorrespondenceMapAlgorithm(),
        TrainModelAlgorithm(),
        BatchCoregisterAlgorithm(),
        InstallModelPackAlgorithm(),
    ]
