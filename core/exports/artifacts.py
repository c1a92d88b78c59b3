"""What a run hands to the output writers: one :class:`RunArtifacts` value.

Every writer of the output-format list (:mod:`sarcoreg.core.output_formats`) gets the same value
and takes what it needs from it; the engine builds it once, after the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ..chips import Preparation
    from ..estimation import FitResult
    from ..georef import Georef
    from ..raster_io import CommonGrid
    from ..tiepoints import TiePoints
    from .cog import CoregisteredRecipe

__all__ = ["OutputSettings", "RunArtifacts"]


class OutputSettings(Protocol):
    """The options the writers need (:class:`~sarcoreg.core.engine.CoregOptions` has them)."""

    @property
    def resampling(self) -> str:
        """GDAL resampling of a warped ``coregistered.tif``."""

    @property
    def spacing(self) -> int | None:
        """Tie-point spacing, reference pixels (resolved: not None); the shift field's step is a quarter."""


@dataclass(frozen=True)
class RunArtifacts:
    """Everything an output writer may need from one co-registration.

    Attributes:
        grid: The common grid: the reference and target rasters (paths, datasets, bands), their
            georeferencing (``grid.reference_georef``, ``grid.target.georef``) and the CRS the
            outputs carry (``grid.crs_wkt``, "" for none).
        fit: The fitted correction (reference-grid pixels), its inverse, residuals and RMSE.
        tiepoints: The tie points (one row per candidate), with residuals and outlier flags.
        report: The run's report (the content of ``report.json``). Writers may add entries in
            ``prepare`` or in the main thread (not in an ``own_thread`` writer's thread).
        settings: The output options (:class:`OutputSettings`).
        ref_prep: How the reference's windows are prepared (the report's checkerboards).
        tgt_prep: How the target's windows are prepared.
        keys: The output keys of this set (the formats being written).
        maps: The matcher's maps over the search windows (one per tie point), or None.
        extra_images: Caption -> PNG bytes the HTML report embeds (e.g. shared-modality images).
    """

    grid: CommonGrid
    fit: FitResult
    tiepoints: TiePoints
    report: dict[str, Any]
    settings: OutputSettings
    ref_prep: Preparation
    tgt_prep: Preparation
    keys: tuple[str, ...] = ()
    maps: np.ndarray | None = None
    extra_images: dict[str, bytes] = field(default_factory=dict)

    @property
    def crs_wkt(self) -> str:
        """The reference's CRS, or the one assumed for it ("" for none): the outputs' CRS."""
        return self.grid.crs_wkt

    @property
    def reference_georef(self) -> Georef:
        """Georeferencing of the reference grid (the outputs' grid)."""
        return self.grid.reference_georef

    @cached_property
    def coregistered_recipe(self) -> CoregisteredRecipe:
        """How ``coregistered.tif`` is made from the target (computed once, on first use)."""
        from .cog import coregistered_recipe

        return coregistered_recipe(self.grid, self.fit, self.settings.resampling)
