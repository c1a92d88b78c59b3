"""The skeleton of the matchers that run a trained model (RRL-Net, BNN, AAE).

A learned matcher takes ``model`` (a model name from ``sarcoreg models list``, a ``.onnx`` /
``.pt`` path, or an already loaded model object), ``device`` and ``backend``; the model is loaded
on the first match, so listing or validating matchers stays cheap and never imports torch.

:meth:`LearnedMatcher.match` is written once for all of them:

1. input checks and nodata handling (:meth:`LearnedMatcher.checked_chips`): nodata filled with
   each chip's valid mean, values clipped to [0, 1], rows with too little valid data
   (``min_valid``) or a flat template rejected with a reason;
2. the displacement maps of the other rows by the one coarse-grid-then-refine search
   (:class:`~sarcoreg.core.matchers.search.DisplacementSearch`);
3. the peak, sub-pixel fit and reliability (:func:`~sarcoreg.core.matchers.peaks.result_from_maps`).

A subclass names its model loader (:meth:`LearnedMatcher._load`, :meth:`LearnedMatcher._accepts`),
its scoring (:meth:`LearnedMatcher.scorer`: patch-pair score or descriptor inner product) and its
search plan (:meth:`LearnedMatcher.search_plan`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np

from .base import ChipBatch, Matcher, MatchResult
from .peaks import fill_invalid, result_from_maps, valid_fractions
from .search import DisplacementSearch, MapScorer, SearchPlan, resample_patches

__all__ = ["CheckedChips", "LearnedMatcher"]

#: ``(templates (N, T, T), windows (N, S, S), errors (N,), weight (N,))`` of :meth:`LearnedMatcher.checked_chips`.
CheckedChips = tuple[np.ndarray, np.ndarray, list[str], np.ndarray]


class LearnedMatcher(Matcher):
    """Base of the learned matchers: model spec checks, lazy loading, the checked search.

    Subclasses set :attr:`default_model` and :attr:`train_command`, call :meth:`_init_model`
    (and :meth:`_checked_search`) from their constructor, implement :meth:`scorer` and
    :meth:`search_plan`, and may override :meth:`_accepts` and :meth:`_load`.
    """

    #: Model used when the user gives none.
    default_model: ClassVar[str] = ""
    #: How to make a model (for the "no such model" message).
    train_command: ClassVar[str] = ""
    #: Smallest share of valid pixels a template and a search window need.
    min_valid: float = 0.7
    #: Map entries scored so far (cost accounting for benchmarks).
    evaluations: int = 0

    def _init_model(self, model: Any, device: str, backend: str, batch_size: int) -> None:
        """Remember how to load ``model`` (or take it as is, if it is a loaded model)."""
        by_spec = isinstance(model, str) or hasattr(model, "__fspath__")
        if not by_spec and not self._accepts(model):
            raise ValueError(f"model must be a name, a path or a loaded model, got {type(model).__name__}")
        self._model_spec = model
        self._model: Any = None if by_spec else model
        self._load_options = {"device": device, "backend": backend, "batch_size": batch_size}
        self.device = str(getattr(self._model, "device", device))
        self.evaluations = 0

    @staticmethod
    def _checked_search(stride: int, min_valid: float, stride_name: str = "stride") -> tuple[int, float]:
        """``(stride, min_valid)`` checked: a search step >= 1 and a valid share in [0, 1].

        Raises:
            ValueError: A bad value; the message names the option.
        """
        if int(stride) < 1:
            raise ValueError(f"{stride_name} must be >= 1, got {stride}")
        if not 0.0 <= min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
        return int(stride), float(min_valid)

    @staticmethod
    def _accepts(model: Any) -> bool:
        """Whether an already loaded object can serve as this matcher's model."""
        return hasattr(model, "score") and hasattr(model, "patch_size")

    def _load(self, spec: Any, **options: Any) -> Any:
        """Load the model named or pointed to by ``spec`` (default: :func:`sarcoreg.models.load`)."""
        from sarcoreg.models import load

        return load(spec, **options)

    @property
    def model(self) -> Any:
        """The model, loaded on first use.

        Raises:
            ValueError: No such model; the message names it, lists the known ones and says how to
                make and pass one.
        """
        if self._model is None:
            spec = self._model_spec
            try:
                self._model = self._load(spec, **self._load_options)
            except ValueError as exc:
                if "unknown model" not in str(exc):
                    raise
                from sarcoreg.models.registry import list_models

                raise ValueError(
                    f"{self.name} matcher: unknown model '{spec}' (no model card '{spec}'; known models: "
                    f"{', '.join(list_models()) or 'none'}). Train one with "
                    f"'{self.train_command or f'sarcoreg-train {self.name} --data DATA --out RUN'}' (see README, "
                    "Training) and pass it with --model NAME_OR_PATH (the 'model' option of the matcher / the MODEL "
                    "parameter in QGIS)"
                ) from exc
            self.device = str(self._model.device)
        return self._model

    def _resize(self, patches: np.ndarray) -> np.ndarray:
        """``(M, T, T)`` -> ``(M, P, P)`` float32 for the model's patch size ``P`` (area / linear)."""
        return resample_patches(patches, int(self.model.patch_size))

    # -- the one search ------------------------------------------------------------------------
    @abstractmethod
    def scorer(self) -> MapScorer:
        """How one map entry is scored with :attr:`model` (patch pair, descriptors ...)."""

    @abstractmethod
    def search_plan(self) -> SearchPlan:
        """How the displacement maps are walked (coarse grid, then refinement)."""

    def checked_chips(self, chips: ChipBatch) -> CheckedChips:
        """Nodata filled, values clipped, and a reason for every row that cannot be matched.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)`` with masks.

        Returns:
            ``(templates, windows, errors, weight)``: float32 ``(N, T, T)`` and ``(N, S, S)`` in
            [0, 1] without NaN (nodata replaced by each chip's valid mean), ``errors`` ("" for a
            row to match, else why not: too much nodata, no contrast) and ``weight`` ``(N,)``, the
            smaller valid share of template and window.
        """
        ref = np.clip(fill_invalid(chips.reference, chips.reference_valid), 0.0, 1.0)
        tgt = np.clip(fill_invalid(chips.target, chips.target_valid), 0.0, 1.0)
        ref_frac, tgt_frac = valid_fractions(chips)
        weight = np.minimum(ref_frac, tgt_frac)
        errors = []
        for k in range(len(chips)):
            if weight[k] < self.min_valid:
                errors.append(
                    f"too much nodata (template {ref_frac[k]:.0%}, search window {tgt_frac[k]:.0%} valid, "
                    f"need {self.min_valid:.0%})"
                )
            elif float(ref[k].std()) < 1e-6:
                errors.append("template has no contrast")
            else:
                errors.append("")
        return ref, tgt, errors, weight

    def displacement_maps(self, templates: np.ndarray, windows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Maps of the chips in ``rows`` by this matcher's scorer and plan.

        Args:
            templates: ``(N, T, T)`` float32 in [0, 1] without NaN.
            windows: ``(N, T + 2R, T + 2R)`` float32 in [0, 1] without NaN.
            rows: Indices of the chips to evaluate; the others stay all-NaN.

        Returns:
            ``(N, 2R + 1, 2R + 1)`` float32 maps, NaN where not evaluated.
        """
        search = DisplacementSearch(self.scorer(), self.search_plan())
        maps = search.maps(templates, windows, rows)
        self.evaluations += search.evaluations
        return maps

    def match(self, chips: ChipBatch) -> MatchResult:
        """Find each template in its search window by the model's scores.

        Args:
            chips: Templates ``(N, T, T)`` (optical) and search windows ``(N, T + 2R, T + 2R)`` (SAR).

        Returns:
            Rows with score = the model's score at the peak and maps ``(N, 2R + 1, 2R + 1)``
            (NaN where not evaluated).
        """
        ref, tgt, errors, weight = self.checked_chips(chips)
        rows = np.array([k for k, e in enumerate(errors) if not e], dtype=np.int64)
        size = 2 * chips.radius + 1
        maps = (self.displacement_maps(ref, tgt, rows) if len(rows)
                else np.full((len(chips), size, size), np.nan, np.float32))
        return result_from_maps(chips, maps, self.name, weight=weight, errors=errors)
