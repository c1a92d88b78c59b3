"""BNN (Bridge Neural Network, MoCo-BNN) as a matcher: dense search in the common embedding space.

The template (from the optical reference) is embedded once by the optical tower ``g``; every
template-sized patch of the search window (from the SAR target) is embedded by the SAR tower
``f``, in batches; the similarity map is the contract score ``1 / (1 + h)`` with
``h = ||f(x_s) - g(x_o)||_2 / sqrt(50)`` over the displacements, and the peak goes through
:func:`~sarcoreg.core.matchers.peaks.result_from_maps` as for every matcher. ``stride > 1``
evaluates a coarse grid first and then every displacement within ``stride`` of its best one.

:meth:`BNNMatcher.verify` is the patch verification mode: one score per candidate for the
template against the search window's centre patch (zero displacement).

Back ends (the model comes from :func:`sarcoreg.models.load` on first use):

* ONNX graphs exported by :func:`sarcoreg.models.bnn.export_onnx` have separate batch axes for
  ``a`` and ``b``: one template ``(1, 1, P, P)`` is run against ``K`` patches per call (the
  template's tower costs one patch per call);
* a torch BNN (``.pt``) is run through ``embed_optical`` / ``embed_sar`` directly;
* any other patch model is scored pair by pair with the template repeated (slower, same maps).

Templates of another size than the model's patch size are resampled to it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..methods import default_model, get_method
from .base import ChipBatch
from .learned import LearnedMatcher
from .search import MapScorer, SearchPlan

__all__ = ["DEFAULT_MODEL", "BNNMatcher"]

#: Card name looked for when no model is given (none is shipped until a GPU run trains one).
DEFAULT_MODEL = default_model("bnn")


class BNNMatcher(LearnedMatcher):
    """Dense search with a BNN patch model.

    Args:
        model: A card name, a ``.onnx`` / ``.pt`` path, or a loaded patch model.
        device: ``auto``, ``cpu`` or ``cuda`` (for :func:`sarcoreg.models.load`).
        backend: ``auto``, ``onnx`` or ``torch`` (for :func:`sarcoreg.models.load`).
        stride: Step of the coarse displacement grid (1 = every displacement).
        min_valid: Smallest share of valid pixels a template and a search window need.
        batch_size: Search-window patches per model call.
        chips_per_call: Candidates the engine passes per :meth:`match` call.
    """

    name: ClassVar[str] = "bnn"
    description: ClassVar[str] = get_method("bnn").description
    train_command: ClassVar[str] = (
        "sarcoreg-train bnn-moco --data DATA --out MOCO, then sarcoreg-train bnn --init moco --moco-dir MOCO "
        "--data DATA --out RUN"
    )

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        device: str = "auto",
        backend: str = "auto",
        stride: int = 1,
        min_valid: float = 0.7,
        batch_size: int = 512,
        chips_per_call: int = 8,
    ) -> None:
        self.stride, self.min_valid = self._checked_search(stride, min_valid, "stride")
        self._init_model(model, device, backend, batch_size)
        self.patch_batch = int(batch_size)
        self.batch_size = int(chips_per_call)

    # -- scoring ------------------------------------------------------------------------------
    def _one_to_many(self, template: np.ndarray, patches: np.ndarray) -> np.ndarray:
        """Scores ``(K,)`` of one optical template ``(P, P)`` against SAR patches ``(K, P, P)``."""
        m = self.model
        k = len(patches)
        if k == 0:
            return np.zeros(0, np.float32)
        step = self.patch_batch
        a = np.ascontiguousarray(template[None, None], dtype=np.float32)
        session = getattr(m, "session", None)
        if session is not None and _broadcasts(session):
            names = m.input_names
            out = [
                np.asarray(session.run(None, {names[0]: a, names[1]: patches[i : i + step, None]})[0]).reshape(-1)
                for i in range(0, k, step)
            ]
            return np.concatenate(out).astype(np.float32)
        module = getattr(m, "module", None)
        if module is not None and hasattr(module, "embed_sar") and hasattr(module, "embed_optical"):
            import torch

            dev = next(module.parameters()).device
            with torch.inference_mode():
                za = module.embed_optical(torch.from_numpy(a).to(dev))
                out = []
                for i in range(0, k, step):
                    zb = module.embed_sar(torch.from_numpy(np.ascontiguousarray(patches[i : i + step, None])).to(dev))
                    h = module.distance_of_embeddings(za, zb)
                    out.append((1.0 / (1.0 + h)).float().cpu().numpy())
            return np.concatenate(out).astype(np.float32)
        return np.asarray(m.score(np.repeat(template[None], k, axis=0), patches), np.float32)

    # -- the search --------------------------------------------------------------------------
    def scorer(self) -> MapScorer:
        """One template against many patches, chip by chip (:meth:`_one_to_many`)."""
        return _OneToMany(self)

    def search_plan(self) -> SearchPlan:
        """Grid at ``stride``, then up to three dense squares of half-size ``stride`` around the best."""
        return SearchPlan(stride=self.stride, square=3)

    def distance_map(self, template: np.ndarray, window: np.ndarray) -> np.ndarray:
        """Similarity map of one chip pair.

        Args:
            template: ``(T, T)`` optical template in [0, 1], no NaN.
            window: ``(T + 2R, T + 2R)`` SAR search window in [0, 1], no NaN.

        Returns:
            ``(2R + 1, 2R + 1)`` float32 scores ``1 / (1 + h)``; NaN where not evaluated
            (only with ``stride > 1``).
        """
        return self.displacement_maps(template[None], window[None], np.zeros(1, np.int64))[0]

    def verify(self, chips: ChipBatch) -> np.ndarray:
        """Patch verification: score ``(N,)`` of each template against its window's centre patch.

        Args:
            chips: Templates ``(N, T, T)`` (optical) and search windows (SAR) centred on the same point.

        Returns:
            ``(N,)`` float32 scores ``1 / (1 + h)``; NaN for rows with too much nodata.
        """
        ref, tgt, errors, _ = self.checked_chips(chips)
        t, r = chips.template_size, chips.radius
        out = np.full(len(chips), np.nan, np.float32)
        rows = np.array([k for k, e in enumerate(errors) if not e], dtype=np.int64)
        if len(rows):
            a = self._resize(ref[rows])
            b = self._resize(tgt[rows, r : r + t, r : r + t])
            self.evaluations += len(rows)
            out[rows] = np.asarray(self.model.score(a, b), np.float32)  # one batched pairwise call
        return out



class _OneToMany:
    """:class:`~sarcoreg.core.matchers.search.MapScorer` of a BNN: each chip's template against its wanted patches."""

    def __init__(self, matcher: BNNMatcher) -> None:
        self.matcher = matcher

    def begin(self, templates: np.ndarray, rows: np.ndarray) -> None:
        """Nothing to prepare (the template is embedded with each call)."""

    def score(self, templates: np.ndarray, windows: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """``(M,)`` float32 scores of ``entries`` ``(M, 3)`` = ``(k, u, v)``, one model pass per chip."""
        m = self.matcher
        out = np.empty(len(entries), np.float32)
        chips, starts = np.unique(entries[:, 0], return_index=True)
        for k, lo, hi in zip(chips, starts, [*starts[1:], len(entries)], strict=True):
            part = entries[lo:hi]
            patches = m._resize(windows[k, part[:, 2], part[:, 1]])
            out[lo:hi] = m._one_to_many(m._resize(templates[k][None])[0], patches)
        return out


def _broadcasts(session: Any) -> bool:
    """Whether an ONNX graph's two inputs have distinct symbolic batch axes (one-to-many scoring)."""
    a, b = (i.shape[0] for i in session.get_inputs()[:2])
    return isinstance(a, str) and isinstance(b, str) and a != b
