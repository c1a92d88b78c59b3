"""``gcps.vrt``: a GDAL VRT of the target carrying the tie points as GCPs (for ``gdalwarp``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..gcp_vrt import write_gcp_vrt

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts


def write(artifacts: RunArtifacts, path: Path) -> None:
    """A VRT over the target raster's file with the tie points as GCPs in the outputs' CRS."""
    write_gcp_vrt(path, artifacts.grid.target.path, artifacts.tiepoints, artifacts.crs_wkt)
