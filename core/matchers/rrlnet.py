"""RRL-Net as a matcher: the learned patch similarity evaluated over the search window.

For every candidate the template is compared with the target patch at candidate displacements
inside the search window; the similarity map (``(2 R + 1, 2 R + 1)``, NaN where not evaluated)
then goes through :func:`~sarcoreg.core.matchers.peaks.result_from_maps` like every other
matcher's. A dense map costs ``(2 R + 1)^2`` network evaluations per candidate (1089 for
R = 16), so by default the map is sampled on a coarse grid (``coarse_stride``) and refined
around the best position by a hill climb with halving steps down to 1 pixel, which ends with
the full 3 x 3 neighbourhood of the peak evaluated (needed by the sub-pixel fit): about 100
evaluations per candidate for R = 16 and stride 4. ``coarse_stride=1`` gives the dense map.

The model comes from :func:`sarcoreg.models.load` on first use (ONNX Runtime by default; torch
is never imported unless a ``.pt`` model is asked for). Templates of another size than the model's
patch size are resampled to it (template and target patches alike).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..methods import default_model, get_method
from .learned import LearnedMatcher
from .search import MapScorer, PairScorer, SearchPlan

__all__ = ["RRLNetMatcher"]

#: Model used when none is named: the SAR-optical RRL-Net shipped in ``models/``.
DEFAULT_MODEL = default_model("rrlnet")


class RRLNetMatcher(LearnedMatcher):
    """Learned patch similarity (RRL-Net) over the search window.

    Args:
        model: A card name (``rrlnet-sar-optical``, ``rrlnet-visnir``), a ``.onnx`` / ``.pt``
            path, or an already loaded patch model (anything with ``patch_size`` and
            ``score(a, b)``).
        device: ``auto``, ``cpu`` or ``cuda`` (passed to :func:`sarcoreg.models.load`).
        backend: ``auto``, ``onnx`` or ``torch`` (passed to :func:`sarcoreg.models.load`).
        coarse_stride: Step of the coarse grid of displacements (1 = dense map).
        min_valid: Smallest share of valid pixels a template and a search window need.
        batch_size: Patch pairs per model call.
        chips_per_call: How many candidates the engine should pass per :meth:`match` call
            (each costs about 100 model evaluations with the defaults).
    """

    name: ClassVar[str] = "rrlnet"
    description: ClassVar[str] = get_method("rrlnet").description
    train_command: ClassVar[str] = "sarcoreg-train rrlnet --data DATA --out RUN"

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        device: str = "auto",
        backend: str = "auto",
        coarse_stride: int = 4,
        min_valid: float = 0.7,
        batch_size: int = 256,
        chips_per_call: int = 16,
    ) -> None:
        self.coarse_stride, self.min_valid = self._checked_search(coarse_stride, min_valid, "coarse_stride")
        self._init_model(model, device, backend, batch_size)
        self.batch_size = int(chips_per_call)

    # -- the search --------------------------------------------------------------------------
    def scorer(self) -> MapScorer:
        """Patch-pair scoring: ``model.score(template, patch)``, all wanted pairs per call."""
        return PairScorer(self.model)

    def search_plan(self) -> SearchPlan:
        """Coarse grid at ``coarse_stride``, halving steps, then a 3 x 3 hill climb."""
        return SearchPlan(stride=self.coarse_stride, halving=True, climb=3)

    def similarity_maps(self, ref: np.ndarray, tgt: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Coarse-to-fine similarity maps of the given chips.

        Args:
            ref: ``(N, T, T)`` templates in [0, 1] without NaN.
            tgt: ``(N, T + 2R, T + 2R)`` search windows in [0, 1] without NaN.
            rows: Indices of the chips to evaluate; the others stay all-NaN.

        Returns:
            ``(N, 2R + 1, 2R + 1)`` float32 maps, NaN where not evaluated.
        """
        return self.displacement_maps(ref, tgt, rows)
