"""``report.html``: the self-contained HTML quality report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..report_html import write_report_html
from ..report_images import checkerboards, tiepoint_map_images

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts


def write(artifacts: RunArtifacts, path: Path) -> None:
    """Figures, tables, checkerboards and the best few matcher maps; ``report["report_maps"]`` says which.

    The "after" checkerboard shows the pixels of ``coregistered.tif`` when the set has it.
    """
    recipe = artifacts.coregistered_recipe if "coregistered" in artifacts.keys else None
    before, after = checkerboards(artifacts.grid, recipe, artifacts.ref_prep, artifacts.tgt_prep)
    images, shown = tiepoint_map_images(artifacts.maps, artifacts.tiepoints)
    artifacts.report["report_maps"] = shown
    write_report_html(path, artifacts.report, artifacts.tiepoints, checkerboard_before=before,
                      checkerboard_after=after, extra_images={**images, **artifacts.extra_images})
