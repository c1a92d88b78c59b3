"""The AAE descriptor matcher: cosine-similarity correspondence maps of learned descriptors.

For every candidate the optical template is embedded once and every ``T x T`` window of the SAR
search window is embedded in batches (:func:`sarcoreg.core.correspondence.correspondence_maps`);
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

from typing import Any, ClassVar

import numpy as np

from ..correspondence import correspondence_maps
from ..methods import default_model, get_method
from .base import ChipBatch, MatchResult
from .learned import LearnedMatcher
from .peaks import fill_invalid, result_from_maps, valid_fractions

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
        #: SAR windows embedded so far (cost accounting).
        self.evaluations = 0

    @staticmethod
    def _accepts(model: Any) -> bool:
        """A descriptor model (``embed_sar``) or a patch model (``score``) with a patch size."""
        return hasattr(model, "patch_size") and (hasattr(model, "embed_sar") or hasattr(model, "score"))

    def _load(self, spec: Any, **options: Any) -> Any:
        """Descriptor models: the pair graph plus its two encoder graphs (or a ``.pt``)."""
        from sarcoreg.models.descriptor_model import load_descriptor_model

        return load_descriptor_model(spec, **options)

    def match(self, chips: ChipBatch) -> MatchResult:
        """Find each optical template in its SAR search window by descriptor cosine similarity.

        Args:
            chips: Templates ``(N, T, T)`` (optical) and search windows ``(N, T + 2R, T + 2R)`` (SAR).

        Returns:
            Rows with score = the cosine similarity at the peak, maps ``(N, 2R + 1, 2R + 1)``.
        """
        model = self.model
        ref = np.clip(fill_invalid(chips.reference, chips.reference_valid), 0.0, 1.0)
        tgt = np.clip(fill_invalid(chips.target, chips.target_valid), 0.0, 1.0)
        ref_frac, tgt_frac = valid_fractions(chips)
        errors = []
        for k in range(len(chips)):
            if min(ref_frac[k], tgt_frac[k]) < self.min_valid:
                errors.append(
                    f"too much nodata (template {ref_frac[k]:.0%}, search window {tgt_frac[k]:.0%} valid, "
                    f"need {self.min_valid:.0%})"
                )
            elif float(ref[k].std()) < 1e-6:
                errors.append("template has no contrast")
            else:
                errors.append("")
        rows = np.array([k for k, e in enumerate(errors) if not e], dtype=np.int64)
        maps, count = correspondence_maps(model, ref, tgt, stride=self.stride, rows=rows,
                                          batch_size=self.window_batch, return_evaluations=True)
        self.evaluations += int(count)
        return result_from_maps(chips, maps, self.name, weight=np.minimum(ref_frac, tgt_frac), errors=errors)
