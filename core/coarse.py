"""Coarse stage with rotation and scale: a similarity search on overviews.

When the georeferencing is missing (plain images matched in pixels) or rough, the target may be
rotated and scaled against the reference, and no translation-only template match finds it. This
module searches rotation, scale and translation on decimated overviews:

1. Both prepared images are decimated by one common factor (longer side about ``search_side``).
2. For every angle x scale of a grid (full turn, log-spaced scales), the target overview is
   rotated and scaled about its centre, its CFOG structural features (oriented-gradient
   channels, as the structural matcher uses) are computed, and a masked normalised
   cross-correlation with the reference features over **every** translation is computed at once
   with FFTs. The best translation's correlation is the score of that angle x scale.
3. The best few grid cells are refined on finer overviews (longer side about ``refine_side``)
   by a shrinking local angle x scale search; the peak is interpolated to sub-pixel.

The result is a 3 x 3 similarity ``S`` from the target's pixel coordinates (GDAL convention:
``(0, 0)`` is the top-left corner of the top-left pixel) to reference pixel coordinates.
:func:`warped_target` brings the target onto the reference pixels through ``S`` (a lazy GDAL
warped VRT), so that the fine matching cuts its chips from the corrected target; positions
matched there map back to the original target through ``S^-1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import scipy.fft
from osgeo import gdal
from scipy import ndimage

from .matchers.structural import cfog_features
from .raster_io import RasterSource

__all__ = [
    "COARSE_MODES",
    "SimilarityEstimate",
    "apply_matrix",
    "estimate_similarity",
    "search_similarity",
    "similarity_matrix",
    "similarity_overlap",
    "warped_target",
]

log = logging.getLogger("sarcoreg.coarse")

#: Values of the ``coarse_rotation_scale`` option.
COARSE_MODES = ("auto", "on", "off")

_MIN_OVERLAP = 0.3  # share of the smaller image both must cover for a translation to count
_ERODE = 2  # overview pixels dropped along nodata / image borders (fill edges are not structure)


@dataclass
class SimilarityEstimate:
    """The outcome of :func:`estimate_similarity`.

    Attributes:
        matrix: ``(3, 3)`` similarity, target pixel -> reference pixel (GDAL convention).
        rotation_deg: Rotation of the matrix, degrees (counter-clockwise on screen is negative:
            image rows point down).
        scale: Scale of the matrix (reference pixels per target pixel).
        score: Masked CFOG correlation at the best angle x scale x translation (-1..1).
        runner_up: Best score of an angle x scale cell clearly apart from the winner (an
            ambiguity measure; the winner is trustworthy when ``score`` is well above it).
        evaluations: Angle x scale cells scored.
        factor: Full-resolution pixels per overview pixel of the refined search.
        alternatives: The other refined hypotheses, ``(score, matrix)``, best first (the engine
            tries them too when the winner does not stand out).
    """

    matrix: np.ndarray
    rotation_deg: float
    scale: float
    score: float
    runner_up: float
    evaluations: int
    factor: float
    alternatives: list[tuple[float, np.ndarray]] = field(default_factory=list)

    @property
    def distinct(self) -> float:
        """``score / runner_up`` (>1: the winner stands out; inf when nothing else scored)."""
        return self.score / self.runner_up if self.runner_up > 1e-9 else math.inf


def similarity_matrix(angle_deg: float, scale: float, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """``(3, 3)`` matrix ``x' = scale * R(angle) x + t`` (rows down: positive angles turn clockwise)."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def apply_matrix(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a ``(3, 3)`` affine matrix to ``(N, 2)`` points (NaN stays NaN)."""
    pts = np.asarray(xy, np.float64).reshape(-1, 2)
    return np.asarray(pts @ matrix[:2, :2].T + matrix[:2, 2])


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _to_cv(matrix: np.ndarray) -> np.ndarray:
    """GDAL-convention matrix (pixel corners on integers) -> OpenCV 2 x 3 (centres on integers)."""
    return (_translate(-0.5, -0.5) @ matrix @ _translate(0.5, 0.5))[:2]


@dataclass
class _Level:
    """One resolution of the search: the reference overview with its features, the target."""

    factor: float  # full-resolution reference pixels per overview pixel
    ref_scale: np.ndarray  # (3, 3) overview -> full-resolution reference pixels
    tgt: np.ndarray  # full-resolution target, NaN filled
    tgt_valid: np.ndarray
    ref_feat: np.ndarray  # (K, H, W) zero-mean inside the mask, 0 outside
    ref_mask: np.ndarray
    ref_energy: np.ndarray
    ref_fft: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def _decimate(img: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-decimate an image with NaN; returns ``(filled image, valid mask, overview->full matrix)``."""
    h, w = img.shape
    rows, cols = max(8, int(round(h / factor))), max(8, int(round(w / factor)))
    valid = np.isfinite(img)
    mean = float(img[valid].mean()) if valid.any() else 0.0
    filled = np.where(valid, img, mean).astype(np.float32)
    small = cv2.resize(filled, (cols, rows), interpolation=cv2.INTER_AREA)
    small_valid = cv2.resize(valid.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA) > 0.99
    scale = np.diag([w / cols, h / rows, 1.0])
    return small, small_valid, scale


def _features(img: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-mean CFOG features inside the eroded mask; returns ``(features, mask, energy)``."""
    mean = float(img[valid].mean()) if valid.any() else 0.0
    filled = np.where(valid, img, mean).astype(np.float32)
    feat = cfog_features(filled[None], orientations=9, sigma=1.0, presmooth=1.0)[0]
    mask = ndimage.binary_erosion(valid, iterations=_ERODE, border_value=0)
    m = mask.astype(np.float32)
    count = max(float(m.sum()), 1.0)
    mu = (feat * m).reshape(feat.shape[0], -1).sum(axis=1) / count
    feat = (feat - mu[:, None, None]) * m
    return feat.astype(np.float32), m, (feat * feat).sum(axis=0)


def _make_level(ref: np.ndarray, tgt: np.ndarray, side: int) -> _Level:
    factor = max(1.0, max(ref.shape) / float(side))
    r, rv, rs = _decimate(ref, factor)
    valid = np.isfinite(tgt)
    filled = np.where(valid, tgt, float(tgt[valid].mean()) if valid.any() else 0.0).astype(np.float32)
    feat, mask, energy = _features(r, rv)
    return _Level(factor, rs, filled, valid, feat, mask, energy)


def _ref_spectra(level: _Level, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if shape not in level.ref_fft:
        level.ref_fft[shape] = (
            scipy.fft.rfft2(level.ref_feat, s=shape, workers=-1),
            scipy.fft.rfft2(level.ref_mask, s=shape, workers=-1),
            scipy.fft.rfft2(level.ref_energy, s=shape, workers=-1),
        )
    return level.ref_fft[shape]


def _score(level: _Level, angle: float, scale: float) -> tuple[float, np.ndarray]:
    """Best masked correlation over all translations for one angle x scale.

    The target is first resized (area-averaged) to the scale it has on the reference overview,
    then rotated, so no detail is lost and nothing aliases.

    Returns:
        ``(score, S)`` with ``S`` the full-resolution target -> reference similarity.
    """
    th, tw = level.tgt.shape
    cols = max(8, int(round(tw * scale / level.factor)))
    rows = max(8, int(round(th * scale / level.factor)))
    interp = cv2.INTER_AREA if cols < tw else cv2.INTER_LINEAR
    small = cv2.resize(level.tgt, (cols, rows), interpolation=interp)
    small_valid = cv2.resize(level.tgt_valid.astype(np.float32), (cols, rows), interpolation=interp) > 0.99
    resize = np.diag([cols / tw, rows / th, 1.0])
    rot = similarity_matrix(angle, 1.0) @ _translate(-cols / 2.0, -rows / 2.0)
    corners = apply_matrix(rot, np.array([[0, 0], [cols, 0], [0, rows], [cols, rows]], np.float64))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    cw, ch = int(math.ceil(hi[0] - lo[0])), int(math.ceil(hi[1] - lo[1]))
    to_canvas = _translate(-lo[0], -lo[1]) @ rot
    m = _to_cv(to_canvas).astype(np.float64)
    canvas = cv2.warpAffine(small, m, (cw, ch), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    cvalid = cv2.warpAffine(small_valid.astype(np.float32), m, (cw, ch), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) > 0.99  # type: ignore[call-overload]
    feat, mask, energy = _features(canvas, cvalid)
    rh, rw = level.ref_mask.shape
    shape = (scipy.fft.next_fast_len(rh + ch), scipy.fft.next_fast_len(rw + cw))
    fa, ma, ea = _ref_spectra(level, shape)
    spectra = scipy.fft.rfft2(np.concatenate([feat, mask[None], energy[None]]), s=shape, workers=-1)
    fb, mb, eb = spectra[:-2], spectra[-2], spectra[-1]
    # r[d] = sum_x A(x + d) B(x): canvas pixel x lands on reference pixel x + d.
    maps = scipy.fft.irfft2(np.stack([(fa * np.conj(fb)).sum(axis=0), ea * np.conj(mb), ma * np.conj(eb),
                                      ma * np.conj(mb)]), s=shape, workers=-1)
    cross, e_ref, e_tgt, count = maps
    need = _MIN_OVERLAP * min(float(level.ref_mask.sum()), float(mask.sum()))
    denom = np.sqrt(np.maximum(e_ref, 0.0) * np.maximum(e_tgt, 0.0))
    ok = (count >= need) & (denom > 1e-9)
    if not ok.any():
        return -1.0, level.ref_scale @ to_canvas @ resize
    # A correlation over a small overlap is high by chance: weigh it by the share of the
    # reference it covers (a significance-like score, ~ ncc * sqrt(samples)).
    cover = np.sqrt(np.clip(count / max(float(level.ref_mask.sum()), 1.0), 0.0, 1.0))
    ncc = np.where(ok, cross / np.where(ok, denom, 1.0) * cover, -1.0)
    iy, ix = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    best = float(ncc[iy, ix])
    dy, dx = _subpixel(ncc, int(iy), int(ix))
    # Displacements run from -(canvas - 1) to (reference - 1); wrap the rest back.
    ty = iy + dy - shape[0] if iy >= rh else iy + dy
    tx = ix + dx - shape[1] if ix >= rw else ix + dx
    return best, level.ref_scale @ _translate(float(tx), float(ty)) @ to_canvas @ resize


def _subpixel(surface: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Parabolic sub-pixel offsets of a peak (0 at the border or on a flat top)."""
    out = []
    for axis, i in ((0, iy), (1, ix)):
        n = surface.shape[axis]
        if not 0 < i < n - 1:
            out.append(0.0)
            continue
        idx = [iy, ix]
        idx[axis] = i - 1
        a = float(surface[tuple(idx)])
        idx[axis] = i + 1
        c = float(surface[tuple(idx)])
        b = float(surface[iy, ix])
        den = a - 2.0 * b + c
        out.append(float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < -1e-12 else 0.0)
    return out[0], out[1]


def _angle_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


_Best = tuple[float, np.ndarray, float, float]


def _climb(level: _Level, best: _Best, da: float, ds: float, steps: int,
           scale_bounds: tuple[float, float] | None = None) -> tuple[_Best, int]:
    """Refine ``best = (score, matrix, angle, scale)`` on ``level`` by a shrinking 3 x 3 neighbourhood.

    Each step scores the 8 neighbours ``angle +- da`` x ``scale * exp(+-ds)`` (those within
    ``scale_bounds`` when given) around the current best, keeps any better one, then halves ``da``
    and ``ds``.

    Returns:
        The best ``(score, matrix, angle, scale)`` and the number of evaluations.
    """
    evaluations = 0
    for _ in range(steps):
        a_c, s_c = best[2], best[3]
        for a in (a_c - da, a_c, a_c + da):
            for s in (s_c * math.exp(-ds), s_c, s_c * math.exp(ds)):
                if a == a_c and s == s_c:
                    continue
                if scale_bounds is not None and not scale_bounds[0] <= s <= scale_bounds[1]:
                    continue
                sc, mat = _score(level, a, s)
                evaluations += 1
                if sc > best[0]:
                    best = (sc, mat, a, s)
        da, ds = da / 2.0, ds / 2.0
    return best, evaluations


def estimate_similarity(
    reference: np.ndarray,
    target: np.ndarray,
    *,
    max_rotation_deg: float = 180.0,
    scale_range: tuple[float, float] = (0.5, 2.0),
    search_side: int = 112,
    refine_side: int = 192,
    angle_step_deg: float = 7.5,
    scale_step: float = 1.19,
    keep: int = 3,
    refine_steps: int = 3,
) -> SimilarityEstimate | None:
    """Search rotation, scale and translation between two prepared images.

    Args:
        reference: Prepared reference ``(H, W)`` float in [0, 1], NaN = nodata.
        target: Prepared target ``(H', W')`` float in [0, 1], NaN = nodata, in its own pixels.
        max_rotation_deg: Rotations in ``[-max, +max]`` are searched (180: a full turn).
        scale_range: Smallest and largest scale (reference pixels per target pixel).
        search_side: Longer side of the overviews of the grid search, pixels.
        refine_side: Longer side of the overviews of the refinement, pixels.
        angle_step_deg: Angle step of the grid search.
        scale_step: Ratio between neighbouring scales of the grid search.
        keep: Grid cells refined (the best ones, mutually apart).
        refine_steps: Halvings of the local angle x scale step during the refinement.

    Returns:
        A :class:`SimilarityEstimate` (target pixel -> reference pixel), or None when not one
        translation gives the two images enough common area.
    """
    ref = np.asarray(reference, np.float32)
    tgt = np.asarray(target, np.float32)
    if ref.ndim != 2 or tgt.ndim != 2:
        raise ValueError(f"estimate_similarity wants two (H, W) images, got {ref.shape} and {tgt.shape}")
    lo_s, hi_s = sorted(float(v) for v in scale_range)
    if lo_s <= 0:
        raise ValueError(f"scales must be positive, got {scale_range}")
    n_ang = max(1, int(math.ceil(2.0 * max_rotation_deg / angle_step_deg)))
    if max_rotation_deg >= 180.0:
        angles = -180.0 + angle_step_deg * np.arange(int(round(360.0 / angle_step_deg)))
    else:
        angles = np.linspace(-max_rotation_deg, max_rotation_deg, n_ang + 1)
    n_sc = max(1, int(math.ceil(math.log(hi_s / lo_s) / math.log(scale_step))))
    scales = np.geomspace(lo_s, hi_s, n_sc + 1) if hi_s > lo_s else np.array([lo_s])
    coarse = _make_level(ref, tgt, search_side)
    grid: list[tuple[float, float, float]] = []
    for a in angles:
        for s in scales:
            grid.append((_score(coarse, float(a), float(s))[0], float(a), float(s)))
    evaluations = len(grid)
    grid.sort(reverse=True)
    if grid[0][0] <= -1.0:
        return None
    seeds: list[tuple[float, float, float]] = []
    for cell in grid:
        if all(_angle_gap(cell[1], o[1]) > 1.5 * angle_step_deg or abs(math.log(cell[2] / o[2]))
               > 1.5 * math.log(scale_step) for o in seeds):
            seeds.append(cell)
        if len(seeds) >= keep:
            break
    fine = _make_level(ref, tgt, refine_side)
    refined: list[tuple[float, float, float, np.ndarray]] = []
    for _, a0, s0 in seeds:
        best, n = _climb(fine, (*_score(fine, a0, s0), a0, s0), angle_step_deg / 2.0,
                         math.log(scale_step) / 2.0, refine_steps, (lo_s / scale_step, hi_s * scale_step))
        evaluations += n
        refined.append((best[0], best[2], best[3], best[1]))
    refined.sort(key=lambda r: r[0], reverse=True)
    # Distinct refined hypotheses (two seeds may converge on the same similarity).
    distinct: list[tuple[float, float, float, np.ndarray]] = []
    for r in refined:
        if all(_angle_gap(r[1], o[1]) > 3.0 or abs(math.log(r[2] / o[2])) > 0.05 for o in distinct):
            distinct.append(r)
    # Polish each hypothesis on the full-resolution overview (finer angle and scale steps): the
    # fine matching then starts from a prior good to about 1-2 px.
    if max(ref.shape) > refine_side:
        top = _make_level(ref, tgt, max(ref.shape))
        polished = []
        for score, a0, s0, _ in distinct:
            best, n = _climb(top, (*_score(top, a0, s0), a0, s0), angle_step_deg / 2.0 ** (refine_steps + 1),
                             math.log(scale_step) / 2.0 ** (refine_steps + 1), 2)
            evaluations += n
            polished.append((score, best[2], best[3], best[1]))
        distinct = polished
    full = distinct[0][3]
    score = distinct[0][0]
    runner = distinct[1][0] if len(distinct) > 1 else 0.0
    rot = math.degrees(math.atan2(full[1, 0], full[0, 0]))
    sc = float(math.hypot(full[0, 0], full[1, 0]))
    log.info("coarse similarity: rotation %.1f deg, scale %.3f, score %.3f (runner-up %.3f, %d cells)",
             rot, sc, score, runner, evaluations)
    return SimilarityEstimate(
        full, rot, sc, float(score), float(runner), evaluations, fine.factor,
        alternatives=[(float(r[0]), r[3]) for r in distinct[1:]],
    )


def search_similarity(
    reference: RasterSource,
    target: RasterSource,
    prepare_reference: Callable[[np.ndarray], np.ndarray],
    prepare_target: Callable[[np.ndarray], np.ndarray],
    reference_window: tuple[int, int, int, int],
    target_window: tuple[int, int, int, int],
    *,
    max_rotation_deg: float = 180.0,
    scale_range: tuple[float, float] = (0.5, 2.0),
    max_side: int = 512,
) -> SimilarityEstimate | None:
    """:func:`estimate_similarity` on overviews of two rasters, in their full-resolution pixels.

    Args:
        reference: The reference raster.
        target: The target (on the common grid, or the plain target in pixel mode).
        prepare_reference: ``(B, H, W)`` raw -> ``(H, W)`` prepared [0, 1] (NaN = nodata).
        prepare_target: The same for the target.
        reference_window: ``(x0, y0, w, h)`` of the reference to search in.
        target_window: ``(x0, y0, w, h)`` of the target to search with.
        max_rotation_deg: Rotations in ``+-max_rotation_deg`` are searched.
        scale_range: Smallest and largest scale (reference pixels per target pixel).
        max_side: Longer side of the overviews read.

    Returns:
        The estimate with ``matrix`` (and the alternatives) mapping full-resolution target pixels to
        full-resolution reference pixels, or None.
    """
    ref_ov, _ = reference.read_overview(max_side, reference_window)
    tgt_ov, _ = target.read_overview(max_side, target_window)
    a, b = prepare_reference(ref_ov), prepare_target(tgt_ov)
    # Overviews scale the window exactly by its size / the overview's size per axis.
    rx, ry, rw, rh = reference_window
    tx, ty, tw, th = target_window
    ref_full = _translate(rx, ry) @ np.diag([rw / a.shape[1], rh / a.shape[0], 1.0])
    tgt_full = _translate(tx, ty) @ np.diag([tw / b.shape[1], th / b.shape[0], 1.0])
    # Without the extra factor, a scale of the overviews equals the full-resolution scale only
    # when both are decimated alike; the search ranges are in full-resolution terms.
    ratio = (tw / b.shape[1]) / (rw / a.shape[1])
    est = estimate_similarity(a, b, max_rotation_deg=max_rotation_deg,
                              scale_range=(scale_range[0] * ratio, scale_range[1] * ratio))
    if est is None:
        return None
    to_full = np.linalg.inv(tgt_full)
    est.matrix = ref_full @ est.matrix @ to_full
    est.alternatives = [(score, ref_full @ m @ to_full) for score, m in est.alternatives]
    est.scale = float(math.hypot(est.matrix[0, 0], est.matrix[1, 0]))
    est.rotation_deg = math.degrees(math.atan2(est.matrix[1, 0], est.matrix[0, 0]))
    est.factor *= rw / a.shape[1]
    return est


def similarity_overlap(matrix: np.ndarray, target_size: tuple[int, int],
                       reference_window: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Window of ``reference_window`` covered by the target's footprint mapped through ``matrix``.

    Args:
        matrix: ``(3, 3)`` target pixel -> reference pixel.
        target_size: ``(width, height)`` of the target.
        reference_window: ``(x0, y0, w, h)`` to clip to.

    Returns:
        ``(x0, y0, w, h)`` bounding window, or None when they do not meet.
    """
    tw, th = target_size
    corners = apply_matrix(matrix, np.array([[0, 0], [tw, 0], [0, th], [tw, th]], np.float64))
    x0, y0, w, h = reference_window
    lx, ly = max(float(x0), corners[:, 0].min()), max(float(y0), corners[:, 1].min())
    hx, hy = min(float(x0 + w), corners[:, 0].max()), min(float(y0 + h), corners[:, 1].max())
    ix0, iy0 = int(math.floor(lx)), int(math.floor(ly))
    ix1, iy1 = int(math.ceil(hx)), int(math.ceil(hy))
    if ix1 - ix0 < 8 or iy1 - iy0 < 8:
        return None
    return ix0, iy0, ix1 - ix0, iy1 - iy0


def warped_target(target: RasterSource, matrix: np.ndarray, width: int, height: int,
                  resampling: str = "bilinear") -> RasterSource:
    """The target resampled onto ``width`` x ``height`` reference pixels through ``matrix`` (lazy VRT).

    Args:
        target: The target (on the common grid); its used bands are kept, nodata and masks too.
        matrix: ``(3, 3)`` target pixel -> reference pixel.
        width: Reference grid width.
        height: Reference grid height.
        resampling: GDAL resampling name.

    Returns:
        A :class:`RasterSource` on the reference pixels with an alpha band marking where the
        target has data.
    """
    bands = list(target.bands) + ([target.alpha_band] if target.alpha_band is not None else [])
    src = gdal.Translate("", target.dataset, format="VRT", bandList=bands)
    # Pixel -> "map" coordinates (X, -Y): GDAL wants north-up (negative row step) outputs.
    m = matrix
    src.SetGeoTransform((float(m[0, 2]), float(m[0, 0]), float(m[0, 1]),
                         -float(m[1, 2]), -float(m[1, 0]), -float(m[1, 1])))
    src.SetProjection("")
    opts = gdal.WarpOptions(format="VRT", outputBounds=(0.0, -float(height), float(width), 0.0),
                            width=width, height=height, resampleAlg=resampling, dstAlpha=True,
                            srcAlpha=target.alpha_band is not None, multithread=False)
    vrt = gdal.Warp("", src, options=opts)
    n = len(target.bands)
    from .georef import Georef

    return RasterSource(f"{target.path} (through the coarse similarity)", vrt, list(range(1, n + 1)),
                        Georef.plain(width, height), alpha_band=n + 1)
