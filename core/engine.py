"""The co-registration engine: rasters in; tie points, transform, co-registered raster, report out.

``coregister(reference, target, out_dir, options)`` runs the stages of the architecture:
open -> common grid -> prepare -> coarse offset -> candidates -> match -> estimate -> write.
The same function serves the command line, the Python API, the worker (QGIS) and the benchmarks.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .candidates import (
    DEFAULT_EXPECTED_ERROR_M,
    DEFAULT_MIN_TEXTURE,
    auto_matching_sizes,
)
from .chips import Preparation
from .coarse import COARSE_MODES, apply_matrix, search_similarity, similarity_overlap, warped_target
from .estimation import TRANSFORM_KINDS, FitResult, fit_transform, min_points
from .matchers.base import ChipBatch, MatchResult, get_matcher
from .methods import DEFAULT_METHOD, get_method
from .output_formats import OUTPUT_NAMES, output_names
from .prepare import detect_sar_scale, looks_like_sar
from .progress import Progress
from .raster_io import CommonGrid, RasterSource, common_grid, open_raster
from .tiepoint_search import TiePointSearch, TiePointSet, WindowSearch, resolved_sizes, tiepoint_search
from .tiepoints import TiePoints
from .verdict import CoregistrationFailed, Verdict, VerdictOptions, cross_validated_rmse, judge

__all__ = [
    "CoregOptions", "CoregResult", "CoregistrationFailed", "TooFewTiePoints", "coregister", "run_from_params",
    "OUTPUT_NAMES", "resolve_matching_options",
]

log = logging.getLogger("sarcoreg.engine")


@dataclass
class CoregOptions:
    """Everything that tunes a co-registration; the defaults suit 10-20 m Sentinel-1/2 pairs.

    Attributes:
        method: Method name (see :mod:`sarcoreg.core.methods`).
        transform: One of :data:`~sarcoreg.core.estimation.TRANSFORM_KINDS`.
        spacing: Tie-point grid spacing in reference pixels (None: auto, see
            :func:`~sarcoreg.core.candidates.auto_matching_sizes`).
        window: Template size in pixels (even; None: auto).
        search_radius: Search radius around each candidate after the coarse offset, pixels
            (None: auto, from ``expected_error_m`` and the pixel size).
        expected_error_m: Expected georeferencing error between the two rasters, metres; sizes
            the automatic search radius of georeferenced pairs (pixel-mode pairs use a pixel
            default). The default suits Sentinel-1 GRD against Sentinel-2 (see the README).
        candidates: "grid", "keypoints" or "both".
        max_keypoints: Keypoint candidates at most (keypoints / both).
        reference_bands: 1-based reference bands (None: all).
        target_bands: 1-based target bands (None: all).
        reference_modality: "optical", "sar" or "auto".
        target_modality: "optical", "sar" or "auto".
        sar_scale: "amplitude", "intensity", "db" or "auto" (detected).
        speckle_filter: Lee-filter SAR windows before matching.
        optical_weights: Band weights for optical to gray (None: luminance / mean).
        coarse: Estimate a global offset on a decimated overview first (large shifts).
        coarse_max_side: Size of the overview used for the coarse offset.
        coarse_min_overlap: Skip the coarse stage when the overlap is smaller than this (pixels);
            its single large template is unreliable on small patches.
        coarse_min_reliability: A coarse match between this and ``min_reliability`` is a
            hypothesis: the engine matches with it and with no offset and keeps the run with
            more inliers (its one big template gives a flat similarity surface, so a right
            coarse match often has a low reliability).
        coarse_rotation_scale: Search rotation and scale too in the coarse stage
            (:mod:`~sarcoreg.core.coarse`): "on", "off", or "auto" = on for pairs matched in
            pixels (no usable georeferencing), off for georeferenced pairs (their common grid
            already removes rotation and scale).
        coarse_max_rotation_deg: Rotations in +-this are searched (180: a full turn).
        coarse_min_scale: Smallest scale searched (reference pixels per target pixel).
        coarse_max_scale: Largest scale searched.
        min_coverage: If the inliers span less than this fraction of the overlap in x or y, a
            transform richer than a shift would be extrapolated wildly: the engine falls back to
            a shift and says so in the report's warnings.
        min_reliability: Tie points below this reliability (0..1) are level-1 outliers.
        min_valid_fraction: Candidates with less valid (non-nodata) pixels are skipped.
        min_texture: Candidates whose template texture score is below this are skipped.
        ransac_threshold_px: Inlier threshold of the robust fit, reference pixels.
        tps_smoothing: Smoothing of the thin-plate spline (0 interpolates every tie point and
            wiggles with matching noise; 0.1 measured best on real VIS-NIR matches).
        seed: Seed of the robust fit (runs are reproducible).
        resampling: GDAL resampling for warps ("bilinear", "cubic", "near" ...).
        matcher_options: Extra keyword arguments for the matcher (model path, device ...).
        write_outputs: Output keys to write (None: all; the output-format list,
            :func:`~sarcoreg.core.output_formats.output_names`, built in: :data:`OUTPUT_NAMES`).
        verdict: Thresholds of the run's verdict (:class:`~sarcoreg.core.verdict.VerdictOptions`;
            a partial dict such as JSON gives is accepted and completed with the defaults).
    """

    method: str = DEFAULT_METHOD
    transform: str = "affine"
    spacing: int | None = None
    window: int | None = None
    search_radius: int | None = None
    expected_error_m: float = DEFAULT_EXPECTED_ERROR_M
    candidates: str = "grid"
    max_keypoints: int = 500
    reference_bands: list[int] | None = None
    target_bands: list[int] | None = None
    reference_modality: str = "auto"
    target_modality: str = "auto"
    sar_scale: str = "auto"
    speckle_filter: bool = False
    optical_weights: list[float] | None = None
    coarse: bool = True
    coarse_max_side: int = 512
    coarse_min_overlap: int = 200
    coarse_min_reliability: float = 0.02
    coarse_rotation_scale: str = "auto"
    coarse_max_rotation_deg: float = 180.0
    coarse_min_scale: float = 0.5
    coarse_max_scale: float = 2.0
    min_coverage: float = 0.25
    min_reliability: float = 0.15
    min_valid_fraction: float = 0.8
    min_texture: float = DEFAULT_MIN_TEXTURE
    ransac_threshold_px: float = 2.0
    tps_smoothing: float = 0.1
    seed: int = 0
    resampling: str = "bilinear"
    matcher_options: dict[str, Any] = field(default_factory=dict)
    write_outputs: list[str] | None = None
    verdict: VerdictOptions = field(default_factory=VerdictOptions)

    def __post_init__(self) -> None:
        # asdict() / JSON give the verdict options as a dict.
        self.verdict = VerdictOptions.from_any(self.verdict)

    def validate(self) -> None:
        """Raise ValueError naming the first bad option and what is allowed."""
        spec = get_method(self.method)  # an unknown method fails here, naming the known ones
        if self.transform not in TRANSFORM_KINDS:
            raise ValueError(f"transform '{self.transform}' is unknown; choose one of: {', '.join(TRANSFORM_KINDS)}")
        if self.window is not None and (self.window < 8 or self.window % 2):
            raise ValueError(f"window must be an even number >= 8 pixels (or None: auto), got {self.window}")
        if self.search_radius is not None and self.search_radius < 1:
            raise ValueError(f"search_radius must be >= 1 pixel (or None: auto), got {self.search_radius}")
        if self.spacing is not None and self.spacing < 1:
            raise ValueError(f"spacing must be >= 1 pixel (or None: auto), got {self.spacing}")
        if not self.expected_error_m > 0:
            raise ValueError(f"expected_error_m must be > 0 metres, got {self.expected_error_m}")
        if self.coarse_rotation_scale not in COARSE_MODES:
            raise ValueError(f"coarse_rotation_scale must be one of {', '.join(COARSE_MODES)}, "
                             f"got '{self.coarse_rotation_scale}'")
        if not 0 < self.coarse_min_scale <= 1.0 <= self.coarse_max_scale:
            raise ValueError(f"need 0 < coarse_min_scale <= 1 <= coarse_max_scale, got {self.coarse_min_scale} "
                             f"and {self.coarse_max_scale}")
        if not 0 <= self.coarse_max_rotation_deg <= 180:
            raise ValueError(f"coarse_max_rotation_deg must be in 0..180, got {self.coarse_max_rotation_deg}")
        if self.candidates not in ("grid", "keypoints", "both"):
            raise ValueError(f"candidates must be 'grid', 'keypoints' or 'both', got '{self.candidates}'")
        for name in ("reference_modality", "target_modality"):
            if getattr(self, name) not in ("auto", "optical", "sar"):
                raise ValueError(f"{name} must be 'auto', 'optical' or 'sar', got '{getattr(self, name)}'")
        if self.sar_scale not in ("auto", "amplitude", "intensity", "db"):
            raise ValueError(f"sar_scale must be 'auto', 'amplitude', 'intensity' or 'db', got '{self.sar_scale}'")
        tiepoint_search(spec.name, self.matcher_options).check()  # unknown matcher options fail here, early
        names = output_names()
        unknown = set(self.write_outputs or []) - set(names)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; known: {', '.join(names)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoregOptions:
        """Options from a plain dict (unknown keys are an error naming the known ones)."""
        known = {f.name for f in fields(cls)}
        bad = set(data) - known
        if bad:
            raise ValueError(f"unknown option(s) {sorted(bad)}; known options: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass
class CoregResult:
    """What :func:`coregister` returns.

    Attributes:
        fit: The robust fit. ``fit.model`` is the **correction in reference-grid pixels**: it maps
            a target position on the common grid (the target pixel carried through the target's
            own georeferencing into reference pixels, ``CommonGrid.target_to_grid``) to the
            reference pixel where that content belongs. It is the identity when the
            georeferencing is already right, near a pure translation for a georeferenced pair
            whatever the target's CRS, resolution or rotation, and equal to the target pixel ->
            reference pixel model when the target is on the reference grid or in pixel mode.
            Residuals, RMSE and threshold are in reference pixels.
        tiepoints: Every candidate with its match, shift, residual and outlier flags.
        report: The content of ``report.json``.
        outputs: Output key -> written file path.
        grid: The common grid of the run (for :meth:`target_to_reference`).
    """

    fit: FitResult
    tiepoints: TiePoints
    report: dict[str, Any]
    outputs: dict[str, Path]
    grid: CommonGrid | None = field(default=None, repr=False)

    def target_to_reference(self, xy: np.ndarray) -> np.ndarray:
        """Original target pixel ``(N, 2)`` -> reference pixel ``(N, 2)``: georeferencing, then correction."""
        on_grid = self.grid.target_to_grid(xy) if self.grid is not None else np.asarray(xy, np.float64)
        return self.fit.model.apply(on_grid)


def _modality(choice: str, sample: np.ndarray) -> str:
    if choice != "auto":
        return choice
    finite = sample[:, np.isfinite(sample).all(axis=0)] if sample.ndim == 3 else sample
    return "sar" if finite.size and looks_like_sar(sample) else "optical"


def _preparation(source: RasterSource, sample: np.ndarray, modality: str, opts: CoregOptions) -> Preparation:
    """Fix the global statistics of one raster from an overview sample."""
    from .prepare import fit_stretch_optical, fit_stretch_sar

    if modality == "sar":
        scale = opts.sar_scale if opts.sar_scale != "auto" else detect_sar_scale(sample)
        stretch = fit_stretch_sar(sample, scale)  # type: ignore[arg-type]
        log.info("%s: SAR, %s scale, dB stretch %.2f..%.2f", Path(source.path).name, scale, stretch.lo, stretch.hi)
        return Preparation("sar", stretch, scale, opts.speckle_filter)
    stretch = fit_stretch_optical(sample, opts.optical_weights)
    log.info(
        "%s: optical, %d band(s), stretch %.4g..%.4g", Path(source.path).name, sample.shape[0], stretch.lo, stretch.hi
    )
    return Preparation("optical", stretch, weights=opts.optical_weights)


def _coarse_offset(
    grid: CommonGrid, ref_prep: Preparation, tgt_prep: Preparation, opts: CoregOptions
) -> tuple[tuple[int, int], dict[str, Any]]:
    """Global whole-pixel offset from one structural match of decimated overviews."""
    x0, y0, w, h = grid.overlap
    if min(w, h) < opts.coarse_min_overlap:
        return (0, 0), {"used": False, "reason": f"overlap {w} x {h} px is below coarse_min_overlap"}
    # Crop the whole-raster overviews (already read to find the overlap) to the overlap.
    ref_ov, factor = grid.reference.read_overview(opts.coarse_max_side)
    tgt_ov, tgt_factor = grid.target_on_grid.read_overview(opts.coarse_max_side)
    if tgt_ov.shape != ref_ov.shape or tgt_factor != factor:
        ref_ov, factor = grid.reference.read_overview(opts.coarse_max_side, grid.overlap)
        tgt_ov, _ = grid.target_on_grid.read_overview(opts.coarse_max_side, grid.overlap)
    else:
        c0, r0 = int(x0 / factor), int(y0 / factor)
        c1, r1 = int(np.ceil((x0 + w) / factor)), int(np.ceil((y0 + h) / factor))
        ref_ov, tgt_ov = ref_ov[:, r0:r1, c0:c1], tgt_ov[:, r0:r1, c0:c1]
    a, b = ref_prep.apply(ref_ov), tgt_prep.apply(tgt_ov)
    side = min(a.shape)
    t = max(8, int(side * 0.5) // 2 * 2)
    r = (side - t) // 2
    if r < 2:
        return (0, 0), {"used": False, "reason": "overlap too small for a coarse search"}
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    tpl = a[cy - t // 2 : cy + t // 2, cx - t // 2 : cx + t // 2]
    srch = b[cy - t // 2 - r : cy + t // 2 + r, cx - t // 2 - r : cx + t // 2 + r]
    if srch.shape != (t + 2 * r, t + 2 * r):
        return (0, 0), {"used": False, "reason": "overview window does not fit"}
    valid = np.isfinite(tpl).mean(), np.isfinite(srch).mean()
    tpl = np.where(np.isfinite(tpl), tpl, np.nanmean(tpl)).astype(np.float32)
    srch = np.where(np.isfinite(srch), srch, np.nanmean(srch)).astype(np.float32)
    chips = ChipBatch(tpl[None], srch[None], np.array([[cx, cy]], np.float64))
    res = get_matcher("structural").match(chips)
    info: dict[str, Any] = {
        "used": True,
        "factor": factor,
        "template": t,
        "radius": r,
        "valid_fraction": [float(v) for v in valid],
    }
    if not res.valid[0] or res.reliability[0] < opts.coarse_min_reliability:
        info.update(
            used=False,
            reason=f"no reliable coarse match ({res.errors[0] or 'low reliability'})",
            reliability=float(res.reliability[0]),
        )
        return (0, 0), info
    shift = res.shift_xy[0] * factor
    off = (int(round(shift[0])), int(round(shift[1])))
    info.update(
        offset_px=[float(shift[0]), float(shift[1])],
        reliability=float(res.reliability[0]),
        confident=bool(res.reliability[0] >= opts.min_reliability),
    )
    log.info(
        "coarse offset: (%.1f, %.1f) px (overview 1:%.1f, reliability %.2f)",
        shift[0],
        shift[1],
        factor,
        res.reliability[0],
    )
    return off, info


#: A coarse similarity hypothesis scoring at least this share of the best one is matched too (the
#: fine matching's inlier count then decides between them).
_SIMILARITY_ALTERNATIVE_SHARE = 0.75
_SIMILARITY_MAX_HYPOTHESES = 3
#: Reliability floor of tie points matched through a coarse similarity (see ``_coregister``): the
#: SAR/optical maps of small chips are flat, and measured on the SRIF pairs most peaks with a
#: reliability of 0.02-0.15 lie within 3 px of the truth once the similarity has centred them.
_SIMILARITY_MIN_RELIABILITY = 0.02


def _pixel_size_m(grid: CommonGrid) -> float | None:
    """Reference pixel size in metres (None in pixel mode or when the CRS unit is unknown)."""
    if grid.mode != "georeferenced":
        return None
    georef = getattr(grid, "reference_georef", None) or grid.reference.georef
    size = float(georef.pixel_size)
    wkt = georef.crs_wkt or getattr(grid, "assumed_crs_wkt", "")
    if not wkt:
        return size
    from osgeo import osr

    srs = osr.SpatialReference()
    try:
        srs.ImportFromWkt(wkt)
    except RuntimeError:
        return size
    if srs.IsGeographic():
        centre = georef.pixel_to_map(np.array([[georef.width / 2.0, georef.height / 2.0]]))[0]
        return size * 111_320.0 * max(0.1, float(np.cos(np.radians(centre[1]))))
    return size * float(srs.GetLinearUnits() or 1.0)


def resolve_matching_options(opts: CoregOptions, grid: CommonGrid) -> tuple[CoregOptions, dict[str, Any]]:
    """Options with ``spacing``, ``window`` and ``search_radius`` resolved for ``grid``'s overlap.

    The one place where automatic (None) sizes become pixels: see
    :func:`~sarcoreg.core.candidates.auto_matching_sizes` for the rules. Explicit values are kept.

    Args:
        opts: The run's options (None sizes = automatic).
        grid: The grid matching runs on (its overlap, mode and pixel size decide).

    Returns:
        ``(resolved options, auto)`` where ``auto`` names the sizes that were chosen automatically
        (and the pixel size in metres they were derived from, when georeferenced).
    """
    _, _, w, h = grid.overlap
    pixel_m = _pixel_size_m(grid)
    spacing, window, radius = auto_matching_sizes(w, h, pixel_m, opts.expected_error_m, opts.spacing, opts.window,
                                                  opts.search_radius)
    auto: dict[str, Any] = {
        name: value
        for name, value, given in (("spacing", spacing, opts.spacing), ("window", window, opts.window),
                                   ("search_radius", radius, opts.search_radius))
        if given is None
    }
    if auto:
        auto["pixel_size_m"] = None if pixel_m is None else round(pixel_m, 4)
        auto["expected_error_m"] = opts.expected_error_m
    return replace(opts, spacing=spacing, window=window, search_radius=radius), auto


def _wants_similarity(opts: CoregOptions, grid: CommonGrid) -> bool:
    """Whether the coarse stage searches rotation and scale (``coarse_rotation_scale``)."""
    return opts.coarse_rotation_scale == "on" or (opts.coarse_rotation_scale == "auto" and grid.mode == "pixel")


def _similarity_windows(grid: CommonGrid) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Reference and target windows the similarity search and the matching may use."""
    if grid.mode == "georeferenced":
        return grid.overlap, grid.overlap
    t = grid.target_on_grid
    return (0, 0, grid.reference.width, grid.reference.height), (0, 0, t.width, t.height)


def _coarse_similarity(
    grid: CommonGrid, ref_prep: Preparation, tgt_prep: Preparation, opts: CoregOptions
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Coarse rotation + scale + offset hypotheses (best first) and the report entry."""
    ref_win, tgt_win = _similarity_windows(grid)
    est = search_similarity(
        grid.reference, grid.target_on_grid, ref_prep.apply, tgt_prep.apply, ref_win, tgt_win,
        max_rotation_deg=opts.coarse_max_rotation_deg, scale_range=(opts.coarse_min_scale, opts.coarse_max_scale),
        max_side=opts.coarse_max_side,
    )
    if est is None:
        return [], {"used": False, "model": "similarity", "reason": "no rotation / scale gives enough overlap"}
    mats = [est.matrix] + [m for score, m in est.alternatives
                           if score >= _SIMILARITY_ALTERNATIVE_SHARE * est.score][: _SIMILARITY_MAX_HYPOTHESES - 1]
    info: dict[str, Any] = {
        "used": True,
        "model": "similarity",
        "confident": False,  # judged by the fine matching's inliers, not by one correlation peak
        "score": round(est.score, 4),
        "runner_up": round(est.runner_up, 4),
        "evaluations": est.evaluations,
        "factor": est.factor,
        "n_hypotheses": len(mats),
    }
    return mats, info


def _through_similarity(grid: CommonGrid, similarity: np.ndarray, opts: CoregOptions) -> CommonGrid:
    """The grid to match on: the target resampled onto the reference pixels through ``similarity``."""
    ref_win, tgt_win = _similarity_windows(grid)
    overlap = similarity_overlap(similarity, (tgt_win[0] + tgt_win[2], tgt_win[1] + tgt_win[3]), ref_win)
    if overlap is None:
        raise TooFewTiePoints("the coarse rotation / scale hypothesis leaves no overlap to match in")
    warped = warped_target(grid.target_on_grid, similarity, grid.reference.width, grid.reference.height,
                           opts.resampling)
    return replace(grid, target_on_grid=warped, overlap=overlap)


def _similarity_hypothesis(
    similarity: np.ndarray, grid: CommonGrid
) -> tuple[tuple[int, int], np.ndarray | None]:
    """``(offset, similarity)`` to match with: a near-translation becomes a whole-pixel offset.

    Below 1 deg of rotation and 2 % of scale the fine matching absorbs the rest (under 0.6 px
    across a 64 px template), and matching the original target pixels avoids a resampling.
    """
    rotation = abs(float(np.degrees(np.arctan2(similarity[1, 0], similarity[0, 0]))))
    scale = float(np.hypot(similarity[0, 0], similarity[1, 0]))
    if rotation >= 1.0 or abs(scale - 1.0) >= 0.02:
        return (0, 0), similarity
    x0, y0, w, h = grid.overlap
    centre = np.array([[x0 + w / 2.0, y0 + h / 2.0]])
    off = (apply_matrix(np.linalg.inv(similarity), centre) - centre)[0]
    return (int(round(off[0])), int(round(off[1]))), None


def _describe_similarity(info: dict[str, Any], similarity: np.ndarray, grid: CommonGrid) -> None:
    """Put the chosen similarity into the coarse report entry."""
    x0, y0, w, h = grid.overlap
    centre = np.array([[x0 + w / 2.0, y0 + h / 2.0]])
    info.update(
        matrix_px=similarity.tolist(),
        rotation_deg=round(float(np.degrees(np.arctan2(similarity[1, 0], similarity[0, 0]))), 3),
        scale=round(float(np.hypot(similarity[0, 0], similarity[1, 0])), 5),
        offset_px=[float(v) for v in (apply_matrix(np.linalg.inv(similarity), centre) - centre)[0]],
    )


#: ``(spacing, window, search_radius)`` of options resolved by :func:`resolve_matching_options`.
_sizes = resolved_sizes
#: Candidate template centres of the window search (kept under its old name for callers).
_candidates = WindowSearch.candidates


class TooFewTiePoints(CoregistrationFailed):
    """Too few usable tie points for the requested transform (the message says why): a ``failed`` run."""


@dataclass
class _Attempt:
    """Matching + robust fit under one prior offset hypothesis."""

    offset: tuple[int, int]
    result: MatchResult
    fit: FitResult
    l1: np.ndarray
    errors: list[str]
    target_px: np.ndarray
    device: str
    extra: dict[str, Any] = field(default_factory=dict)
    found: TiePointSet | None = None  # the search's tie points (report sections, images)
    grid: CommonGrid | None = None  # the matching grid (target through the coarse similarity)
    similarity: np.ndarray | None = None
    opts: CoregOptions | None = None  # options with the automatic sizes resolved


def _match_and_fit(
    grid: CommonGrid,
    ref_prep: Preparation,
    tgt_prep: Preparation,
    opts: CoregOptions,
    offset: tuple[int, int],
    progress: Progress,
    search: TiePointSearch,
    similarity: np.ndarray | None = None,
) -> _Attempt:
    """Tie points (``search``, built once per run) and the robust fit for one prior offset.

    ``similarity``: the coarse similarity (common-grid target pixel -> reference pixel) through which
    ``grid.target_on_grid`` was resampled; matched positions are mapped back through its inverse,
    so ``result.target_xy`` is always on the common grid of the original target.
    """
    found = search.find(grid, ref_prep, tgt_prep, offset, opts, progress)
    result = found.matches
    centres = result.ref_xy
    if similarity is not None:
        result.target_xy = apply_matrix(np.linalg.inv(similarity), result.target_xy)
    l1 = ~result.valid | ~(result.reliability >= opts.min_reliability)
    errors = list(result.errors)
    for k in np.nonzero(result.valid & (result.reliability < opts.min_reliability))[0]:
        errors[k] = f"reliability {result.reliability[k]:.2f} < {opts.min_reliability}"
    target_px = grid.grid_to_target(np.where(l1[:, None], np.nan, result.target_xy))
    grid_xy = _fit_source(result.target_xy, target_px)
    n_ok = int(np.isfinite(grid_xy).all(axis=1).sum())
    if n_ok < min_points(opts.transform):
        raise TooFewTiePoints(
            f"only {n_ok} usable tie points of {len(centres)} candidates; transform '{opts.transform}' needs "
            f"{min_points(opts.transform)}. Main reasons: {_top_reasons(errors)}. Try a smaller spacing, a larger "
            "window or search radius, another method, or a simpler transform (shift)."
        )
    # Fitted in the reference grid's pixels: from the target position on the common grid (the
    # target pixel through its own georeferencing) to the reference pixel, so the model is a
    # correction of the georeferencing (see CoregResult.fit), right for any target grid.
    fit = fit_transform(
        grid_xy, result.ref_xy, opts.transform, threshold_px=opts.ransac_threshold_px, seed=opts.seed,
        tps_smoothing=opts.tps_smoothing,
    )
    return _Attempt(offset, result, fit, l1, errors, target_px, found.device, found=found)


def _fit_source(grid_xy: np.ndarray, target_px: np.ndarray) -> np.ndarray:
    """Positions on the common grid that the fit uses: NaN where the target pixel is unknown."""
    return np.where(np.isfinite(target_px).all(axis=1)[:, None], grid_xy, np.nan)


def _guard_extrapolation(
    fit: FitResult,
    ref_xy: np.ndarray,
    grid_xy: np.ndarray,
    overlap: tuple[int, int, int, int],
    opts: CoregOptions,
    warnings: list[str],
) -> FitResult:
    """Fall back to a shift when the inliers cover too little of the overlap for ``opts.transform``."""
    if opts.transform == "shift" or fit.n_inliers == 0:
        return fit
    pts = ref_xy[fit.inliers]
    cover_x = float(np.ptp(pts[:, 0])) / max(overlap[2], 1)
    cover_y = float(np.ptp(pts[:, 1])) / max(overlap[3], 1)
    if min(cover_x, cover_y) >= opts.min_coverage:
        return fit
    message = (
        f"the {fit.n_inliers} inliers span only {cover_x:.0%} x {cover_y:.0%} of the overlap: a '{opts.transform}' "
        "transform would be extrapolated far from its tie points, so a shift was fitted instead "
        "(use a denser grid or keypoint candidates to get tie points across the image)"
    )
    log.warning(message)
    warnings.append(message)
    return fit_transform(grid_xy, ref_xy, "shift", threshold_px=opts.ransac_threshold_px, seed=opts.seed)


#: Through a coarse similarity, the affine is kept only when it lowers the cross-validated error by
#: this share against the similarity inside it (and the similarity keeps at least this share of the
#: affine's inliers: the affine's extra terms take in points that only its bending fits).
_AFFINE_MIN_CV_GAIN = 0.10
_SIMILARITY_MIN_INLIER_SHARE = 0.5


def _similarity_within_affine(
    fit: FitResult, ref_xy: np.ndarray, grid_xy: np.ndarray, opts: CoregOptions
) -> tuple[FitResult, str]:
    """An affine matched through a coarse similarity, or the similarity inside it when that is as good.

    The coarse stage found the images related by rotation and scale; an affine adds anisotropic
    scale and shear, two terms that tie points covering part of the image fit to their noise and
    extrapolate into the corners (on SRIF pairs a similarity of the same inliers was 1.8-2.9 px
    from the truth where the affine was 2.6-7.9 px). The similarity is taken unless the affine
    lowers the cross-validated check-point error by at least ``_AFFINE_MIN_CV_GAIN``.

    Returns:
        ``(fit, why)``: the fit to keep and, when the similarity was taken, a sentence saying why.
    """
    if fit.model.kind != "affine" or opts.transform != "affine":
        return fit, ""
    try:
        sim = fit_transform(grid_xy, ref_xy, "similarity", threshold_px=opts.ransac_threshold_px, seed=opts.seed)
    except ValueError:
        return fit, ""
    if sim.n_inliers < _SIMILARITY_MIN_INLIER_SHARE * fit.n_inliers:
        return fit, ""
    cv_aff = cross_validated_rmse(grid_xy[fit.inliers], ref_xy[fit.inliers], "affine").rmse_px
    cv_sim = cross_validated_rmse(grid_xy[sim.inliers], ref_xy[sim.inliers], "similarity").rmse_px
    if not np.isfinite(cv_sim) or (np.isfinite(cv_aff) and cv_aff < (1.0 - _AFFINE_MIN_CV_GAIN) * cv_sim):
        return fit, ""
    why = (f"a similarity (rotation, scale, offset) was fitted inside the requested affine: the images were matched "
           f"through a coarse rotation / scale, and the affine's extra terms lower the cross-validated error only "
           f"from {cv_sim:.2f} to {cv_aff:.2f} px ({sim.n_inliers} vs {fit.n_inliers} inliers)")
    log.info(why)
    return sim, why


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def coregister(
    reference: str | Path,
    target: str | Path,
    out_dir: str | Path | None = None,
    options: CoregOptions | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> CoregResult:
    """Co-register ``target`` (e.g. SAR) onto ``reference`` (e.g. optical); write a whole output set or none.

    With an output folder, before any work: an output path that resolves to an input is refused,
    the folder is created, checked writable and locked (a second run into it is refused), and
    leftovers of killed runs are cleaned. The outputs are written into a staging folder inside it
    and moved in as one set at the end, replacing the previous set (see
    :mod:`sarcoreg.core.output_set`); a failed or cancelled run leaves the folder as it was.

    Args:
        reference: Reference raster (its grid and CRS are kept).
        target: Raster to co-register.
        out_dir: Folder for the outputs (created). None: compute only, write nothing.
        options: :class:`CoregOptions`; keyword ``overrides`` replace single fields.
        progress: Progress / cancel; cancel is checked between tie-point batches.
        **overrides: Single :class:`CoregOptions` fields that replace those of ``options``.

    Returns:
        :class:`CoregResult` (its ``outputs`` are the final paths in ``out_dir``).

    Raises:
        RasterInputError: an input cannot be read, bands are wrong, or there is no overlap.
        InputOverwriteError: an output would overwrite an input (a ValueError).
        OutputFolderError: the output folder is not writable, is a file, or is in use (an OSError).
        CoregistrationFailed: the verdict is ``failed`` (too few tie points, an implausible or
            unverifiable fit ...; ``reasons`` says why), or ``uncertain`` with
            ``options.verdict.keep_uncertain`` off. Raised before anything is written.
        ValueError: a bad option.
        Cancelled: cancelled through ``progress``.
    """
    if out_dir is None:
        return _coregister(reference, target, None, options, progress, **overrides)
    from .output_set import OutputSet, refuse_input_overwrite

    folder = Path(out_dir)
    names = output_names().values()
    refuse_input_overwrite(
        [("the output folder", folder)] + [(f"the output {name}", folder / name) for name in names],
        [("reference raster", reference), ("target raster", target)],
    )
    with OutputSet(folder, names, {"reference": str(reference), "target": str(target)}) as out:
        res = _coregister(reference, target, out.staging, options, progress, **overrides)
        res.outputs = out.commit(res.outputs)
    return res


def _coregister(
    reference: str | Path,
    target: str | Path,
    out_dir: str | Path | None = None,
    options: CoregOptions | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> CoregResult:
    """Co-register ``target`` (e.g. SAR) onto ``reference`` (e.g. optical).

    Args:
        reference: Reference raster (its grid and CRS are kept).
        target: Raster to co-register.
        out_dir: Folder the outputs are written into: the staging folder of
            :func:`coregister`, which moves them in as one set. None: compute only.
        options: :class:`CoregOptions`; keyword ``overrides`` replace single fields.
        progress: Progress / cancel; cancel is checked between tie-point batches.
        **overrides: Single :class:`CoregOptions` fields that replace those of ``options``.

    Returns:
        :class:`CoregResult`.

    Raises:
        RasterInputError: an input cannot be read, bands are wrong, or there is no overlap.
        CoregistrationFailed: the verdict is ``failed`` (too few tie points, an implausible or
            unverifiable fit ...; ``reasons`` says why), or ``uncertain`` with
            ``options.verdict.keep_uncertain`` off. Raised before anything is written.
        ValueError: a bad option.
        Cancelled: cancelled through ``progress``.
    """
    t_start = time.perf_counter()
    opts = CoregOptions(**{**asdict(options or CoregOptions()), **overrides})
    opts.validate()
    progress = progress or Progress()
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}  # process CPU seconds (all threads): steady on a busy machine
    cpu_mark = [time.process_time()]

    def lap(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        timings[name] = round(t1 - t0, 3)
        cpu = time.process_time()
        cpu_timings[name] = round(cpu - cpu_mark[0], 3)
        cpu_mark[0] = cpu
        return t1

    t = time.perf_counter()
    progress.report(0.0, "opening rasters")
    ref = open_raster(reference, opts.reference_bands, role="reference")
    tgt = open_raster(target, opts.target_bands, role="target")
    grid = common_grid(ref, tgt, opts.resampling)
    t = lap("open", t)

    progress.report(0.03, "preparing radiometry")
    # Picked (not averaged) pixels keep the speckle that modality detection looks for.
    ref_sample, _ = ref.read_overview(1024, grid.overlap, average=False)
    tgt_sample, _ = grid.target_on_grid.read_overview(1024, grid.overlap, average=False)
    ref_mod = _modality(opts.reference_modality, ref_sample)
    tgt_mod = _modality(opts.target_modality, tgt_sample)
    ref_prep = _preparation(ref, ref_sample, ref_mod, opts)
    tgt_prep = _preparation(grid.target_on_grid, tgt_sample, tgt_mod, opts)
    t = lap("prepare", t)

    offset, coarse_info = ((0, 0), {"used": False, "reason": "disabled"})
    similarities: list[np.ndarray] = []
    if opts.coarse and _wants_similarity(opts, grid):
        progress.report(0.06, "coarse rotation, scale and offset on overviews")
        similarities, coarse_info = _coarse_similarity(grid, ref_prep, tgt_prep, opts)
    if opts.coarse and not similarities:
        progress.report(0.06, "coarse offset on an overview")
        offset, translation_info = _coarse_offset(grid, ref_prep, tgt_prep, opts)
        coarse_info = {**translation_info, "similarity": coarse_info} if coarse_info.get("model") else translation_info
    t = lap("coarse", t)

    hypotheses: list[tuple[tuple[int, int], np.ndarray | None]]
    if similarities:
        hypotheses = [_similarity_hypothesis(m, grid) for m in similarities]
    elif coarse_info.get("used") and not coarse_info.get("confident") and offset != (0, 0):
        hypotheses = [(offset, None), ((0, 0), None)]
    else:
        hypotheses = [(offset, None)]
    attempts: list[_Attempt] = []
    failures: list[str] = []
    search = tiepoint_search(opts.method, opts.matcher_options)  # models loaded once for all hypotheses
    for i, (hyp, sim) in enumerate(hypotheses):
        span = 0.7 / len(hypotheses)
        sub_progress = progress.sub(0.1 + i * span, 0.1 + (i + 1) * span)
        try:
            mgrid = grid if sim is None else _through_similarity(grid, sim, opts)
            hopts, auto = resolve_matching_options(opts, mgrid)
            if sim is not None and hopts.min_reliability > _SIMILARITY_MIN_RELIABILITY:
                # Search windows centred by a verified whole-image similarity: a weak but central
                # peak is kept for the robust fit, which (with the verdict) sorts them out.
                hopts = replace(hopts, min_reliability=_SIMILARITY_MIN_RELIABILITY)
                auto["min_reliability"] = _SIMILARITY_MIN_RELIABILITY
            attempt = _match_and_fit(mgrid, ref_prep, tgt_prep, hopts, hyp, sub_progress, search, sim)
            attempt.grid, attempt.similarity, attempt.opts = mgrid, sim, hopts
            attempt.extra.setdefault("auto_options", auto)
            attempt.extra["hypothesis"] = i
            attempts.append(attempt)
        except TooFewTiePoints as exc:
            failures.append(str(exc))
    if not attempts:
        raise TooFewTiePoints(failures[0])
    best = max(attempts, key=lambda a: a.fit.n_inliers)
    tried = {int(a.extra.pop("hypothesis")): a for a in attempts}
    chosen = next(k for k, a in tried.items() if a is best)
    if len(hypotheses) > 1:
        key = "similarity_hypotheses" if similarities else "hypotheses"
        coarse_info[key] = ({str(k): a.fit.n_inliers for k, a in tried.items()} if similarities
                            else {str(a.offset): a.fit.n_inliers for a in attempts})
        if similarities:
            coarse_info["chosen_hypothesis"] = chosen
        else:
            coarse_info["chosen_offset"] = list(best.offset)
        log.info("coarse hypotheses %s: kept %s", coarse_info[key],
                 coarse_info.get("chosen_hypothesis", best.offset))
    if similarities:
        _describe_similarity(coarse_info, similarities[chosen], grid)
        coarse_info["resampled_through_similarity"] = best.similarity is not None
    auto_options = best.extra.pop("auto_options", {})
    opts = best.opts or opts
    grid_used = best.grid or grid  # its overlap is where the matching ran
    result, fit, l1, errors, target_px, device = (best.result, best.fit, best.l1, best.errors, best.target_px,
                                                  best.device)
    t = lap("match", t)
    warnings: list[str] = list(grid.warnings)
    fit_source = _fit_source(result.target_xy, target_px)
    fit = _guard_extrapolation(fit, result.ref_xy, fit_source, grid_used.overlap, opts, warnings)
    model_choice = ""
    if best.similarity is not None:
        fit, model_choice = _similarity_within_affine(fit, result.ref_xy, fit_source, opts)
    l2 = ~l1 & ~fit.inliers
    for k in np.nonzero(l2)[0]:
        errors[k] = errors[k] or "rejected by the robust fit"
    tiepoints = TiePoints(
        ref_xy=result.ref_xy,
        target_xy=target_px,
        shift_px=result.target_xy - result.ref_xy,
        score=result.score,
        reliability=result.reliability,
        residual_px=fit.residuals,
        l1_outlier=l1,
        l2_outlier=l2,
        errors=errors,
        matcher=result.matcher,
        window=_sizes(opts)[1],
        reference=grid.reference_georef,
    )
    t = lap("estimate", t)

    report = _report(ref, tgt, grid, opts, fit, tiepoints, coarse_info, device, ref_mod, tgt_mod)
    report["warnings"] = warnings
    report["auto_options"] = auto_options
    if model_choice:
        report["model_choice"] = model_choice
    previews: dict[str, bytes] = {}
    if best.found is not None:
        report.update(best.found.report)
        previews = dict(best.found.images)
    verdict = _judge(grid_used, opts, fit, tiepoints, result.target_xy, coarse_info, report)
    if verdict.status == "failed" or (verdict.status == "uncertain" and not opts.verdict.keep_uncertain):
        refused = verdict.status == "uncertain"
        message = ("co-registration " + ("refused (uncertain, and uncertain results are not kept)" if refused
                                         else "failed") + ", nothing was written: " + " ".join(verdict.reasons))
        log.warning(message)
        report["timings_s"] = timings
        report["runtime_s"] = round(time.perf_counter() - t_start, 3)
        raise CoregistrationFailed(message, verdict.reasons, report, CoregResult(fit, tiepoints, report, {}, grid))
    if verdict.status == "uncertain":
        log.warning("co-registration uncertain: %s", " ".join(verdict.reasons))
    outputs: dict[str, Path] = {}
    if out_dir is not None:
        from .outputs import RunArtifacts, write_outputs

        report["runtime_s"] = round(time.perf_counter() - t_start, 3)
        artifacts = RunArtifacts(grid, fit, tiepoints, report, opts, ref_prep, tgt_prep,
                                 keys=tuple(opts.write_outputs or output_names()), maps=result.maps,
                                 extra_images=previews)
        outputs = write_outputs(Path(out_dir), artifacts, progress.sub(0.85, 1.0))
    t = lap("write", t)
    report["timings_s"] = timings
    report["timings_cpu_s"] = cpu_timings
    report["runtime_s"] = round(time.perf_counter() - t_start, 3)
    report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if out_dir is not None and "report_json" in outputs:
        from .outputs import write_report_json

        write_report_json(outputs["report_json"], report)
    progress.report(1.0, f"done ({verdict.status}): RMSE {fit.rmse_px:.3f} px with {fit.n_inliers} tie points")
    return CoregResult(fit, tiepoints, report, outputs, grid)


def _judge(
    grid: CommonGrid,
    opts: CoregOptions,
    fit: FitResult,
    tp: TiePoints,
    grid_xy: np.ndarray,
    coarse: dict[str, Any],
    report: dict[str, Any],
) -> Verdict:
    """Run :func:`sarcoreg.core.verdict.judge` on the final fit and put its result in ``report``.

    Adds ``status``, ``reasons``, ``rmse_cv_px``, ``rmse_cv_map`` and ``verdict`` (every measured
    quantity and the thresholds used). ``grid_xy``: the matches on the common grid.
    """
    fallback = ""
    if fit.model.kind != opts.transform and not (opts.transform == "affine" and fit.model.kind == "similarity"):
        fallback = "the tie points that agree cover too little of the overlap to fit it"
    verdict = judge(
        model=fit.model,
        requested_kind=opts.transform,
        src_xy=_fit_source(grid_xy, tp.target_xy),
        ref_xy=tp.ref_xy,
        grid_xy=grid_xy,
        inliers=fit.inliers,
        usable=~tp.l1_outlier,
        overlap=grid.overlap,
        georeferenced=grid.mode == "georeferenced",
        coarse=coarse,
        fallback=fallback,
        tps_smoothing=opts.tps_smoothing,
        seed=opts.seed,
        threshold_px=fit.threshold_px,
        options=opts.verdict,
    )
    pixel_size = grid.reference.georef.pixel_size if grid.mode == "georeferenced" else 1.0
    cv = verdict.rmse_cv_px
    report["status"] = verdict.status
    report["reasons"] = list(verdict.reasons)
    report["rmse_cv_px"] = cv if np.isfinite(cv) else None
    report["rmse_cv_map"] = cv * pixel_size if np.isfinite(cv) else None
    report["verdict"] = {"status": verdict.status, "checks": verdict.checks, "thresholds": opts.verdict.to_dict()}
    return verdict


def _top_reasons(errors: list[str]) -> str:
    from collections import Counter

    counts = Counter(e.split(" (")[0] for e in errors if e)
    return "; ".join(f"{n} x {e}" for e, n in counts.most_common(3)) or "none recorded"


def _report(
    ref: RasterSource,
    tgt: RasterSource,
    grid: CommonGrid,
    opts: CoregOptions,
    fit: FitResult,
    tp: TiePoints,
    coarse: dict[str, Any],
    device: str,
    ref_mod: str,
    tgt_mod: str,
) -> dict[str, Any]:
    pixel_size = ref.georef.pixel_size if grid.mode == "georeferenced" else 1.0
    inl = tp.inlier
    shifts = tp.shift_px[inl] if inl.any() else np.empty((0, 2))
    return {
        "sarcoreg_version": _version(),
        "method": opts.method,
        "device": device,
        "transform": {
            "type": fit.model.kind,
            "requested": opts.transform,
            # The model is the correction in reference-grid pixels (see CoregResult.fit); the
            # composite target pixel -> reference pixel matrix is given when it is affine.
            "space": "reference_pixels",
            "matrix_px": fit.model.matrix_px.tolist(),
            "target_to_reference_matrix_px": _composite_matrix(grid, fit),
            "model": fit.model.to_dict(),
            "robust_method": fit.robust_method,
        },
        "rmse_px": fit.rmse_px,
        "rmse_x_px": fit.rmse_x_px,
        "rmse_y_px": fit.rmse_y_px,
        "rmse_map": fit.rmse_px * pixel_size,
        "map_units": "pixels" if grid.mode == "pixel" else "CRS units",
        "ce90_px": fit.ce90_px,
        "ce90_map": fit.ce90_px * pixel_size,
        "n_candidates": len(tp),
        "n_tiepoints": int((~tp.l1_outlier).sum()),
        "n_inliers": int(fit.n_inliers),
        "mean_shift_px": shifts.mean(axis=0).tolist() if len(shifts) else [None, None],
        "median_shift_px": np.median(shifts, axis=0).tolist() if len(shifts) else [None, None],
        "coarse": coarse,
        "grid": {"mode": grid.mode, "overlap_px": list(grid.overlap)},
        "reference": {
            "path": ref.path,
            "bands": ref.bands,
            "modality": ref_mod,
            "size": [ref.width, ref.height],
            "crs_wkt": ref.georef.crs_wkt,
            "geotransform": list(ref.georef.geotransform),
        },
        "target": {
            "path": tgt.path,
            "bands": tgt.bands,
            "modality": tgt_mod,
            "size": [tgt.width, tgt.height],
            "crs_wkt": tgt.georef.crs_wkt,
            "geotransform": list(tgt.georef.geotransform),
        },
        "options": asdict(opts),
    }


def _composite_matrix(grid: CommonGrid, fit: FitResult) -> list[list[float]] | None:
    """Original target pixel -> reference pixel as a 3 x 3 matrix, or None when it is not affine."""
    t2g = grid.target_to_grid_matrix()
    if t2g is None or not fit.model.is_affine:
        return None
    return (fit.model.matrix_px @ t2g).tolist()


def _version() -> str:
    import configparser

    meta = configparser.ConfigParser()
    meta.read(Path(__file__).resolve().parent.parent / "metadata.txt", encoding="utf-8")
    return meta.get("general", "version", fallback="unknown")


def run_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Worker job entry: ``{"reference", "target", "out_dir", "options": {...}}`` -> summary dict."""
    for key in ("reference", "target", "out_dir"):
        if not params.get(key):
            raise ValueError(f"coregister job needs '{key}'")
    options = CoregOptions.from_dict(dict(params.get("options") or {}))
    res = coregister(params["reference"], params["target"], params["out_dir"], options, progress)
    return {"report": res.report, "outputs": {k: str(v) for k, v in res.outputs.items()}}
