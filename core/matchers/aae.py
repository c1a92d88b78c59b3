"""The AAE descriptor matcher: cosine-similarity correspondence maps of learned descriptors.

For every candidate the optical template is embedded once and every ``T x T`` window of the SAR
search window is embedded in batches (the search of :class:`~sarcoreg.core.matchers.learned.LearnedMatcher`
with :data:`~sarcoreg.core.correspondence.MAP_PLAN`);
the cosine-similarity map (``(2 R + 1, 2 R + 1)``) then goes through
:func:`~sarcoreg.core.matchers.peaks.result_from_maps` (peak, sub-pixel fit, reliability from
the map's shape, border rejection) like every other matcher's. ``stride > 1`` evaluates a grid
of windows plus the dense neighbourhood of the best grid point (NaN elsewhere); ``stride=1`` is
the paper's full map.

The model is loaded on first use by :func:`sarcoreg.models.descriptor_model.load_descriptor_model`
(card name, pair-model ``.onnx`` with its two encoder graphs next to it, or a ``.pt``
checkpoint); only numpy / cv2 are imported until then.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from ..correspondence import MAP_PLAN, map_scorer
from ..methods import default_model, get_method
from .learned import LearnedMatcher
from .search import MapScorer, SearchPlan

__all__ = ["DEFAULT_MODEL", "AAEMatcher"]

#: Card looked for when no model is named.
DEFAULT_MODEL = default_model("aae")


class AAEMatcher(LearnedMatcher):
    """Semi-supervised adversarial-autoencoder descriptors (Hughes & Schmitt 2019) over the search window.

    Args:
        model: A card name, a pair-model ``.onnx`` path (``<stem>-optical-encoder.onnx`` and
            ``<stem>-sar-encoder.onnx`` next to it), a ``.pt`` checkpoint, or a loaded model
            (``patch_size`` and ``embed_optical`` / ``embed_sar``, or ``score``).
        device: ``auto``, ``cpu`` or ``cuda``.
        backend: ``auto``, ``onnx`` or ``torch``.
        stride: Step of the grid of evaluated windows (1 = dense map).
        min_valid: Smallest share of valid pixels a template and a search window need.
        batch_size: SAR windows per model call.
        chips_per_call: Candidates the engine should pass per :meth:`match` call.
    """

    name: ClassVar[str] = "aae"
    description: ClassVar[str] = get_method("aae").description
    train_command: ClassVar[str] = "sarcoreg-train aae --data DATA --out RUN"

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        device: str = "auto",
        backend: str = "auto",
        stride: int = 2,
        min_valid: float = 0.7,
        batch_size: int = 256,
        chips_per_call: int = 8,
    ) -> None:
        self.stride, self.min_valid = self._checked_search(stride, min_valid, "stride")
        self._init_model(model, device, backend, batch_size)
        self.window_batch = int(batch_size)
        self.batch_size = int(chips_per_call)

    @staticmethod
    def _accepts(model: Any) -> bool:
        """A descriptor model (``embed_sar``) or a patch model (``score``) with a patch size."""
        return hasattr(model, "patch_size") and (hasattr(model, "embed_sar") or hasattr(model, "score"))

    def _load(self, spec: Any, **options: Any) -> Any:
        """Descriptor models: the pair graph plus its two encoder graphs (or a ``.pt``)."""
        from sarcoreg.models.descriptor_model import load_descriptor_model

        return load_descriptor_model(spec, **options)

    # -- the search --------------------------------------------------------------------------
    def scorer(self) -> MapScorer:
        """Descriptor inner products (cosine similarity), or pair scores for a score-only patch model."""
        return map_scorer(self.model, self.window_batch)

    def search_plan(self) -> SearchPlan:
        """The correspondence-map plan (:data:`~sarcoreg.core.correspondence.MAP_PLAN`) at ``stride``."""
        return replace(MAP_PLAN, stride=self.stride)
