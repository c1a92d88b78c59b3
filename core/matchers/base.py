"""The one matcher contract every matcher of sarcoreg implements.

The engine cuts, for every candidate tie point, a *template* from the prepared reference image
and a larger *search window* from the prepared target image **already resampled onto the
reference grid**, both centred on the same reference pixel position. A matcher finds where the
template's content lies inside the search window and returns one :class:`MatchResult`.

Coordinates are GDAL pixel coordinates throughout: ``(col, row)`` as float, the top-left corner
of the top-left pixel is ``(0, 0)`` and the centre of pixel ``[i, j]`` is ``(j + 0.5, i + 0.5)``.

A template of size ``T`` whose top-left corner is at integer ``(x0, y0)`` has its centre at
``(x0 + T / 2, y0 + T / 2)``; the search window of size ``S = T + 2 R`` has its corner at
``(x0 - R, y0 - R)``. If the best template position inside the search window has its top-left
corner at ``(u, v)`` (sub-pixel allowed), the content is displaced by ``(u - R, v - R)`` and
``target_xy = ref_xy + (u - R, v - R)``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..methods import get_method, method_names, resolve

__all__ = [
    "ChipBatch",
    "MatchResult",
    "Matcher",
    "available_matchers",
    "get_matcher",
]


@dataclass(frozen=True)
class ChipBatch:
    """A batch of template / search-window pairs for candidate tie points.

    Attributes:
        reference: Templates from the prepared reference, float32 in [0, 1], shape ``(N, T, T)``.
        target: Search windows from the prepared target on the reference grid, float32 in
            [0, 1], shape ``(N, S, S)`` with ``S = T + 2 R``.
        ref_xy: Template centres in reference pixel coordinates, shape ``(N, 2)``.
        reference_valid: Optional validity masks of the templates (False = nodata), ``(N, T, T)``.
        target_valid: Optional validity masks of the search windows, ``(N, S, S)``.
    """

    reference: np.ndarray
    target: np.ndarray
    ref_xy: np.ndarray
    reference_valid: np.ndarray | None = None
    target_valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        ref, tgt = self.reference, self.target
        if ref.ndim != 3 or tgt.ndim != 3:
            raise ValueError(
                f"ChipBatch wants (N, T, T) templates and (N, S, S) search windows, "
                f"got {ref.shape} and {tgt.shape}"
            )
        if ref.shape[0] != tgt.shape[0] or self.ref_xy.shape != (ref.shape[0], 2):
            raise ValueError(
                f"ChipBatch sizes disagree: {ref.shape[0]} templates, {tgt.shape[0]} search "
                f"windows, ref_xy {self.ref_xy.shape}"
            )
        if ref.shape[1] != ref.shape[2] or tgt.shape[1] != tgt.shape[2]:
            raise ValueError(f"templates and search windows must be square: {ref.shape}, {tgt.shape}")
        if tgt.shape[1] < ref.shape[1] or (tgt.shape[1] - ref.shape[1]) % 2:
            raise ValueError(
                f"search window ({tgt.shape[1]}) must be the template size ({ref.shape[1]}) "
                "plus twice a whole search radius"
            )

    def __len__(self) -> int:
        return int(self.reference.shape[0])

    @property
    def template_size(self) -> int:
        """Template side length ``T`` in pixels."""
        return int(self.reference.shape[1])

    @property
    def radius(self) -> int:
        """Search radius ``R`` in pixels: ``(S - T) / 2``."""
        return (int(self.target.shape[1]) - int(self.reference.shape[1])) // 2


@dataclass
class MatchResult:
    """What every matcher returns, one row per candidate.

    Attributes:
        ref_xy: Reference pixel coordinates, ``(N, 2)`` float64.
        target_xy: Matched position in the target (on the reference grid), ``(N, 2)`` float64;
            NaN where no match was found.
        score: Matcher-specific similarity, higher is better, ``(N,)`` float64.
        reliability: Confidence in [0, 1] from the similarity surface's shape (peak sharpness,
            second-peak ratio) or the model, ``(N,)`` float64. The engine rejects points below a
            threshold.
        valid: Whether a match was found at all, ``(N,)`` bool.
        matcher: Name of the matcher that produced the result.
        errors: Per-row reason for an invalid match ("" when valid).
        maps: Optional correspondence / similarity maps over the search displacements,
            ``(N, 2 R + 1, 2 R + 1)`` float32; ``maps[k][R + dy, R + dx]`` is the similarity of
            displacement ``(dx, dy)``.
    """

    ref_xy: np.ndarray
    target_xy: np.ndarray
    score: np.ndarray
    reliability: np.ndarray
    valid: np.ndarray
    matcher: str
    errors: list[str] = field(default_factory=list)
    maps: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.ref_xy.shape[0]
        if not self.errors:
            self.errors = ["" if v else "no match" for v in np.asarray(self.valid, bool)]
        for name in ("target_xy",):
            if getattr(self, name).shape != (n, 2):
                raise ValueError(f"MatchResult.{name} must be ({n}, 2), got {getattr(self, name).shape}")
        for name in ("score", "reliability", "valid"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"MatchResult.{name} must be ({n},), got {getattr(self, name).shape}")
        if len(self.errors) != n:
            raise ValueError(f"MatchResult.errors must have {n} entries, got {len(self.errors)}")

    def __len__(self) -> int:
        return int(self.ref_xy.shape[0])

    @property
    def shift_xy(self) -> np.ndarray:
        """Displacement ``target_xy - ref_xy`` in reference pixels, ``(N, 2)``."""
        return np.asarray(self.target_xy - self.ref_xy)

    @classmethod
    def concatenate(cls, parts: list[MatchResult]) -> MatchResult:
        """Join results of consecutive batches (maps kept only if every part has them)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        maps = None
        if all(p.maps is not None for p in parts):
            maps = np.concatenate([p.maps for p in parts if p.maps is not None])
        return cls(
            ref_xy=np.concatenate([p.ref_xy for p in parts]),
            target_xy=np.concatenate([p.target_xy for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            reliability=np.concatenate([p.reliability for p in parts]),
            valid=np.concatenate([p.valid for p in parts]),
            matcher=parts[0].matcher,
            errors=[e for p in parts for e in p.errors],
            maps=maps,
        )

    @classmethod
    def empty_like(cls, chips: ChipBatch, matcher: str, reason: str) -> MatchResult:
        """A result where every row failed with ``reason``."""
        n = len(chips)
        return cls(
            ref_xy=chips.ref_xy.astype(np.float64),
            target_xy=np.full((n, 2), np.nan),
            score=np.full(n, np.nan),
            reliability=np.zeros(n),
            valid=np.zeros(n, bool),
            matcher=matcher,
            errors=[reason] * n,
        )


class Matcher(ABC):
    """Base class of every matcher (classical or learned).

    Subclasses set :attr:`name` and implement :meth:`match`. Construction takes only the
    matcher's own options (a model path, a device); window and radius come with the chips.
    """

    name: ClassVar[str] = ""
    #: Human-readable one-liner for help texts and the report.
    description: ClassVar[str] = ""
    #: Device actually used ("cpu", "cuda:0", "onnxruntime:CPUExecutionProvider" ...).
    device: str = "cpu"
    #: How many chip pairs the engine should pass per call.
    batch_size: int = 64

    @abstractmethod
    def match(self, chips: ChipBatch) -> MatchResult:
        """Find each template inside its search window.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)``.

        Returns:
            One row per chip pair, coordinates as documented in this module.
        """


def available_matchers() -> list[str]:
    """Names accepted by :func:`get_matcher` (the catalog's window methods), sorted."""
    return sorted(method_names(kind="window"))


def get_matcher(name: str, **options: object) -> Matcher:
    """Build the window matcher called ``name`` (see :mod:`sarcoreg.core.methods`) with its ``options``.

    Raises:
        ValueError: ``name`` is no window method of the catalog (the message lists them), or
            ``options`` holds an option the matcher does not take.
    """
    if name not in method_names(kind="window"):
        raise ValueError(f"unknown matcher '{name}'; choose one of: {', '.join(available_matchers())}")
    factory: Callable[..., Matcher] = resolve(get_method(name).factory)
    accepted = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(
                f"matcher '{name}' does not take the option(s) {unknown}; it takes: {', '.join(accepted) or 'none'}"
            )
    return factory(**options)
