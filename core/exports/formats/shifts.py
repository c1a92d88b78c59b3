"""``shifts.tif``: the shift field, a coarse 2-band (dx, dy) GeoTIFF of the fitted correction."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..shift_field import write_shift_field

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts


def write(artifacts: RunArtifacts, path: Path) -> None:
    """The correction sampled every quarter tie-point spacing (at least 4 px) on the reference grid.

    Raises:
        ValueError: The tie-point spacing is not resolved (None).
    """
    spacing = artifacts.settings.spacing
    if spacing is None:
        raise ValueError("the shift field needs a resolved tie-point spacing")
    # The model is already in reference-grid pixels: its inverse gives the grid position.
    write_shift_field(path, artifacts.reference_georef, artifacts.fit.inverse.apply, max(4, spacing // 4))
