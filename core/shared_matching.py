"""Tie points through the shared modality: the engine's ``shared`` method.

Borisov et al. (2026): transform the optical and the SAR image into one shared modality with
their two U-Nets, then match the two shared images with an ordinary keypoint matcher and fit the
transform robustly. Here:

1. the overlap of the two rasters on the reference grid is cut into *match tiles* (side
   ``match_tile``, at most ``max_tiles`` of them spread evenly; a small overlap is one tile);
2. for each match tile the reference window and the target window (moved by the coarse offset)
   go through their network (:mod:`.shared_layers`, tiled and blended inside);
3. a keypoint matcher (:mod:`.keypoints`: SIFT, DISK / ALIKED + LightGlue, XFeat ...) matches the
   two shared images; matches on nodata are dropped;
4. the matches become tie points (a :class:`~.matchers.base.MatchResult`), and the engine's robust
   estimation, outlier flags, outputs and report take over as for every other method.

:class:`SharedModalitySearch` is this search behind the engine's
:class:`~.tiepoint_search.TiePointSearch` contract (the catalog's factory of ``shared``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .matchers.base import MatchResult
from .methods import default_model
from .progress import Progress
from .raster_io import CommonGrid
from .tiepoint_search import TiePointSet

if TYPE_CHECKING:
    from .chips import Preparation
    from .engine import CoregOptions

log = logging.getLogger("sarcoreg.shared")

__all__ = ["SharedMatchOptions", "SharedModalitySearch", "match_tiles", "shared_match"]


@dataclass(frozen=True)
class SharedMatchOptions:
    """Options of the ``shared`` method (the engine's ``matcher_options``).

    Attributes:
        model: Shared-modality model: card name or weight file.
        keypoints: Keypoint matcher name (see ``sarcoreg.core.keypoints``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; used by the model and the matcher.
        match_tile: Side of a match tile in reference pixels.
        max_tiles: Match tiles at most (spread evenly over the overlap).
        max_keypoints: Keypoints per image and match tile.
        max_matches: Tie points kept at most (the best by score).
        tile: Inference tile of the shared-modality model (multiple of 32).
        overlap: Blended overlap of inference tiles.
        weights: Weight file of the keypoint matcher (RoMa / DeDoDe only).
    """

    model: str = default_model("shared")
    keypoints: str = "disk-lightglue"
    device: str = "auto"
    match_tile: int = 1024
    max_tiles: int = 16
    max_keypoints: int = 2048
    max_matches: int = 3000
    tile: int = 512
    overlap: int = 64
    weights: str | None = None

    @classmethod
    def from_matcher_options(cls, options: dict[str, Any]) -> SharedMatchOptions:
        """From the engine's ``matcher_options``; unknown keys are an error naming the known ones."""
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(options) - known)
        if bad:
            raise ValueError(f"unknown option(s) {bad} for method 'shared'; known: {', '.join(sorted(known))}")
        opts = cls(**options)
        if opts.match_tile < 64:
            raise ValueError(f"match_tile must be at least 64 pixels, got {opts.match_tile}")
        if opts.max_tiles < 1:
            raise ValueError(f"max_tiles must be at least 1, got {opts.max_tiles}")
        return opts

    def check(self) -> None:
        """Fail early on an unknown keypoint matcher (before any raster is read)."""
        from .keypoints import available_keypoint_matchers

        if self.keypoints not in available_keypoint_matchers():
            raise ValueError(
                f"unknown keypoint matcher '{self.keypoints}' for method 'shared'; choose one of: "
                f"{', '.join(available_keypoint_matchers())}"
            )


def match_tiles(overlap: tuple[int, int, int, int], side: int, max_tiles: int) -> list[tuple[int, int, int, int]]:
    """Match-tile windows ``(x0, y0, w, h)`` spread evenly over ``overlap``.

    At most ``max_tiles`` tiles of ``side`` x ``side`` pixels (clipped to the overlap): as many
    per axis as the overlap's aspect suggests, their centres evenly spaced, so that the tie
    points cover the whole overlap even when the tiles do not.
    """
    x0, y0, w, h = overlap
    tw, th = min(side, w), min(side, h)
    need_x, need_y = int(np.ceil(w / tw)), int(np.ceil(h / th))
    nx, ny = need_x, need_y
    while nx * ny > max_tiles:  # shrink the larger count first, keeping the aspect
        if nx >= ny and nx > 1:
            nx -= 1
        elif ny > 1:
            ny -= 1
        else:
            break
    xs = np.linspace(x0, x0 + w - tw, nx).round().astype(int) if nx > 1 else [x0 + (w - tw) // 2]
    ys = np.linspace(y0, y0 + h - th, ny).round().astype(int) if ny > 1 else [y0 + (h - th) // 2]
    return [(int(x), int(y), tw, th) for y in ys for x in xs]


def _nan_to_zero_hwc(chw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(chw).all(axis=0)
    return np.ascontiguousarray(np.nan_to_num(chw, nan=0.0).transpose(1, 2, 0)).astype(np.float32), valid


def _inside(valid: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Whether each ``(x, y)`` point falls on a valid pixel of ``valid``."""
    if len(pts) == 0:
        return np.zeros(0, bool)
    c = np.clip(np.round(pts[:, 0]).astype(int), 0, valid.shape[1] - 1)
    r = np.clip(np.round(pts[:, 1]).astype(int), 0, valid.shape[0] - 1)
    return valid[r, c]


def _networks(options: SharedMatchOptions, cache: dict[str, Any] | None) -> tuple[Any, Any]:
    """The shared-modality model and the keypoint matcher, loaded once per ``cache`` (one engine run)."""
    from ..models.shared_modality import load_shared_model
    from .keypoints import make_keypoint_matcher

    if cache is not None and cache.get("options") == options:
        return cache["model"], cache["matcher"]
    kwargs: dict[str, Any] = {"max_keypoints": options.max_keypoints, "device": options.device}
    if options.weights:
        kwargs["weights"] = options.weights
    model = load_shared_model(options.model, device=options.device)
    matcher = make_keypoint_matcher(options.keypoints, **kwargs)
    if cache is not None:
        cache.update(options=options, model=model, matcher=matcher)
    return model, matcher


def preview_png(img_a: np.ndarray, img_b: np.ndarray, pts_a: np.ndarray, pts_b: np.ndarray, title: str) -> bytes:
    """Side-by-side PNG of two shared-modality images with their matched points.

    Args:
        img_a: ``(H, W, 3)`` float in [0, 1], the reference's shared image.
        img_b: The target's shared image, same conventions.
        pts_a: ``(N, 2)`` matched points ``(x, y)`` in ``img_a``.
        pts_b: ``(N, 2)`` the corresponding points in ``img_b``.
        title: Figure title.
    """
    from .exports.plots import figure_png, new_figure

    fig = new_figure(9.0, 4.6)
    axes = fig.subplots(1, 2)
    for ax, img, pts, name in ((axes[0], img_a, pts_a, "reference (shared)"), (axes[1], img_b, pts_b,
                                                                             "target (shared)")):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        if len(pts):
            ax.scatter(pts[:, 0] - 0.5, pts[:, 1] - 0.5, s=6, c="#ffde17", edgecolors="#202020", linewidths=0.3)
        ax.set_title(f"{name}: {len(pts)} matches", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return figure_png(fig)


def shared_match(
    grid: CommonGrid,
    reference_modality: str,
    target_modality: str,
    options: SharedMatchOptions,
    offset: tuple[int, int] = (0, 0),
    sar_scale: str = "auto",
    progress: Progress | None = None,
    cache: dict[str, Any] | None = None,
) -> tuple[MatchResult, dict[str, Any]]:
    """Tie points between the reference and the target through the shared modality.

    Args:
        grid: The two rasters on the reference grid (see :func:`~.raster_io.common_grid`).
        reference_modality: ``"optical"`` or ``"sar"`` (picks the network for the reference).
        target_modality: Same for the target.
        options: :class:`SharedMatchOptions`.
        offset: Prior whole-pixel offset of the target (from the coarse stage).
        sar_scale: Scale of SAR values (``"auto"`` detects it).
        progress: Progress and cancel.
        cache: A dict kept by the caller across calls of one run (the engine's prior-offset
            hypotheses): the model and the matcher are loaded into it once.

    Returns:
        ``(result, info)``: tie points with ``ref_xy`` in reference pixels and ``target_xy`` on
        the grid, ``score`` the matcher's confidence, ``reliability`` the score clipped to [0, 1];
        ``info`` holds the model, matcher, device, match tiles and seconds for the report, and
        ``previews`` (caption -> PNG bytes of the first match tile's shared images) for its HTML.
    """
    from .shared_layers import fit_input_scaling, shared_array

    progress = progress or Progress()
    t0 = time.perf_counter()
    model, matcher = _networks(options, cache)
    log.info("shared method: model %s on %s, keypoints %s on %s", model.name, model.device, matcher.name,
             matcher.device)
    ov = grid.overlap
    ref_scaling = fit_input_scaling(grid.reference, model, reference_modality, sar_scale, window=ov)
    tgt_scaling = fit_input_scaling(grid.target_on_grid, model, target_modality, sar_scale, window=ov)
    tiles = match_tiles(ov, options.match_tile, options.max_tiles)
    ox, oy = offset
    ref_pts, tgt_pts, scores = [], [], []
    previews: dict[str, bytes] = {}
    n_raw = 0
    for i, (x0, y0, w, h) in enumerate(tiles):
        step = progress.sub(i / len(tiles), (i + 1) / len(tiles))
        step.report(0.0, f"shared modality: match tile {i + 1}/{len(tiles)}")
        a = shared_array(grid.reference, model, ref_scaling, (x0, y0, w, h), options.tile, options.overlap,
                         progress=step.sub(0.0, 0.4))
        b = shared_array(grid.target_on_grid, model, tgt_scaling, (x0 + ox, y0 + oy, w, h), options.tile,
                         options.overlap, progress=step.sub(0.4, 0.8))
        img_a, valid_a = _nan_to_zero_hwc(a)
        img_b, valid_b = _nan_to_zero_hwc(b)
        if valid_a.mean() < 0.05 or valid_b.mean() < 0.05:
            log.info("match tile %d: almost no valid pixels, skipped", i + 1)
            continue
        m = matcher.match(img_a, img_b)
        n_raw += len(m)
        keep = _inside(valid_a, m.pts_a) & _inside(valid_b, m.pts_b)
        # Keypoints have pixel centres at integers (OpenCV / kornia); the engine's GDAL convention at +0.5.
        ref_pts.append(m.pts_a[keep] + [x0 + 0.5, y0 + 0.5])
        tgt_pts.append(m.pts_b[keep] + [x0 + ox + 0.5, y0 + oy + 0.5])
        scores.append(m.scores[keep])
        if not previews:  # the first match tile with data, as the report's picture of the method
            caption = (f"Shared-modality images of match tile {i + 1} ({w} x {h} px at {x0}, {y0}) with the "
                       f"{int(keep.sum())} {matcher.name} matches")
            previews[caption] = preview_png(img_a, img_b, m.pts_a[keep], m.pts_b[keep],
                                            f"{model.name} + {matcher.name}")
        step.report(1.0, f"match tile {i + 1}/{len(tiles)}: {int(keep.sum())} matches")
    ref_xy = np.concatenate(ref_pts) if ref_pts else np.empty((0, 2))
    tgt_xy = np.concatenate(tgt_pts) if tgt_pts else np.empty((0, 2))
    score = np.concatenate(scores) if scores else np.empty(0)
    if len(score) > options.max_matches:
        best = np.argsort(-score, kind="stable")[: options.max_matches]
        ref_xy, tgt_xy, score = ref_xy[best], tgt_xy[best], score[best]
    name = f"shared+{matcher.name}"
    result = MatchResult(
        ref_xy=ref_xy.astype(np.float64),
        target_xy=tgt_xy.astype(np.float64),
        score=score.astype(np.float64),
        reliability=np.clip(score, 0.0, 1.0).astype(np.float64),
        valid=np.ones(len(score), bool),
        matcher=name,
        errors=[""] * len(score),
    )
    info = {
        "model": model.name,
        "model_device": str(model.device),
        "keypoints": matcher.name,
        "keypoint_device": str(matcher.device),
        "match_tiles": [list(t) for t in tiles],
        "raw_matches": n_raw,
        "kept_matches": int(len(score)),
        "seconds": round(time.perf_counter() - t0, 3),
        "previews": previews,
    }
    log.info("shared method: %d matches kept of %d over %d match tile(s) in %.1f s", len(score), n_raw, len(tiles),
             info["seconds"])
    return result, info


class SharedModalitySearch:
    """The shared-modality keypoint search as a :class:`~.tiepoint_search.TiePointSearch`.

    Args:
        **matcher_options: :class:`SharedMatchOptions` fields (the engine's ``matcher_options``).

    Raises:
        ValueError: An unknown option or a bad value.
    """

    def __init__(self, **matcher_options: Any) -> None:
        self.options = SharedMatchOptions.from_matcher_options(matcher_options)
        self._cache: dict[str, Any] = {}  # the model and keypoint matcher, loaded once per search

    def check(self) -> None:
        """Fail early on an unknown keypoint matcher."""
        self.options.check()

    def find(self, grid: CommonGrid, ref_prep: Preparation, tgt_prep: Preparation, offset: tuple[int, int],
             opts: CoregOptions, progress: Progress) -> TiePointSet:
        """Tie points of :func:`shared_match`; the report gets a ``shared_modality`` section and its previews."""
        result, info = shared_match(grid, ref_prep.modality, tgt_prep.modality, self.options, offset, opts.sar_scale,
                                    progress, self._cache)
        images = info.pop("previews", {})
        return TiePointSet(result, str(info["model_device"]), {"shared_modality": info}, images)
