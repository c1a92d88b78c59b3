"""Dense correspondence maps of descriptor models (AAE): a template against every search window.

As in Hughes & Schmitt (2019): the descriptor of an optical *template* (``T x T``, 128 in the
paper) is compared by cosine similarity with the descriptors of all ``T x T`` windows of a SAR
*search region* (``S x S``, 256 in the paper), giving a map of ``(S - T + 1) x (S - T + 1)``
similarities (129 x 129). Entry ``[v, u]`` scores the window whose top-left corner is at
``(u, v)`` in the search region, so ``[R + dy, R + dx]`` with ``R = (S - T) / 2`` scores the
displacement ``(dx, dy)``: the convention of :class:`~sarcoreg.core.matchers.base.MatchResult`.

The SAR windows are embedded in batches of ``batch_size`` (any mix of chips), never one at a
time; with ``stride > 1`` only a grid of windows plus a dense neighbourhood of the best grid
point is embedded (NaN elsewhere). The model is anything with ``patch_size``,
``embed_optical(x)`` and ``embed_sar(x)`` (``(N, P, P)`` -> ``(N, D)`` unit descriptors; see
:mod:`sarcoreg.models.descriptor_model`), or a patch model with only ``score(a, b)`` (then each
window costs one pair evaluation). Templates of another size than ``P`` are resampled to ``P``
together with the windows. Torch is not needed here (the back end decides CPU or CUDA).

Also: the peak with sub-pixel refinement and a reliability from the map's shape
(:func:`find_peaks`, re-using :mod:`sarcoreg.core.matchers.peaks`), synthetic evaluation cases
with a known shift from aligned image pairs (:func:`make_cases`), matching errors, and the two
plots of the paper: a correspondence map (Figure 5) and the matching-error histograms (Figure 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .matchers.peaks import map_reliability, subpixel_peak
from .matchers.search import (
    DescriptorScorer,
    DisplacementSearch,
    MapScorer,
    PairScorer,
    SearchPlan,
    grid_positions,
)

__all__ = [
    "MAP_PLAN",
    "MapPeaks",
    "correspondence_map_png",
    "correspondence_maps",
    "find_peaks",
    "grid_positions",
    "make_cases",
    "map_scorer",
    "matching_errors",
    "plot_correspondence_map",
    "plot_error_histograms",
]


#: The walk of :func:`correspondence_maps` (and the AAE matcher): the grid, one dense square of
#: half-size ``stride`` around the best, then the 3 x 3 hill climb until the peak's neighbours are known.
MAP_PLAN = SearchPlan(stride=1, square=1, climb=None)


def map_scorer(model: Any, batch_size: int) -> MapScorer:
    """Descriptor scoring for a model with ``embed_optical`` / ``embed_sar``, pair scoring otherwise.

    Args:
        model: Descriptor model or patch model (see the module docstring).
        batch_size: SAR windows per model call.
    """
    if hasattr(model, "embed_optical") and hasattr(model, "embed_sar"):
        return DescriptorScorer(model, batch_size)
    return PairScorer(model, max(1, int(batch_size)))


def correspondence_maps(
    model: Any,
    templates: np.ndarray,
    searches: np.ndarray,
    *,
    stride: int = 1,
    rows: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 512,
    return_evaluations: bool = False,
) -> Any:
    """Cosine-similarity maps of optical templates over SAR search regions.

    Args:
        model: Descriptor model (``patch_size``, ``embed_optical``, ``embed_sar``) or patch model
            (``patch_size``, ``score``); see the module docstring.
        templates: ``(N, T, T)`` optical templates in [0, 1] (NaN counts as 0).
        searches: ``(N, S, S)`` SAR search regions in [0, 1], ``S >= T``.
        stride: Step of the grid of evaluated windows (clamped to ``(S - T) / 2``); with
            ``stride > 1`` the ``(2 stride + 1)^2`` windows around the best grid point are added,
            then the 3 x 3 around the peak until it is complete (so the sub-pixel fit has its
            neighbours): :data:`MAP_PLAN`.
        rows: Chips to evaluate (default all); the others stay all-NaN.
        batch_size: SAR windows embedded per model call.
        return_evaluations: Also return the number of windows evaluated.

    Returns:
        ``(N, S - T + 1, S - T + 1)`` float32 maps (NaN where not evaluated), or ``(maps, count)``.

    Raises:
        ValueError: Shapes do not fit.
    """
    templates = np.nan_to_num(np.asarray(templates, dtype=np.float32), nan=0.0)
    searches = np.nan_to_num(np.asarray(searches, dtype=np.float32), nan=0.0)
    if templates.ndim != 3 or searches.ndim != 3 or templates.shape[0] != searches.shape[0]:
        raise ValueError(
            f"want (N, T, T) templates and (N, S, S) search regions, got {templates.shape}, {searches.shape}"
        )
    if templates.shape[1] != templates.shape[2] or searches.shape[1] != searches.shape[2]:
        raise ValueError(f"templates and search regions must be square, got {templates.shape}, {searches.shape}")
    if searches.shape[1] < templates.shape[1]:
        raise ValueError(f"search region ({searches.shape[1]}) smaller than the template ({templates.shape[1]})")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    search = DisplacementSearch(map_scorer(model, batch_size), replace(MAP_PLAN, stride=int(stride)))
    maps = search.maps(templates, searches, None if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1))
    return (maps, search.evaluations) if return_evaluations else maps


@dataclass(frozen=True)
class MapPeaks:
    """Peaks of correspondence maps.

    Attributes:
        uv: Sub-pixel peak ``(u, v)`` = window corner in the search region, ``(N, 2)`` float64.
        shift: Displacement ``uv - R`` of the template content, ``(N, 2)`` float64 (``R`` = map centre).
        score: Map value at the integer peak, ``(N,)``.
        reliability: From the map's shape (peak-to-sidelobe ratio and second-peak ratio), ``(N,)`` in [0, 1].
        psr: Peak-to-sidelobe ratio, ``(N,)``.
        on_border: Peak on the map's outermost row / column, ``(N,)`` bool.
    """

    uv: np.ndarray
    shift: np.ndarray
    score: np.ndarray
    reliability: np.ndarray
    psr: np.ndarray
    on_border: np.ndarray


def find_peaks(maps: np.ndarray, exclusion: int = 3) -> MapPeaks:
    """Peak, sub-pixel position and reliability of each map.

    Args:
        maps: ``(N, M, M)`` similarity maps (NaN = not evaluated), ``M = 2 R + 1``.
        exclusion: Half-size of the square around the peak left out of the sidelobe statistics.

    Returns:
        The peaks (see :class:`MapPeaks`).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, M, M), got {maps.shape}")
    peak, offset, border = subpixel_peak(maps)
    rel, psr = map_reliability(maps, peak, exclusion=exclusion)
    r = np.array([(maps.shape[2] - 1) / 2.0, (maps.shape[1] - 1) / 2.0])
    uv = peak + offset
    filled = np.where(np.isfinite(maps), maps, -np.inf)
    score = filled[np.arange(maps.shape[0]), peak[:, 1], peak[:, 0]]
    return MapPeaks(uv=uv, shift=uv - r, score=score, reliability=rel, psr=psr, on_border=border)


def make_cases(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    template_size: int = 128,
    search_size: int = 256,
    *,
    per_pair: int = 4,
    max_shift: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation cases with a known shift cut from co-registered optical / SAR image pairs.

    The template is cut from the optical image at a random position; the search region from the
    SAR image so that the template's content lies at displacement ``(dx, dy)`` (uniform integers
    in ``[-max_shift, max_shift]``) from the search region's centre position.

    Args:
        pairs: ``(optical, sar)`` images ``(H, W)`` in [0, 1] on one pixel grid.
        template_size: ``T``.
        search_size: ``S`` (``S - T`` even).
        per_pair: Cases per image pair.
        max_shift: Largest displacement per axis; default ``R = (S - T) / 2`` minus 2 (the peak
            must not lie on the map's border).
        seed: Random seed.

    Returns:
        ``(templates (K, T, T), searches (K, S, S), true_shift (K, 2))`` float32 / float32 / float64.

    Raises:
        ValueError: Sizes do not fit or an image is too small.
    """
    t, s = int(template_size), int(search_size)
    if s < t or (s - t) % 2:
        raise ValueError(f"search_size ({s}) must be template_size ({t}) plus an even number")
    r = (s - t) // 2
    m = max(0, r - 2) if max_shift is None else int(max_shift)
    rng = np.random.default_rng(seed)
    temps, srch, shifts = [], [], []
    for opt, sar in pairs:
        if opt.shape != sar.shape:
            raise ValueError(f"pair images must share a grid, got {opt.shape} and {sar.shape}")
        h, w = opt.shape
        if min(h, w) < s + 2 * m:
            raise ValueError(f"image {opt.shape} too small for search {s} with shifts up to {m}")
        for _ in range(per_pair):
            dx, dy = (int(v) for v in rng.integers(-m, m + 1, 2))
            x0 = int(rng.integers(r + m, w - t - r - m + 1))
            y0 = int(rng.integers(r + m, h - t - r - m + 1))
            temps.append(opt[y0 : y0 + t, x0 : x0 + t])
            sx, sy = x0 - r - dx, y0 - r - dy
            srch.append(sar[sy : sy + s, sx : sx + s])
            shifts.append((dx, dy))
    return (np.asarray(temps, np.float32), np.asarray(srch, np.float32), np.asarray(shifts, np.float64))


def matching_errors(shift: np.ndarray, true_shift: np.ndarray) -> np.ndarray:
    """Euclidean distance ``(N,)`` in pixels between found and true displacements ``(N, 2)``."""
    return np.asarray(np.hypot(*(np.asarray(shift, float) - np.asarray(true_shift, float)).T))


def correspondence_map_png(
    cmap: np.ndarray,
    *,
    template: np.ndarray | None = None,
    search: np.ndarray | None = None,
    true_shift: tuple[float, float] | None = None,
    title: str = "",
    label: str = "cosine similarity",
    lower_is_better: bool = False,
) -> bytes:
    """PNG bytes of one correspondence map (with the template and search region if given).

    Args:
        cmap: ``(M, M)`` map, ``M = 2 R + 1`` (NaN shown blank); ``cmap[R + dy, R + dx]`` is the
            value at displacement ``(dx, dy)``.
        template: Optional ``(T, T)`` optical template shown beside it.
        search: Optional ``(S, S)`` SAR search region shown beside it.
        true_shift: Optional true ``(dx, dy)``, marked with a white cross.
        title: Figure title.
        label: Colour-bar label (what the map holds).
        lower_is_better: The map is a distance (e.g. the BNN's ``h``): its peak is the minimum.
    """
    from .exports.plots import figure_png, new_figure

    cmap = np.asarray(cmap, dtype=np.float64)
    r = (cmap.shape[0] - 1) / 2.0
    panels = [(img, name) for img, name in ((template, "optical template"), (search, "SAR search region"))
              if img is not None]
    fig = new_figure(4.2 * len(panels) + 4.8, 4.0)
    axes = fig.subplots(1, len(panels) + 1, squeeze=False)
    for ax, (img, name) in zip(axes[0], panels, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    ax = axes[0, -1]
    im = ax.imshow(cmap, cmap="jet_r" if lower_is_better else "jet", extent=(-r - 0.5, r + 0.5, r + 0.5, -r - 0.5))
    fig.colorbar(im, ax=ax, fraction=0.046, label=label)
    pk = find_peaks((-cmap if lower_is_better else cmap)[None])
    ax.plot(*pk.shift[0], "k+", ms=12, mew=2, label=f"peak ({pk.shift[0, 0]:.1f}, {pk.shift[0, 1]:.1f})")
    if true_shift is not None:
        ax.plot(*true_shift, "wx", ms=10, mew=2, label=f"truth ({true_shift[0]:.0f}, {true_shift[1]:.0f})")
    ax.set_xlabel("dx (px)")
    ax.set_ylabel("dy (px)")
    ax.set_title(f"reliability {pk.reliability[0]:.2f}")
    ax.legend(loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return figure_png(fig)


def plot_correspondence_map(
    cmap: np.ndarray,
    path: str | Path,
    *,
    template: np.ndarray | None = None,
    search: np.ndarray | None = None,
    true_shift: tuple[float, float] | None = None,
    title: str = "",
    label: str = "cosine similarity",
    lower_is_better: bool = False,
) -> Path:
    """Write :func:`correspondence_map_png` of one map to ``path`` (``.png``, folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(correspondence_map_png(cmap, template=template, search=search, true_shift=true_shift,
                                           title=title, label=label, lower_is_better=lower_is_better))
    return out


def plot_error_histograms(
    errors: Mapping[str, np.ndarray], path: str | Path, *, bins: int = 40, max_error: float | None = None
) -> Path:
    """Write the matching-error histograms of the paper's Figure 4 (one panel per set).

    Each panel shows the histogram of the pixel distances between found and true match, the mean
    (dashed black) and the 1st percentile (dashed blue) of the distances.

    Args:
        errors: Label (e.g. ``"100 % supervision"``) -> ``(K,)`` distances in pixels (NaN ignored).
        path: Output ``.png``.
        bins: Histogram bins.
        max_error: Upper end of the x axis (default the largest error).

    Returns:
        The path written.
    """
    from .exports.plots import new_figure, save_png

    if not errors:
        raise ValueError("plot_error_histograms needs at least one set of errors")
    clean = {k: np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for k, v in errors.items()}
    top = max_error or max([float(v.max()) for v in clean.values() if v.size] + [1.0])
    fig = new_figure(4.0 * len(clean), 3.2)
    axes = fig.subplots(1, len(clean), squeeze=False, sharey=True)
    for ax, (label, e) in zip(axes[0], clean.items(), strict=True):
        ax.hist(e, bins=bins, range=(0.0, top), color="0.6", edgecolor="0.3")
        if e.size:
            ax.axvline(float(e.mean()), color="k", ls="--", label=f"mean {e.mean():.1f} px")
            ax.axvline(float(np.percentile(e, 1)), color="b", ls="--", label=f"1st pct {np.percentile(e, 1):.1f} px")
            ax.legend(fontsize=7)
        ax.set_title(f"{label} (n = {e.size})")
        ax.set_xlabel("matching error (px)")
    axes[0, 0].set_ylabel("matches")
    return save_png(fig, path)
