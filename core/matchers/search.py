"""The one displacement-map search of the learned matchers: a coarse grid, then refinement.

A *displacement map* of a template ``(T, T)`` over a search window ``(S, S)`` (``S = T + 2 R``)
holds at ``[v, u]`` the score of the template against the window's ``T x T`` patch whose
top-left corner is ``(u, v)``; ``[R + dy, R + dx]`` is thus the score of displacement
``(dx, dy)`` (the convention of :class:`~sarcoreg.core.matchers.base.MatchResult`). A dense map
costs ``(2 R + 1)^2`` model evaluations per template, so :class:`DisplacementSearch` evaluates a
grid of displacements first and then refines around each map's best entry, as a
:class:`SearchPlan` says; entries it never evaluates stay NaN.

What an entry costs is the scorer's business (:class:`MapScorer`): a patch-pair score
(:class:`PairScorer`, RRL-Net), an inner product of descriptors (:class:`DescriptorScorer`, AAE),
or one template against many patches (the BNN's two towers). The search hands a scorer all the
entries it wants next, sorted by ``(chip, u, v)``, and the scorer batches them as its model
likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

__all__ = [
    "DescriptorScorer",
    "DisplacementSearch",
    "MapScorer",
    "PairScorer",
    "SearchPlan",
    "grid_positions",
    "resample_patches",
]


def grid_positions(span: int, stride: int) -> np.ndarray:
    """Window corners along one axis: every ``stride``-th of ``0 .. span - 1``, symmetric about the centre.

    Args:
        span: Number of window positions ``S - T + 1`` (odd for a centred search).
        stride: Step between positions (1 = all).

    Returns:
        Sorted int64 positions; the centre ``(span - 1) // 2`` is always one of them.

    Raises:
        ValueError: ``span`` or ``stride`` below 1.
    """
    if span < 1 or stride < 1:
        raise ValueError(f"span and stride must be >= 1, got {span}, {stride}")
    c = (span - 1) // 2
    return np.unique(np.r_[np.arange(c, -1, -stride), np.arange(c, span, stride)]).astype(np.int64)


def resample_patches(patches: np.ndarray, size: int) -> np.ndarray:
    """Patches ``(M, T, T)`` -> ``(M, size, size)`` float32 (area when shrinking, linear when enlarging).

    Args:
        patches: ``(M, T, T)`` patches.
        size: The model's patch size ``P``.

    Returns:
        ``(M, P, P)`` C-contiguous float32 (the input itself, as float32, when ``T == P``).
    """
    patches = np.ascontiguousarray(patches, dtype=np.float32)
    if patches.shape[1] == size:
        return patches
    out = np.empty((patches.shape[0], size, size), np.float32)
    interp = cv2.INTER_AREA if patches.shape[1] > size else cv2.INTER_LINEAR
    for i, p in enumerate(patches):
        out[i] = cv2.resize(p, (size, size), interpolation=interp)
    return out


@dataclass(frozen=True)
class SearchPlan:
    """How :class:`DisplacementSearch` walks a map, in this order.

    With ``s = min(stride, max(1, R))`` (the step clamped to the search radius ``R``):

    1. the grid :func:`grid_positions` ``(span, s)`` squared;

    and only when ``s > 1``:

    2. ``halving``: the 8 neighbours of each map's best entry at distance ``s // 2``, then
       ``s // 4`` ... down to 1 (one round each);
    3. ``square`` rounds (at most) of the dense ``(2 s + 1)^2`` square around the best entry,
       stopping when a round adds nothing;
    4. the 3 x 3 hill climb around the best entry, stopping when a round adds nothing, for at
       most ``max(climb, s)`` rounds (``climb=0``: none; ``climb=None``: until it stops), so
       that the sub-pixel fit finds the peak's neighbours.

    Attributes:
        stride: Step of the coarse grid of displacements (1 = the dense map).
        halving: Refine by halving steps (step 2).
        square: Rounds of the dense square around the best (step 3).
        climb: Rounds of the 3 x 3 hill climb (step 4).
    """

    stride: int = 1
    halving: bool = False
    square: int = 0
    climb: int | None = 0

    def __post_init__(self) -> None:
        if int(self.stride) < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


class MapScorer(Protocol):
    """What the search needs of a model: scores of map entries.

    Implementations batch the entries as their model likes; the scores of one entry must not
    depend on the others in the call.
    """

    def begin(self, templates: np.ndarray, rows: np.ndarray) -> None:
        """Per-search set-up (e.g. embed the templates ``templates[rows]`` once).

        Args:
            templates: ``(N, T, T)`` float32 templates.
            rows: ``(K,)`` int64 indices of the chips that will be scored.
        """

    def score(self, templates: np.ndarray, windows: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """Scores of map entries, higher is better.

        Args:
            templates: ``(N, T, T)`` float32 templates.
            windows: ``(N, span, span, T, T)`` view: ``windows[k, v, u]`` is chip ``k``'s patch at corner ``(u, v)``.
            entries: ``(M, 3)`` int64 ``(k, u, v)`` rows, sorted, unique, none evaluated yet.

        Returns:
            ``(M,)`` float32 scores.
        """
        ...


class PairScorer:
    """Patch-pair scoring: ``model.score(a, b)`` of each template with each wanted patch.

    Args:
        model: Anything with ``patch_size`` and ``score(a (M, P, P), b (M, P, P)) -> (M,)``.
        batch_size: Pairs per ``score`` call; None passes all wanted entries in one call (the
            model batches inside).
    """

    def __init__(self, model: Any, batch_size: int | None = None) -> None:
        self.model = model
        self.size = int(model.patch_size)
        self.batch_size = batch_size

    def begin(self, templates: np.ndarray, rows: np.ndarray) -> None:
        """Nothing to prepare: every pair is scored whole."""

    def score(self, templates: np.ndarray, windows: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """``(M,)`` float32 pair scores of ``entries`` ``(M, 3)`` (see :class:`MapScorer`)."""
        step = len(entries) if self.batch_size is None else max(1, int(self.batch_size))
        out = [
            np.asarray(self.model.score(resample_patches(templates[part[:, 0]], self.size),
                                        resample_patches(windows[part[:, 0], part[:, 2], part[:, 1]], self.size)),
                       np.float32).reshape(-1)
            for part in (entries[i : i + step] for i in range(0, len(entries), max(1, step)))
        ]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class DescriptorScorer:
    """Descriptor scoring: inner product of the template's and each patch's descriptor.

    Args:
        model: Anything with ``patch_size``, ``embed_optical(x (M, P, P)) -> (M, D)`` for the
            templates and ``embed_sar(x) -> (M, D)`` for the search-window patches (unit
            descriptors give the cosine similarity).
        batch_size: Patches per ``embed_sar`` call.
    """

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.size = int(model.patch_size)
        self.batch_size = max(1, int(batch_size))
        self._desc: dict[int, np.ndarray] = {}

    def begin(self, templates: np.ndarray, rows: np.ndarray) -> None:
        """Embed the templates ``templates[rows]`` in one ``embed_optical`` call."""
        self._desc = {}
        if len(rows):
            d = np.asarray(self.model.embed_optical(resample_patches(templates[rows], self.size)), np.float32)
            self._desc = {int(k): d[i] for i, k in enumerate(rows)}

    def score(self, templates: np.ndarray, windows: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """``(M,)`` float32 inner products for ``entries`` ``(M, 3)`` (see :class:`MapScorer`)."""
        out = []
        for i in range(0, len(entries), self.batch_size):
            part = entries[i : i + self.batch_size]
            k, u, v = part[:, 0], part[:, 1], part[:, 2]
            d = np.asarray(self.model.embed_sar(resample_patches(windows[k, v, u], self.size)), np.float32)
            out.append((d * np.stack([self._desc[int(j)] for j in k])).sum(axis=1))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class DisplacementSearch:
    """Coarse grid, then refinement (:class:`SearchPlan`), of displacement maps scored by a :class:`MapScorer`.

    Args:
        scorer: Scores map entries.
        plan: The walk over the map.

    Attributes:
        evaluations: Map entries scored so far (the cost, in model evaluations).
    """

    def __init__(self, scorer: MapScorer, plan: SearchPlan) -> None:
        self.scorer = scorer
        self.plan = plan
        self.evaluations = 0

    def maps(self, templates: np.ndarray, searches: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Displacement maps of the chips in ``rows``.

        Args:
            templates: ``(N, T, T)`` float32 templates, no NaN.
            searches: ``(N, S, S)`` float32 search windows, no NaN, ``S - T`` even and >= 0.
            rows: Indices of the chips to evaluate (default all); the others stay all-NaN.

        Returns:
            ``(N, S - T + 1, S - T + 1)`` float32 maps, NaN where not evaluated.
        """
        n, t = templates.shape[0], templates.shape[1]
        span = searches.shape[1] - t + 1
        maps = np.full((n, span, span), np.nan, np.float32)
        idx = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(idx) == 0:
            return maps
        windows = np.lib.stride_tricks.sliding_window_view(searches, (1, t, t))[:, :, :, 0]  # (N, span, span, T, T)
        self.scorer.begin(templates, idx)

        def fill(want: np.ndarray) -> int:
            ok = ((want[:, 1:] >= 0) & (want[:, 1:] < span)).all(axis=1)
            want = np.unique(want[ok], axis=0)
            want = want[np.isnan(maps[want[:, 0], want[:, 2], want[:, 1]])]
            if len(want):
                maps[want[:, 0], want[:, 2], want[:, 1]] = self.scorer.score(templates, windows, want)
                self.evaluations += len(want)
            return len(want)

        def around(offsets: np.ndarray) -> np.ndarray:
            """``(k, u, v)`` of each map's best entry moved by each of ``offsets`` ``(D, 2)``."""
            flat = np.where(np.isfinite(maps[idx]), maps[idx], -np.inf).reshape(len(idx), -1)
            v, u = np.divmod(flat.argmax(axis=1), span)
            near = np.stack([u, v], axis=1)[:, None, :] + offsets[None, :, :]
            return np.concatenate([np.repeat(idx, len(offsets))[:, None], near.reshape(-1, 2)], axis=1)

        def rounds(offsets: np.ndarray, most: int) -> None:
            for _ in range(most):
                if fill(around(offsets)) == 0:
                    break

        p = self.plan
        s = min(int(p.stride), max(1, (span - 1) // 2))
        grid = grid_positions(span, s)
        gu, gv = np.meshgrid(grid, grid)
        fill(np.stack([np.repeat(idx, gu.size), np.tile(gu.ravel(), len(idx)), np.tile(gv.ravel(), len(idx))], axis=1))
        if s > 1:
            ring = np.array([(du, dv) for dv in (-1, 0, 1) for du in (-1, 0, 1) if du or dv], np.int64)
            step = s // 2
            while p.halving and step >= 1:
                fill(around(ring * step))
                step //= 2
            d = np.arange(-s, s + 1)
            du, dv = np.meshgrid(d, d)
            rounds(np.stack([du.ravel(), dv.ravel()], axis=1), p.square)
            if p.climb is None or p.climb > 0:
                rounds(ring, span if p.climb is None else max(p.climb, s))
        return maps
