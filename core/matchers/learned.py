"""Shared plumbing of the matchers that run a trained model (RRL-Net, BNN, AAE).

A learned matcher takes ``model`` (a model name from ``sarcoreg models list``, a ``.onnx`` /
``.pt`` path, or an already loaded model object), ``device`` and ``backend``; the model is loaded
on the first match, so listing or validating matchers stays cheap and never imports torch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Matcher

__all__ = ["LearnedMatcher"]


class LearnedMatcher(Matcher):
    """Base of the learned matchers: model spec checks, lazy loading, patch resampling.

    Subclasses set :attr:`default_model` and :attr:`train_command`, call :meth:`_init_model` from
    their constructor, and may override :meth:`_accepts` and :meth:`_load`.
    """

    #: Model used when the user gives none.
    default_model: ClassVar[str] = ""
    #: How to make a model (for the "no such model" message).
    train_command: ClassVar[str] = ""

    def _init_model(self, model: Any, device: str, backend: str, batch_size: int) -> None:
        """Remember how to load ``model`` (or take it as is, if it is a loaded model)."""
        by_spec = isinstance(model, str) or hasattr(model, "__fspath__")
        if not by_spec and not self._accepts(model):
            raise ValueError(f"model must be a name, a path or a loaded model, got {type(model).__name__}")
        self._model_spec = model
        self._model: Any = None if by_spec else model
        self._load_options = {"device": device, "backend": backend, "batch_size": batch_size}
        self.device = str(getattr(self._model, "device", device))

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
        p = int(self.model.patch_size)
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        if patches.shape[1] == p:
            return patches
        if len(patches) == 0:
            return np.zeros((0, p, p), np.float32)
        interp = cv2.INTER_AREA if patches.shape[1] > p else cv2.INTER_LINEAR
        return np.stack([cv2.resize(x, (p, p), interpolation=interp) for x in patches])
