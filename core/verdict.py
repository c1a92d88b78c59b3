"""The verdict of a co-registration run: ``ok``, ``uncertain`` or ``failed``, with reasons.

A robust fit always returns *some* transform, and its residual RMSE describes only the tie points
it was fitted to (an affine through exactly three points has RMSE 0 by construction). This module
decides, from the fit and the tie points alone (pure numpy, no raster access), whether the result
can be trusted. :func:`judge` runs every rule and returns a :class:`Verdict`; the engine puts it in
``report.json`` (``status``, ``reasons``, ``rmse_cv_px``, ``verdict``) and refuses to write any
output for a ``failed`` run.

The rules (thresholds are fields of :class:`VerdictOptions`):

1. **Inliers with real redundancy** (``min_inliers`` / ``min_inliers_failed``): fewer inliers
   than ``min_inliers[kind]`` (shift 4, affine / poly1 8, homography 10, poly2 15, poly3 / tps 25)
   is ``uncertain``; fewer than ``min_inliers_failed[kind]`` (shift 3, affine / poly1 5,
   homography 6, poly2 9, poly3 / tps 15) is ``failed``. A fit with 1-3 inliers is never ``ok``.
2. **Inlier share** (``min_inlier_fraction``, ``min_inlier_fraction_failed``): the inliers'
   share of the usable tie points (those that passed the matcher's own checks). A low share means
   the robust fit picked a consensus among mostly wrong matches: below 0.25 ``uncertain``, below
   0.10 ``failed``.
3. **Spread** (``min_cells``, ``min_hull_fraction``): the inliers must occupy at least
   ``min_cells`` of the 9 cells of a 3 x 3 grid laid over the area where tie points were tried
   (the candidates' bounding box), and, for every transform richer than a shift, their convex
   hull must cover at least ``min_hull_fraction`` of the overlap (else the model is extrapolated
   over most of the image). Either is ``uncertain``. A fit the engine had to simplify (e.g. an
   affine replaced by a shift because the inliers cover too little) is ``uncertain`` too.
4. **Plausible transform** (``max_scale_dev``, ``max_rotation_deg``, ``max_shear`` and their
   ``*_failed`` twins): the fitted model is compared with what the georeferencing implies. On the
   common grid of a georeferenced pair the *correction* (grid position of a match -> reference
   pixel) must be close to a pure translation; its linear part is split into singular values
   (scale), the rotation of its polar decomposition and the anisotropy ``s1 / s2 - 1`` (shear).
   Scale off by more than 5 %, rotation above 2 deg or shear above 5 % is ``uncertain``; above
   20 %, 10 deg or 20 % ``failed``. For plain images (no georeferencing, ``pixel`` mode) nothing is
   implied about scale and rotation, so only the shear bounds apply.
5. **Agreement with the coarse stage** (``max_coarse_disagreement_px``): when the coarse stage
   was confident, the fitted shift at the centre of the overlap must agree with its offset within
   ``max(max_coarse_disagreement_px, 2 x overview factor)`` pixels, else ``uncertain``. A coarse
   rotation / scale similarity (plain images) is an independent estimate of the whole mapping:
   the fit must agree with it within ``max_similarity_disagreement_px`` (2.5 px) at the corners of
   the matched area (:func:`similarity_disagreement`), else ``uncertain``.
6. **Independent accuracy** (``max_cv_px``, ``max_cv_px_failed``): the cross-validated
   check-point error ``rmse_cv_px`` of :func:`cross_validated_rmse` (each inlier predicted by a
   plain least-squares fit of the same kind on the other inliers; leave-one-out up to
   ``loo_max_points`` inliers, ``folds``-fold above). Above 1.5 px ``uncertain``; above 5 px, or
   not computable (exactly determined, degenerate layout), ``failed``.
7. **Two halves agree** (``max_split_disagreement_px``): the usable tie points are split like a
   checkerboard into two interleaved halves, each gets its own robust fit, and the two fits are
   compared at the corners of the matched area (:func:`split_half_disagreement`). Consistent tie
   points give two fits within a pixel or two; halves that settle on different transforms more
   than ``max_split_disagreement_px`` (5 px) apart mean the tie points do not determine one
   (each half's fit is about ``sqrt(2)`` worse than the whole one, so 5 px between halves is about
   2.5 px of doubt at the corners for the full fit): ``uncertain``. Skipped when a half keeps
   fewer inliers than ``min_inliers_failed`` of the kind.

The status is the worst of the rules. ``reasons`` holds one plain sentence per broken rule, each
saying what was wrong and what to do about it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .estimation import GeometricModel, fit_transform, min_points
from .estimation.coords import affine_from_samples, bbox
from .estimation.refit import fit_affine, fit_homography, fit_polynomial, fit_shift, fit_similarity, fit_tps
from .estimation.stats import json_float

__all__ = [
    "STATUSES",
    "CVResult",
    "CoregistrationFailed",
    "Verdict",
    "VerdictOptions",
    "correction_affine",
    "cross_validated_rmse",
    "decompose_linear",
    "judge",
    "similarity_disagreement",
    "split_half_disagreement",
    "spread_cells",
]

#: The statuses, best first.
STATUSES: tuple[str, ...] = ("ok", "uncertain", "failed")


def _min_inliers() -> dict[str, int]:
    return {"shift": 4, "similarity": 6, "affine": 8, "poly1": 8, "homography": 10, "poly2": 15, "poly3": 25,
            "tps": 25}


def _min_inliers_failed() -> dict[str, int]:
    return {"shift": 3, "similarity": 4, "affine": 5, "poly1": 5, "homography": 6, "poly2": 9, "poly3": 15,
            "tps": 15}


@dataclass
class VerdictOptions:
    """Thresholds of the verdict (see the module docstring for what each rule means).

    Attributes:
        min_inliers: Inliers per transform kind below which the run is ``uncertain``.
        min_inliers_failed: Inliers per transform kind below which the run is ``failed``.
        min_inlier_fraction: Inlier share of the usable tie points below which it is ``uncertain``.
        min_inlier_fraction_failed: Inlier share below which it is ``failed``.
        min_cells: Occupied cells (of a 3 x 3 grid over the tried area) below which ``uncertain``.
        min_hull_fraction: Inliers' convex hull / overlap area below which a transform richer
            than a shift is ``uncertain``.
        max_scale_dev: ``|scale - 1|`` of the correction above which ``uncertain``.
        max_scale_dev_failed: ``|scale - 1|`` above which ``failed``.
        max_rotation_deg: Rotation of the correction above which ``uncertain`` (degrees).
        max_rotation_deg_failed: Rotation above which ``failed`` (degrees).
        max_shear: Anisotropy ``s1 / s2 - 1`` of the correction above which ``uncertain``.
        max_shear_failed: Anisotropy above which ``failed``.
        max_coarse_disagreement_px: Disagreement between a confident coarse offset and the fitted
            shift at the overlap's centre above which ``uncertain`` (at least twice the coarse
            overview's decimation factor is allowed).
        max_similarity_disagreement_px: Largest corner distance between the fit and a coarse
            rotation / scale similarity above which ``uncertain`` (at least twice the overview
            factor). The similarity is polished to about 0.25 deg and 0.5 % of scale, about 1.5 px
            at the corners of a 256 px image, so 2.5 px leaves about 1 px for the fit's own error.
        max_split_disagreement_px: Largest corner distance between the fits of two interleaved
            halves of the tie points above which ``uncertain`` (reference px).
        max_cv_px: Cross-validated check-point RMSE above which ``uncertain`` (reference px).
        max_cv_px_failed: Cross-validated RMSE above which ``failed`` (reference px).
        loo_max_points: Leave-one-out cross-validation up to this many inliers, k-fold above.
        folds: Number of folds above ``loo_max_points``.
        keep_uncertain: False: an ``uncertain`` run is refused like a ``failed`` one (no outputs).
    """

    min_inliers: dict[str, int] = field(default_factory=_min_inliers)
    min_inliers_failed: dict[str, int] = field(default_factory=_min_inliers_failed)
    min_inlier_fraction: float = 0.25
    min_inlier_fraction_failed: float = 0.10
    min_cells: int = 3
    min_hull_fraction: float = 0.10
    max_scale_dev: float = 0.05
    max_scale_dev_failed: float = 0.20
    max_rotation_deg: float = 2.0
    max_rotation_deg_failed: float = 10.0
    max_shear: float = 0.05
    max_shear_failed: float = 0.20
    max_coarse_disagreement_px: float = 3.0
    max_similarity_disagreement_px: float = 2.5
    max_split_disagreement_px: float = 5.0
    max_cv_px: float = 1.5
    max_cv_px_failed: float = 5.0
    loo_max_points: int = 60
    folds: int = 10
    keep_uncertain: bool = True

    @classmethod
    def from_any(cls, value: VerdictOptions | Mapping[str, Any] | None) -> VerdictOptions:
        """Options from an instance, a (partial) dict such as JSON gives, or None (defaults).

        A partial ``min_inliers`` / ``min_inliers_failed`` dict updates the defaults per kind.

        Raises:
            ValueError: Unknown keys (the message names the known ones) or a bad value.
        """
        if value is None:
            return cls()
        if isinstance(value, VerdictOptions):
            return value
        known = {f.name for f in fields(cls)}
        bad = set(value) - known
        if bad:
            raise ValueError(f"unknown verdict option(s) {sorted(bad)}; known: {', '.join(sorted(known))}")
        data = dict(value)
        for key, base in (("min_inliers", _min_inliers()), ("min_inliers_failed", _min_inliers_failed())):
            if key in data:
                data[key] = {**base, **{str(k): int(v) for k, v in dict(data[key]).items()}}
        opts = cls(**data)
        opts.check()
        return opts

    def check(self) -> None:
        """Raise ValueError naming the first inconsistent threshold."""
        for kind, n in self.min_inliers.items():
            if self.min_inliers_failed.get(kind, 0) > n:
                raise ValueError(f"verdict: min_inliers_failed[{kind}] must not exceed min_inliers[{kind}] ({n})")
        pairs = (("min_inlier_fraction_failed", "min_inlier_fraction"), ("max_scale_dev", "max_scale_dev_failed"),
                 ("max_rotation_deg", "max_rotation_deg_failed"), ("max_shear", "max_shear_failed"),
                 ("max_cv_px", "max_cv_px_failed"))
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"verdict: {lo} ({getattr(self, lo)}) must not exceed {hi} ({getattr(self, hi)})")
        if self.loo_max_points < 2 or self.folds < 2:
            raise ValueError("verdict: loo_max_points and folds must be >= 2")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy."""
        return asdict(self)


class CoregistrationFailed(ValueError):
    """The run's verdict is ``failed`` (or ``uncertain`` with ``keep_uncertain`` off): nothing was written.

    Attributes:
        reasons: Plain-word sentences: what was wrong and what to do.
        report: The report the run would have written (``status``, ``reasons`` ...), or None
            when the run stopped before a fit.
        result: The computed result (fit, tie points, report; no outputs), or None.
    """

    def __init__(
        self,
        message: str,
        reasons: list[str] | None = None,
        report: dict[str, Any] | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.reasons = list(reasons) if reasons is not None else [message]
        self.report = report
        self.result = result


@dataclass
class CVResult:
    """A cross-validated check-point error.

    Attributes:
        rmse_px: Radial RMSE of the held-out predictions (inf when not computable).
        n_points: Points cross-validated.
        scheme: ``"leave-one-out"``, ``"k-fold"`` or ``"none"``.
        residuals: ``(N, 2)`` held-out prediction minus truth (NaN where not computable).
        note: Why it is not computable (empty otherwise).
    """

    rmse_px: float
    n_points: int
    scheme: str
    residuals: np.ndarray
    note: str = ""


def _plain_fit(kind: str, src: np.ndarray, dst: np.ndarray, tps_smoothing: float) -> GeometricModel:
    """Unweighted least-squares fit of ``kind`` (no robust step); ValueError when impossible."""
    if len(src) < min_points(kind):
        raise ValueError(f"{len(src)} points cannot determine a '{kind}'")
    w = np.ones(len(src))
    if kind == "shift":
        return fit_shift(src, dst, w)[0]
    if kind == "affine":
        return fit_affine(src, dst, w)[0]
    if kind == "similarity":
        return fit_similarity(src, dst, w)[0]
    if kind == "homography":
        return fit_homography(src, dst, w)[0]
    if kind == "tps":
        return fit_tps(src, dst, tps_smoothing, w, np.random.default_rng(0))[0]
    return fit_polynomial(src, dst, int(kind[-1]), w)[0]


def cross_validated_rmse(
    src: np.ndarray,
    dst: np.ndarray,
    kind: str,
    *,
    tps_smoothing: float = 0.0,
    loo_max_points: int = 60,
    folds: int = 10,
    seed: int = 0,
) -> CVResult:
    """Cross-validated check-point RMSE of a ``kind`` model fitted to ``src -> dst``.

    Every point is predicted by a plain least-squares fit of the same kind on the *other* points
    (leave-one-out up to ``loo_max_points`` points, ``folds`` seeded random folds above), so the
    error is measured at points the fit did not see. A point whose fit cannot be made (fewer
    points than the kind needs, degenerate layout, non-finite prediction) makes the whole
    estimate infinite: an exactly determined fit has no independent check.

    Args:
        src: ``(N, 2)`` source coordinates (the inliers the fit used).
        dst: ``(N, 2)`` destination coordinates (reference pixels).
        kind: Transform kind.
        tps_smoothing: Smoothing for ``tps`` (as in the fit).
        loo_max_points: Leave-one-out up to this many points.
        folds: Folds of the k-fold scheme.
        seed: Seed of the fold assignment.

    Returns:
        The :class:`CVResult`.
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    n = len(src)
    res = np.full((n, 2), np.nan)
    if n < min_points(kind) + 1:
        return CVResult(math.inf, n, "none", res,
                        f"{n} inliers leave no point to check a '{kind}' fit (it needs {min_points(kind)})")
    if n <= loo_max_points:
        groups, scheme = np.arange(n), "leave-one-out"
    else:
        groups = np.random.default_rng(seed).permutation(n) % folds
        scheme = "k-fold"
    for g in np.unique(groups):
        held = groups == g
        try:
            model = _plain_fit(kind, src[~held], dst[~held], tps_smoothing)
        except (ValueError, np.linalg.LinAlgError) as exc:
            return CVResult(math.inf, n, scheme, res, f"a fit without some of the inliers is impossible ({exc})")
        res[held] = model.apply(src[held]) - dst[held]
    if not np.isfinite(res).all():
        return CVResult(math.inf, n, scheme, res, "a held-out prediction is not finite")
    return CVResult(float(np.sqrt(np.mean(np.sum(res**2, axis=1)))), n, scheme, res)


def spread_cells(points: np.ndarray, box: tuple[float, float, float, float]) -> int:
    """Occupied cells of a 3 x 3 grid over ``box`` ``(x0, y0, x1, y1)`` (points outside are clipped)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) == 0:
        return 0
    x0, y0, x1, y1 = box
    cx = np.clip(((p[:, 0] - x0) / max(x1 - x0, 1e-9) * 3).astype(int), 0, 2)
    cy = np.clip(((p[:, 1] - y0) / max(y1 - y0, 1e-9) * 3).astype(int), 0, 2)
    return len(set(zip(cx.tolist(), cy.tolist(), strict=True)))


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of ``(N, 2)`` points (monotone chain; 0 for < 3 points)."""
    p = np.unique(np.asarray(points, np.float64).reshape(-1, 2), axis=0)
    if len(p) < 3:
        return 0.0
    pts = sorted(map(tuple, p))

    def cross(o: tuple[float, ...], a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, ...]] = []
    upper: list[tuple[float, ...]] = []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    for q in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    hull = np.asarray(lower[:-1] + upper[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def correction_affine(
    model: Callable[[np.ndarray], np.ndarray],
    grid_xy: np.ndarray,
    src_xy: np.ndarray,
) -> np.ndarray | None:
    """The fitted correction on the common grid as a 3 x 3 affine (grid pixel -> reference pixel).

    The fit maps ``src`` (the coordinates handed to it, e.g. the target's own pixels) to
    reference pixels; the georeferencing maps the common grid to ``src`` (known exactly at the
    tie points: ``grid_xy`` -> ``src_xy``). Their composition is what the tie points add to the
    georeferencing: a pure translation when the georeferencing is right but for an offset.

    Args:
        model: The fitted model, ``(N, 2) -> (N, 2)``.
        grid_xy: ``(N, 2)`` positions of the matches on the common grid.
        src_xy: ``(N, 2)`` the same points in the fit's source coordinates.

    Returns:
        The least-squares affine of the composition sampled on a 5 x 5 grid over the points'
        bounding box, or None with fewer than 3 distinct finite points.
    """
    ok = np.isfinite(grid_xy).all(axis=1) & np.isfinite(src_xy).all(axis=1)
    g, s = grid_xy[ok], src_xy[ok]
    if len(np.unique(g, axis=0)) < 3:
        return None
    prior = affine_from_samples(g, s)  # grid -> src: the georeferencing, locally affine
    lo, hi = g.min(axis=0), g.max(axis=0)
    if np.any(hi - lo < 1e-6):
        return None
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 5), np.linspace(lo[1], hi[1], 5))
    samples = np.column_stack([gx.ravel(), gy.ravel()])
    mapped = np.asarray(model(samples @ prior[:2, :2].T + prior[:2, 2]), np.float64)
    if not np.isfinite(mapped).all():
        return None
    return affine_from_samples(samples, mapped)


def decompose_linear(m: np.ndarray) -> dict[str, float]:
    """Scale, rotation and shear of the 2 x 2 linear part of an affine.

    Returns:
        ``scale_min`` / ``scale_max`` (singular values), ``scale_dev`` (``max |s - 1|``),
        ``rotation_deg`` (of the polar decomposition's rotation, signed), ``shear``
        (anisotropy ``s_max / s_min - 1``, inf for a singular map) and ``reflection`` (1.0 when
        the map mirrors).
    """
    lin = np.asarray(m, np.float64)[:2, :2]
    u, sv, vt = np.linalg.svd(lin)
    rot = u @ vt
    reflection = float(np.linalg.det(rot) < 0)
    angle = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
    s_max, s_min = float(sv[0]), float(sv[1])
    return {
        "scale_min": s_min,
        "scale_max": s_max,
        "scale_dev": max(abs(s_max - 1.0), abs(s_min - 1.0)),
        "rotation_deg": angle,
        "shear": s_max / s_min - 1.0 if s_min > 1e-12 else math.inf,
        "reflection": reflection,
    }


@dataclass
class Verdict:
    """The judgement of one run.

    Attributes:
        status: ``"ok"``, ``"uncertain"`` or ``"failed"``.
        reasons: One plain sentence per broken rule (empty for ``ok``).
        rmse_cv_px: Cross-validated check-point RMSE (inf when not computable).
        checks: Every measured quantity, JSON-able (what each rule saw).
    """

    status: str
    reasons: list[str]
    rmse_cv_px: float
    checks: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True for ``ok``."""
        return self.status == "ok"

    def summary(self) -> str:
        """One line: the status and its reasons."""
        if not self.reasons:
            return self.status
        return f"{self.status}: " + " ".join(self.reasons)


class _Rules:
    """Collects (severity, sentence) pairs."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, severity: str, sentence: str) -> None:
        self.items.append((severity, sentence))

    def status(self) -> str:
        worst = max((STATUSES.index(s) for s, _ in self.items), default=0)
        return STATUSES[worst]


def judge(
    *,
    model: GeometricModel,
    requested_kind: str,
    src_xy: np.ndarray,
    ref_xy: np.ndarray,
    grid_xy: np.ndarray,
    inliers: np.ndarray,
    usable: np.ndarray,
    overlap: tuple[int, int, int, int],
    georeferenced: bool,
    coarse: Mapping[str, Any] | None = None,
    fallback: str = "",
    tps_smoothing: float = 0.0,
    seed: int = 0,
    threshold_px: float | None = None,
    options: VerdictOptions | None = None,
) -> Verdict:
    """Judge a fitted co-registration with the rules of the module docstring.

    Args:
        model: The fitted model (``src`` -> reference pixels).
        requested_kind: The transform the user asked for.
        src_xy: ``(N, 2)`` every candidate in the fit's source coordinates (NaN when unusable).
        ref_xy: ``(N, 2)`` every candidate's reference pixel.
        grid_xy: ``(N, 2)`` every candidate's match on the common grid (NaN when unmatched).
        inliers: ``(N,)`` bool, the fit's inliers.
        usable: ``(N,)`` bool, tie points that passed the matcher's checks (the fit's input).
        overlap: ``(x0, y0, w, h)`` overlap window on the reference grid.
        georeferenced: True when the pair is related by georeferencing (scale and rotation are
            then expected to be ~1 and ~0).
        coarse: The coarse stage's report entry (``used``, ``confident``, ``offset_px``,
            ``factor``); None or unused: the rule is skipped.
        fallback: Non-empty when the engine fitted a simpler model than requested: why.
        tps_smoothing: Smoothing of a ``tps`` fit (the cross-validation uses the same).
        seed: Seed of the k-fold assignment and of the split-half fits.
        threshold_px: The robust fit's inlier threshold; None skips the split-half rule.
        options: Thresholds (default :class:`VerdictOptions`).

    Returns:
        The :class:`Verdict`.
    """
    opts = options or VerdictOptions()
    kind = model.kind
    rules = _Rules()
    inl = np.asarray(inliers, bool)
    n_in, n_usable = int(inl.sum()), int(np.asarray(usable, bool).sum())
    checks: dict[str, Any] = {"kind": kind, "requested_kind": requested_kind, "n_inliers": n_in,
                              "n_usable": n_usable}

    # 1. Inliers with redundancy.
    need, need_failed = opts.min_inliers.get(kind, 4), opts.min_inliers_failed.get(kind, 3)
    checks["min_inliers"] = need
    if n_in < need:
        severity = "failed" if n_in < need_failed else "uncertain"
        rules.add(severity, f"Only {n_in} tie points agree with the '{kind}' fit; at least {need} are needed to "
                  "trust it. Use a denser tie-point grid (smaller spacing), a larger window or search radius, "
                  "another matching method, or a simpler transform.")

    # 2. Inlier share.
    share = n_in / n_usable if n_usable else 0.0
    checks["inlier_fraction"] = share
    if share < opts.min_inlier_fraction:
        severity = "failed" if share < opts.min_inlier_fraction_failed else "uncertain"
        rules.add(severity, f"Only {share:.0%} of the {n_usable} usable tie points agree with the fit, so most "
                  "matches are wrong and the agreeing ones may be chance. Check that the images show the same "
                  "place, enlarge the search radius if the offset is large, or try another matching method.")

    # 3. Spread.
    pts = np.asarray(ref_xy, np.float64)[inl]
    tried = np.asarray(ref_xy, np.float64)
    tried = tried[np.isfinite(tried).all(axis=1)]
    if len(tried):
        box = (float(tried[:, 0].min()), float(tried[:, 1].min()), float(tried[:, 0].max()),
               float(tried[:, 1].max()))
    else:
        box = (overlap[0], overlap[1], overlap[0] + overlap[2], overlap[1] + overlap[3])
    cells = spread_cells(pts, box)
    hull = _hull_area(pts) / max(float(overlap[2]) * float(overlap[3]), 1.0)
    checks.update(spread_cells=cells, hull_fraction=hull)
    if cells < min(opts.min_cells, spread_cells(tried, box)):
        rules.add("uncertain", f"The agreeing tie points sit in {cells} of the 9 cells of a 3 x 3 grid over the "
                  "matched area, so the fit is checked only in part of the image. Use a denser grid or keypoint "
                  "candidates so that tie points cover the whole overlap.")
    if kind != "shift" and hull < opts.min_hull_fraction:
        rules.add("uncertain", f"The agreeing tie points cover only {hull:.0%} of the overlap; a '{kind}' model is "
                  "extrapolated over the rest. Use a denser grid or keypoint candidates, or a shift transform.")
    if fallback:
        rules.add("uncertain", f"The requested '{requested_kind}' transform was replaced by a '{kind}': {fallback}.")

    # 4. Plausible transform.
    corr = correction_affine(model, np.asarray(grid_xy, np.float64)[inl], np.asarray(src_xy, np.float64)[inl])
    centre = np.array([overlap[0] + overlap[2] / 2.0, overlap[1] + overlap[3] / 2.0])
    if corr is None:
        checks["correction"] = None
    else:
        parts = decompose_linear(corr)
        checks["correction"] = {k: json_float(v) for k, v in parts.items()}
        _plausibility(rules, parts, georeferenced, opts)
        try:
            fitted_shift = np.linalg.solve(corr[:2, :2], centre - corr[:2, 2]) - centre
            checks["fitted_shift_at_centre_px"] = [float(v) for v in fitted_shift]
        except np.linalg.LinAlgError:
            fitted_shift = None
        # 5. Agreement with a confident coarse stage.
        c = coarse or {}
        if fitted_shift is not None and c.get("used") and c.get("confident") and c.get("offset_px") is not None:
            off = np.asarray(c["offset_px"], np.float64)
            tol = max(opts.max_coarse_disagreement_px, 2.0 * float(c.get("factor") or 1.0))
            gap = float(np.hypot(*(fitted_shift - off)))
            checks.update(coarse_disagreement_px=gap, coarse_tolerance_px=tol)
            if gap > tol:
                rules.add("uncertain", f"The coarse stage found an offset of ({off[0]:.1f}, {off[1]:.1f}) px with "
                          f"confidence, but the fit gives ({fitted_shift[0]:.1f}, {fitted_shift[1]:.1f}) px at the "
                          f"centre ({gap:.1f} px apart). One of them is wrong: check the tie points in the report, "
                          "or enlarge the search radius.")

    # 5b. Agreement with a coarse similarity (the rotation / scale search of plain images): it is
    # never "confident" as one peak, but it is an independent estimate of the same mapping, so a fit
    # that strays from it by more than its accuracy at the corners of the matched area is suspect.
    c = coarse or {}
    if c.get("used") and c.get("model") == "similarity" and c.get("matrix_px") is not None:
        gap = similarity_disagreement(model, np.asarray(c["matrix_px"], np.float64), overlap)
        tol = max(opts.max_similarity_disagreement_px, 2.0 * float(c.get("factor") or 1.0))
        checks.update(similarity_disagreement_px=json_float(gap), similarity_tolerance_px=tol)
        if not gap <= tol:
            rules.add("uncertain", f"The coarse rotation / scale search and the fitted transform disagree by up to "
                      f"{gap:.1f} px at the corners of the matched area (more than {tol:g} px). One of them is "
                      "wrong: check the tie points and the checkerboard in the report, or try another matching "
                      "method or a shift/affine transform.")

    # 6. Cross-validated accuracy.
    cv = cross_validated_rmse(np.asarray(src_xy, np.float64)[inl], pts, kind, tps_smoothing=tps_smoothing,
                              loo_max_points=opts.loo_max_points, folds=opts.folds, seed=seed)
    checks.update(rmse_cv_px=json_float(cv.rmse_px), cv_scheme=cv.scheme, cv_points=cv.n_points)
    if not math.isfinite(cv.rmse_px):
        rules.add("failed", f"The accuracy cannot be checked independently: {cv.note}. Get more tie points "
                  "(smaller spacing) or use a simpler transform.")
    elif cv.rmse_px > opts.max_cv_px:
        severity = "failed" if cv.rmse_px > opts.max_cv_px_failed else "uncertain"
        rules.add(severity, f"The cross-validated check-point error is {cv.rmse_px:.2f} px (each tie point "
                  f"predicted by a fit without it), above {opts.max_cv_px:g} px. The tie points disagree with "
                  "each other: try a larger window, another matching method, a lower RANSAC threshold, or a "
                  "transform that fits the distortion.")

    # 7. Two interleaved halves of the tie points agree.
    if threshold_px is not None and n_in >= need_failed:
        gap, counts = split_half_disagreement(kind, np.asarray(src_xy, np.float64), np.asarray(ref_xy, np.float64),
                                              float(threshold_px), usable=np.asarray(usable, bool),
                                              tps_smoothing=tps_smoothing, seed=seed)
        enough = min(counts) >= need_failed
        checks.update(split_disagreement_px=json_float(gap) if enough else None, split_inliers=list(counts))
        if enough and not gap <= opts.max_split_disagreement_px:
            rules.add("uncertain", f"Two halves of the tie points (interleaved like a checkerboard, {counts[0]} and "
                      f"{counts[1]} agreeing) give transforms {gap:.1f} px apart at the corners of the matched "
                      "area, so the tie points do not determine one transform. Check the tie points in the "
                      "report; a larger window, another matching method or a simpler transform (shift) may give "
                      "consistent ones.")
    return Verdict(rules.status(), [s for _, s in rules.items], cv.rmse_px, checks)


def split_half_disagreement(
    model_kind: str,
    src: np.ndarray,
    dst: np.ndarray,
    threshold_px: float,
    *,
    usable: np.ndarray | None = None,
    tps_smoothing: float = 0.0,
    seed: int = 0,
) -> tuple[float, tuple[int, int]]:
    """How far two interleaved halves of the tie points disagree about the mapping.

    The tie points are split like the black and white squares of a checkerboard (by the rank of
    their x and y reference coordinates among all candidates, so the squares are those of the
    candidate grid and both halves cover the whole matched area); each half
    gets its own robust fit of ``model_kind`` with the same threshold, and the two fits are
    compared at the corners and the centre of the tie points' bounding box (source coordinates).
    Consistent tie points give two fits within a pixel or two of each other; two halves that
    settle on different transforms show that the tie points do not determine one.

    Args:
        model_kind: Transform kind of the judged fit.
        src: ``(N, 2)`` every candidate in the fit's source coordinates (NaN rows ignored).
        dst: ``(N, 2)`` every candidate's reference pixel (the squares are ranked over these).
        threshold_px: Inlier threshold of the judged fit.
        usable: ``(N,)`` bool, the tie points that may be fitted (default: every finite row).
        tps_smoothing: Smoothing of a ``tps`` fit.
        seed: Seed of the robust sampling.

    Returns:
        ``(largest distance in reference px, (inliers of half 1, inliers of half 2))``; the
        distance is NaN when a half has too few points for a checked fit.
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    placed = np.isfinite(dst).all(axis=1)
    rank_x = np.unique(np.round(dst[placed, 0], 3), return_inverse=True)[1]
    rank_y = np.unique(np.round(dst[placed, 1], 3), return_inverse=True)[1]
    white_all = np.zeros(len(dst), bool)
    white_all[placed] = (rank_x + rank_y) % 2 == 0
    ok = placed & np.isfinite(src).all(axis=1)
    if usable is not None:
        ok &= np.asarray(usable, bool)
    src, dst, white = src[ok], dst[ok], white_all[ok]
    if len(src) < 2 * (min_points(model_kind) + 1):
        return math.nan, (0, 0)
    x0, y0, x1, y1 = bbox(src)
    probe = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1], [(x0 + x1) / 2, (y0 + y1) / 2]])
    preds, counts = [], []
    for half in (white, ~white):
        try:
            fit = fit_transform(src[half], dst[half], model_kind, threshold_px=threshold_px, seed=seed,
                                tps_smoothing=tps_smoothing)
        except (ValueError, np.linalg.LinAlgError):
            return math.nan, (0, 0)
        counts.append(fit.n_inliers)
        if fit.n_inliers < min_points(model_kind) + 1:
            return math.nan, (counts[0], fit.n_inliers) if len(counts) == 2 else (fit.n_inliers, 0)
        preds.append(np.asarray(fit.model.apply(probe), np.float64))
    gap = np.hypot(*(preds[0] - preds[1]).T)
    return (float(gap.max()) if np.isfinite(gap).all() else math.inf), (counts[0], counts[1])


def similarity_disagreement(model: GeometricModel, similarity: np.ndarray,
                            overlap: tuple[int, int, int, int]) -> float:
    """Largest distance (px) between ``model`` and a coarse ``similarity`` at the overlap's corners.

    Both map the same source (common-grid target pixels) to reference pixels; the corners are those
    of ``overlap`` on the reference grid, taken back through the similarity to the source.

    Args:
        model: The fitted model (source -> reference pixels).
        similarity: ``(3, 3)`` coarse similarity (source -> reference pixels).
        overlap: ``(x0, y0, w, h)`` matched area on the reference grid.

    Returns:
        The largest corner distance; inf when it cannot be computed.
    """
    x0, y0, w, h = (float(v) for v in overlap)
    corners = np.array([[x0, y0], [x0 + w, y0], [x0, y0 + h], [x0 + w, y0 + h]])
    try:
        inv = np.linalg.inv(np.asarray(similarity, np.float64))
    except np.linalg.LinAlgError:
        return math.inf
    src = corners @ inv[:2, :2].T + inv[:2, 2]
    pred = np.asarray(model.apply(src), np.float64)
    d = np.hypot(*(pred - corners).T)
    return float(d.max()) if np.isfinite(d).all() else math.inf


def _plausibility(rules: _Rules, parts: dict[str, float], georeferenced: bool, opts: VerdictOptions) -> None:
    """Rule 4: scale, rotation and shear of the correction against the bounds."""
    advice = ("The fitted transform is implausible for images whose georeferencing is only offset; the tie "
              "points are probably wrong. Try a shift transform, a larger window, or another matching method."
              if georeferenced else
              "No rigid sensor geometry shears an image like this; the tie points are probably wrong. Try a "
              "simpler transform, a larger window, or another matching method.")
    found: list[tuple[str, str]] = []
    if parts["reflection"]:
        found.append(("failed", "the fitted transform mirrors the image"))
    shear = parts["shear"]
    if shear > opts.max_shear:
        found.append(("failed" if shear > opts.max_shear_failed else "uncertain",
                      f"it shears / stretches the image by {shear:.1%}"))
    if georeferenced:
        dev, rot = parts["scale_dev"], abs(parts["rotation_deg"])
        if dev > opts.max_scale_dev:
            found.append(("failed" if dev > opts.max_scale_dev_failed else "uncertain",
                          f"it scales the image by {parts['scale_min']:.3f}-{parts['scale_max']:.3f} where the "
                          "georeferencing implies 1"))
        if rot > opts.max_rotation_deg:
            found.append(("failed" if rot > opts.max_rotation_deg_failed else "uncertain",
                          f"it rotates the image by {parts['rotation_deg']:.1f} deg where the georeferencing "
                          "implies 0"))
    if found:
        severity = max((s for s, _ in found), key=STATUSES.index)
        what = "; ".join(w for _, w in found)
        rules.add(severity, f"Implausible transform: {what}. {advice}")
