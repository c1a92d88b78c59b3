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
from .base import ChipBatch, MatchResult
from .learned import LearnedMatcher
from .peaks import fill_invalid, result_from_maps, valid_fractions

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
        #: Number of patch pairs scored so far (cost accounting for benchmarks).
        self.evaluations = 0

    # -- patch extraction -------------------------------------------------------------------
    def _score(self, ref: np.ndarray, tgt: np.ndarray, rows: np.ndarray, uv: np.ndarray, t: int) -> np.ndarray:
        """Scores ``(M,)`` of templates ``ref[rows]`` against target patches at corners ``uv`` ``(M, 2)``."""
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        a = self._resize(ref[rows])
        win = np.lib.stride_tricks.sliding_window_view(tgt, (1, t, t))  # (N, 2R+1, 2R+1, 1, T, T)
        b = self._resize(np.ascontiguousarray(win[rows, uv[:, 1], uv[:, 0], 0]))
        self.evaluations += len(rows)
        return np.asarray(self.model.score(a, b), dtype=np.float32)

    def _evaluate(self, ref: np.ndarray, tgt: np.ndarray, maps: np.ndarray, want: list[tuple[int, int, int]]) -> None:
        """Fill ``maps[k, v, u]`` for the wanted ``(k, u, v)`` not evaluated yet."""
        size = maps.shape[1]
        todo = {(k, u, v) for k, u, v in want if 0 <= u < size and 0 <= v < size and np.isnan(maps[k, v, u])}
        if not todo:
            return
        arr = np.array(sorted(todo), dtype=np.int64)
        scores = self._score(ref, tgt, arr[:, 0], arr[:, 1:], ref.shape[1])
        maps[arr[:, 0], arr[:, 2], arr[:, 1]] = scores

    @staticmethod
    def _best(maps: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Integer ``(u, v)`` of the highest finite entry of ``maps[rows]``, ``(len(rows), 2)``."""
        m = np.where(np.isfinite(maps[rows]), maps[rows], -np.inf).reshape(len(rows), -1)
        v, u = np.divmod(m.argmax(axis=1), maps.shape[2])
        return np.stack([u, v], axis=1)

    def similarity_maps(self, ref: np.ndarray, tgt: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Coarse-to-fine similarity maps of the given chips.

        Args:
            ref: ``(N, T, T)`` templates in [0, 1] without NaN.
            tgt: ``(N, T + 2R, T + 2R)`` search windows in [0, 1] without NaN.
            rows: Indices of the chips to evaluate; the others stay all-NaN.

        Returns:
            ``(N, 2R + 1, 2R + 1)`` float32 maps, NaN where not evaluated.
        """
        n, t = ref.shape[0], ref.shape[1]
        r = (tgt.shape[1] - t) // 2
        size = 2 * r + 1
        maps = np.full((n, size, size), np.nan, np.float32)
        if len(rows) == 0:
            return maps
        s = min(self.coarse_stride, max(1, r))
        grid = np.r_[np.arange(r, -1, -s)[::-1], np.arange(r + s, size, s)]
        self._evaluate(ref, tgt, maps, [(int(k), int(u), int(v)) for k in rows for v in grid for u in grid])
        ring = [(du, dv) for dv in (-1, 0, 1) for du in (-1, 0, 1) if du or dv]
        step = s // 2
        while step >= 1:
            best = self._best(maps, rows)
            want = [
                (int(k), int(b[0] + du * step), int(b[1] + dv * step))
                for k, b in zip(rows, best, strict=True)
                for du, dv in ring
            ]
            self._evaluate(ref, tgt, maps, want)
            step //= 2
        for _ in range(max(3, s)):  # hill climb until the 3 x 3 around every peak is known
            best = self._best(maps, rows)
            want = [
                (int(k), int(b[0] + du), int(b[1] + dv)) for k, b in zip(rows, best, strict=True) for du, dv in ring
            ]
            before = int(np.isfinite(maps).sum())
            self._evaluate(ref, tgt, maps, want)
            if int(np.isfinite(maps).sum()) == before:
                break
        return maps

    def match(self, chips: ChipBatch) -> MatchResult:
        """Find each template in its search window by the model's similarity.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)``.

        Returns:
            Rows with score = the model's similarity at the peak (a probability for RRL-Net)
            and maps ``(N, 2R + 1, 2R + 1)`` (NaN where not evaluated).
        """
        ref = np.clip(fill_invalid(chips.reference, chips.reference_valid), 0.0, 1.0)
        tgt = np.clip(fill_invalid(chips.target, chips.target_valid), 0.0, 1.0)
        ref_frac, tgt_frac = valid_fractions(chips)
        errors = []
        for k in range(len(chips)):
            if ref_frac[k] < self.min_valid or tgt_frac[k] < self.min_valid:
                errors.append(
                    f"too much nodata (template {ref_frac[k]:.0%}, search window "
                    f"{tgt_frac[k]:.0%} valid, need {self.min_valid:.0%})"
                )
            elif float(ref[k].std()) < 1e-6:
                errors.append("template has no contrast")
            else:
                errors.append("")
        rows = np.array([k for k, e in enumerate(errors) if not e], dtype=np.int64)
        maps = self.similarity_maps(ref, tgt, rows)
        return result_from_maps(chips, maps, self.name, weight=np.minimum(ref_frac, tgt_frac), errors=errors)
