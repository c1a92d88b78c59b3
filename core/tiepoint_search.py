"""How tie points are found: one contract for the engine, two implementations.

The engine asks a :class:`TiePointSearch` for the tie points of one prior offset and gets a
:class:`TiePointSet` back; it never asks which search ran. The catalog (:mod:`.methods`) says
which one a method uses:

* ``kind="window"``: :class:`WindowSearch`, candidates on the reference (a grid and / or
  keypoints) and a window :class:`~.matchers.base.Matcher` (the catalog's ``factory``) run on
  template / search-window chips around them;
* ``kind="keypoint"``: the catalog's ``factory`` names a :class:`TiePointSearch` class built with
  the method's ``matcher_options`` (the shared modality: :class:`~.shared_matching.SharedModalitySearch`).

A search is built once per engine run (:func:`tiepoint_search`), so what it loads (a model, a
keypoint matcher) serves every prior-offset hypothesis of the run.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .candidates import grid_candidates, keypoint_candidates, texture_score
from .chips import Preparation, cut_chips
from .matchers.base import ChipBatch, MatchResult, get_matcher
from .methods import get_method, resolve
from .progress import Progress
from .raster_io import CommonGrid

if TYPE_CHECKING:
    from .engine import CoregOptions

__all__ = ["TiePointSearch", "TiePointSet", "WindowSearch", "resolved_sizes", "tiepoint_search"]

log = logging.getLogger("sarcoreg.engine")


@dataclass
class TiePointSet:
    """The tie points of one search, as the engine uses them downstream.

    Attributes:
        matches: One row per candidate: ``ref_xy`` ``(N, 2)`` reference pixels, ``target_xy``
            ``(N, 2)`` on the matching grid (NaN where none), ``score`` / ``reliability`` ``(N,)``,
            ``valid`` ``(N,)``, ``errors`` and optionally per-point ``maps`` ``(N, 2R + 1, 2R + 1)``.
        device: Device the model / matcher ran on (``"cpu"`` for classical ones).
        report: Sections the search adds to the run's report (e.g. ``{"shared_modality": {...}}``).
        images: Caption -> PNG bytes the search adds to the HTML report.
    """

    matches: MatchResult
    device: str = "cpu"
    report: dict[str, Any] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        """Number of candidates searched (rows of :attr:`matches`)."""
        return len(self.matches)


class TiePointSearch(Protocol):
    """The engine's contract for finding tie points."""

    def check(self) -> None:
        """Fail early (ValueError) on bad options, before any raster is read."""

    def find(
        self,
        grid: CommonGrid,
        ref_prep: Preparation,
        tgt_prep: Preparation,
        offset: tuple[int, int],
        opts: CoregOptions,
        progress: Progress,
    ) -> TiePointSet:
        """Tie points between the reference and the target.

        Args:
            grid: The two rasters on the reference grid.
            ref_prep: Radiometric preparation of the reference.
            tgt_prep: Radiometric preparation of the target (on the grid).
            offset: Prior whole-pixel offset ``(dx, dy)`` of the target (from the coarse stage).
            opts: The run's options with the automatic sizes resolved.
            progress: Progress and cancel (checked between batches / tiles).

        Returns:
            The tie points; ``matches.target_xy`` includes ``offset``.
        """
        ...


def tiepoint_search(method: str, matcher_options: dict[str, Any]) -> TiePointSearch:
    """The search that ``method`` of the catalog uses, built with its ``matcher_options``.

    Raises:
        ValueError: Unknown method or bad options (the message says which).
    """
    spec = get_method(method)
    if spec.kind == "window":
        return WindowSearch(method, matcher_options)
    search: TiePointSearch = resolve(spec.factory)(**matcher_options)
    return search


class WindowSearch:
    """Candidates on the reference, then a window matcher on template / search-window chips.

    Args:
        method: A window method of the catalog.
        matcher_options: Its matcher's options.
    """

    def __init__(self, method: str, matcher_options: dict[str, Any]) -> None:
        self.method = method
        self.matcher_options = dict(matcher_options)

    def check(self) -> None:
        """Build the matcher once: unknown matcher options fail here."""
        get_matcher(self.method, **self.matcher_options)

    @staticmethod
    def candidates(grid: CommonGrid, ref_prep: Preparation, opts: CoregOptions,
                   offset: tuple[int, int]) -> np.ndarray:
        """Candidate template centres ``(N, 2)`` int64 (reference pixels) in the overlap, with room for the search."""
        spacing, window, radius = resolved_sizes(opts)
        x0, y0, w, h = grid.overlap
        # Shrink the usable area by the coarse offset so that search windows stay inside.
        ox, oy = offset
        ax0, ay0 = x0 + max(0, -ox), y0 + max(0, -oy)
        aw, ah = w - abs(ox), h - abs(oy)
        if aw <= 0 or ah <= 0:
            raise ValueError(f"the coarse offset {offset} leaves no overlap to match in")
        pts: list[np.ndarray] = []
        if opts.candidates in ("grid", "both"):
            pts.append(grid_candidates(aw, ah, spacing, window, radius) + [ax0, ay0])
        if opts.candidates in ("keypoints", "both"):
            ov, factor = grid.reference.read_overview(2048, (ax0, ay0, aw, ah))
            img = ref_prep.apply(ov)
            kp = keypoint_candidates(
                np.nan_to_num(img, nan=0.0),
                opts.max_keypoints,
                max(8, int(window / factor)) // 2 * 2,
                int(np.ceil(radius / factor)),
                max(2, int(window / (2 * factor))),
            )
            pts.append(np.round(kp * factor).astype(np.int64) + [ax0, ay0])
        return np.unique(np.concatenate(pts).astype(np.int64), axis=0) if pts else np.empty((0, 2), np.int64)

    def find(self, grid: CommonGrid, ref_prep: Preparation, tgt_prep: Preparation, offset: tuple[int, int],
             opts: CoregOptions, progress: Progress) -> TiePointSet:
        """Match every candidate in batches (see :class:`TiePointSearch`).

        The chips of the next batch are read (GDAL, without the GIL) by a second thread while the
        matcher works on the current one; only that thread touches the rasters during the loop.
        """
        centres = self.candidates(grid, ref_prep, opts, offset)
        log.info(
            "%d candidate tie points (%s, spacing %d, window %d, radius %d, prior offset %s)",
            len(centres), opts.candidates, opts.spacing, opts.window, opts.search_radius, offset,
        )
        matcher = get_matcher(self.method, **self.matcher_options)
        batch = max(1, int(getattr(matcher, "batch_size", 64)))
        parts: list[MatchResult] = []
        n = len(centres)
        starts = list(range(0, n, batch))
        window, radius = resolved_sizes(opts)[1:]

        def cut(start: int) -> ChipBatch:
            return cut_chips(grid.reference, grid.target_on_grid, ref_prep, tgt_prep, centres[start : start + batch],
                             window, radius, offset)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sarcoreg-chips") as reader:
            pending: Future[ChipBatch] | None = reader.submit(cut, starts[0]) if starts else None
            for i, start in enumerate(starts):
                progress.report(start / max(n, 1), f"matching tie points {start}/{n} ({self.method})")
                assert pending is not None
                chips = pending.result()
                pending = reader.submit(cut, starts[i + 1]) if i + 1 < len(starts) else None
                result = matcher.match(chips)
                _skip_unusable(result, chips, opts)
                result.target_xy = result.target_xy + np.asarray(offset, np.float64)
                parts.append(result)
        progress.report(1.0, f"matched {n} candidates")
        merged = (
            MatchResult.concatenate(parts)
            if parts
            else MatchResult(np.empty((0, 2)), np.empty((0, 2)), np.empty(0), np.empty(0), np.empty(0, bool),
                             self.method)
        )
        return TiePointSet(merged, str(getattr(matcher, "device", "cpu")))


def _skip_unusable(result: MatchResult, chips: ChipBatch, opts: CoregOptions) -> None:
    """Reject, in place, rows the engine knows better than the matcher: nodata and textureless windows."""
    assert chips.reference_valid is not None and chips.target_valid is not None
    ref_frac = chips.reference_valid.mean(axis=(1, 2))
    tgt_frac = chips.target_valid.mean(axis=(1, 2))
    texture = texture_score(chips.reference)
    for k in range(len(chips)):
        reason = ""
        if ref_frac[k] < opts.min_valid_fraction or tgt_frac[k] < opts.min_valid_fraction:
            reason = "nodata: too few valid pixels in the window"
        elif texture[k] < opts.min_texture:
            reason = "textureless reference window"
        if reason:
            result.valid[k] = False
            result.target_xy[k] = np.nan
            result.errors[k] = reason


def resolved_sizes(opts: CoregOptions) -> tuple[int, int, int]:
    """``(spacing, window, search_radius)`` of options resolved by the engine's ``resolve_matching_options``."""
    if opts.spacing is None or opts.window is None or opts.search_radius is None:
        raise ValueError("spacing, window and search_radius must be resolved first (resolve_matching_options)")
    return opts.spacing, opts.window, opts.search_radius
