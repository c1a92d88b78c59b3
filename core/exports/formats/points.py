"""``gcps.points``: the inlier tie points as GCPs for the QGIS Georeferencer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..points_file import write_points

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts


def write(artifacts: RunArtifacts, path: Path) -> None:
    """Target pixel -> reference map coordinates of the tie points, in the outputs' CRS."""
    write_points(path, artifacts.tiepoints, artifacts.grid.target.georef, artifacts.crs_wkt)
