"""``coregistered.tif``: the co-registered target, a Cloud-Optimised GeoTIFF (see :mod:`..cog`).

Written by a thread of its own beside the other outputs (the format is ``own_thread``): GDAL reads
the target through a handle of its own and runs without the GIL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..cog import write_cog

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts


def prepare(artifacts: RunArtifacts) -> None:
    """Say in the report how the raster is made (``coregistered_by``: "geotransform" or "warp")."""
    artifacts.report["coregistered_by"] = artifacts.coregistered_recipe.how


def write(artifacts: RunArtifacts, path: Path) -> None:
    """Apply the run's recipe to the target raster's file and write the COG at ``path``."""
    write_cog(path, artifacts.grid.target.path, artifacts.coregistered_recipe)
