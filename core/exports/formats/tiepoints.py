"""``tiepoints.gpkg``: the tie points as a GeoPackage point layer (AROSICS-style fields)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..tiepoint_layer import write_tiepoints_gpkg

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts


def write(artifacts: RunArtifacts, path: Path) -> None:
    """Write every tie point of ``artifacts`` (inliers and outliers, flagged) to ``path``."""
    write_tiepoints_gpkg(path, artifacts.tiepoints)
