"""Weighted least-squares fits of every model family, with leave-one-out residuals.

These are the non-robust "refine" fits the robust estimators end with: they see only the
inliers. Each returns the model and the leave-one-out (LOO) residual of every fitting point,
``model_without_i(src_i) - dst_i`` ``(M, 2)``, an honest out-of-sample error:

* linear models (shift, affine, polynomials): exact, from the hat matrix,
  ``e_i / (1 - h_ii)`` with ``h_ii = w_i x_i^T (X^T W X)^-1 x_i``;
* homography: the same formula with the 2 x 2 blocks of the Gauss-Newton hat matrix
  (first-order exact);
* thin-plate spline: exact, Rippa's formula ``c_i / (A^-1)_ii`` on the augmented spline system
  (Rippa 1999, "An algorithm for selecting a good value for the parameter c in radial basis
  function interpolation"); above :data:`TPS_LOO_MAX_POINTS` points, on a random subset.

Points with weight 0 take no part in a fit; their LOO residual is their plain residual.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from .coords import Normalisation, bbox, monomial_design
from .models import AffineModel, HomographyModel, PolynomialModel, ShiftModel, SimilarityModel, TPSModel

__all__ = [
    "TPS_LOO_MAX_POINTS",
    "TPS_MERGE_DECIMALS",
    "fit_affine",
    "fit_homography",
    "fit_polynomial",
    "fit_shift",
    "fit_tps",
    "tps_loo_residuals",
    "fit_similarity",
]

#: Rippa's formula inverts an (M + 3) x (M + 3) matrix; above this many control points the LOO
#: error is that of a spline through a seeded random subset of this many of them (a sparser
#: spline, so the estimate errs on the pessimistic side).
TPS_LOO_MAX_POINTS = 1500

#: Source positions equal to this many decimals (pixels) form one TPS control point.
TPS_MERGE_DECIMALS = 3

_DEGENERATE = (
    "the {what} fit is degenerate: the {n} points lie on a line or coincide; spread the tie "
    "points over the image (denser grid) or use a simpler transform"
)


def _loo_from_leverage(res: np.ndarray, lev: np.ndarray) -> np.ndarray:
    """LOO residuals ``res / (1 - lev)`` ``(M, 2)``; NaN where the leverage is ~1."""
    denom = 1.0 - lev
    out = np.full_like(res, np.nan)
    ok = denom > 1e-9
    out[ok] = res[ok] / denom[ok, None]
    return out


def fit_shift(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[ShiftModel, np.ndarray]:
    """Weighted mean translation.

    Args:
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        w: Non-negative weights ``(M,)`` with a positive sum.

    Returns:
        ``(model, loo_residuals (M, 2))``.
    """
    d = dst - src
    wsum = float(w.sum())
    mean = (w[:, None] * d).sum(axis=0) / wsum
    model = ShiftModel(float(mean[0]), float(mean[1]))
    return model, _loo_from_leverage((src + mean) - dst, w / wsum)


def _weighted_lstsq(
    design: np.ndarray, dst: np.ndarray, w: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``min sum_i w_i |design_i @ coef - dst_i|^2`` by QR.

    Args:
        design: ``(M, P)`` design matrix (well conditioned: normalised coordinates).
        dst: ``(M, 2)`` targets.
        w: ``(M,)`` weights.
        what: Model name for the error message.

    Returns:
        ``(coef (P, 2), leverage (M,))``.

    Raises:
        ValueError: Rank deficient (degenerate point layout).
    """
    sw = np.sqrt(w)
    q, r = np.linalg.qr(design * sw[:, None])
    diag = np.abs(np.diag(r))
    if diag.size == 0 or diag.min() <= 1e-10 * max(diag.max(), 1e-300):
        raise ValueError(_DEGENERATE.format(what=what, n=int(np.count_nonzero(w))))
    coef = np.linalg.solve(r, q.T @ (dst * sw[:, None]))
    return coef, np.sum(q**2, axis=1)


def fit_polynomial(
    src: np.ndarray, dst: np.ndarray, degree: int, w: np.ndarray
) -> tuple[PolynomialModel, np.ndarray]:
    """Weighted least-squares polynomial of ``degree`` in normalised source coordinates.

    Args:
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        degree: 1, 2 or 3.
        w: Non-negative weights ``(M,)``.

    Returns:
        ``(model, loo_residuals (M, 2))``.

    Raises:
        ValueError: Degenerate point layout.
    """
    used = w > 0
    norm = Normalisation.from_points(src[used])
    design = monomial_design(norm.forward(src), degree)
    coef, lev = _weighted_lstsq(design, dst, w, f"poly{degree}")
    model = PolynomialModel(degree, norm, coef, bbox(src[used]))
    return model, _loo_from_leverage(design @ coef - dst, lev)


def fit_affine(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[AffineModel, np.ndarray]:
    """Weighted least-squares affine map (a degree-1 polynomial written as a matrix).

    Args:
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        w: Non-negative weights ``(M,)``.

    Returns:
        ``(model, loo_residuals (M, 2))``.
    """
    poly, loo = fit_polynomial(src, dst, 1, w)
    (cx, cy), s = poly.normalisation.center, poly.normalisation.scale
    c = poly.coefficients  # rows: 1, u, v
    m = np.eye(3)
    m[:2, 0] = c[1] / s
    m[:2, 1] = c[2] / s
    m[:2, 2] = c[0] - (c[1] * cx + c[2] * cy) / s
    return AffineModel(m), loo


def fit_similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[SimilarityModel, np.ndarray]:
    """Weighted least-squares similarity (rotation, uniform scale, translation).

    Solves ``x' = a u - b v + tx``, ``y' = b u + a v + ty`` on coordinates normalised like the
    polynomial fits (:class:`~.coords.Normalisation`, for conditioning), then writes the matrix in
    pixels. The leave-one-out
    residuals are exact: each point's 2 x 2 block of the hat matrix ``H_ii`` gives
    ``e_loo = (I - H_ii)^-1 e``.

    Args:
        src: Source pixels ``(M, 2)``, ``M >= 2``.
        dst: Destination pixels ``(M, 2)``.
        w: Non-negative weights ``(M,)``.

    Returns:
        ``(model, loo_residuals (M, 2))``; LOO rows are NaN where a point determines the fit alone.

    Raises:
        ValueError: All source points coincide.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.asarray(w, np.float64)
    if not float(np.ptp(src, axis=0).max()) > 1e-9:
        raise ValueError(_DEGENERATE.format(what="similarity", n=len(src)))
    norm = Normalisation.from_points(src)
    centre, spread = np.asarray(norm.center), norm.scale
    u = norm.forward(src)
    m = len(src)
    design = np.zeros((2 * m, 4))
    design[0::2] = np.column_stack([u[:, 0], -u[:, 1], np.ones(m), np.zeros(m)])
    design[1::2] = np.column_stack([u[:, 1], u[:, 0], np.zeros(m), np.ones(m)])
    target = dst.reshape(-1)
    sw = np.sqrt(np.repeat(w, 2))
    a_w = design * sw[:, None]
    normal = a_w.T @ a_w
    try:
        normal_inv = np.linalg.inv(normal)
    except np.linalg.LinAlgError as exc:
        raise ValueError(_DEGENERATE.format(what="similarity", n=len(src))) from exc
    p = normal_inv @ (a_w.T @ (target * sw))
    a, b, tx, ty = p
    mat = np.eye(3)
    mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1] = a / spread, -b / spread, b / spread, a / spread
    mat[:2, 2] = [tx, ty] - mat[:2, :2] @ centre
    res = (design @ p - target).reshape(m, 2)
    loo = np.full((m, 2), np.nan)
    for i in range(m):
        rows = design[2 * i:2 * i + 2]
        h_ii = (rows @ normal_inv @ rows.T) * w[i]
        eye_minus = np.eye(2) - h_ii
        if abs(np.linalg.det(eye_minus)) > 1e-9:
            loo[i] = np.linalg.solve(eye_minus, res[i])
    return SimilarityModel(mat), loo


def _hartley(xy: np.ndarray) -> np.ndarray:
    """3 x 3 similarity taking ``xy`` ``(M, 2)`` to centroid 0, mean distance sqrt(2)."""
    c = xy.mean(axis=0)
    d = float(np.mean(np.hypot(*(xy - c).T)))
    s = np.sqrt(2.0) / d if d > 1e-12 else 1.0
    return np.array([[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]])


def _project(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 homography to ``(M, 2)`` points."""
    p = xy @ h[:2, :2].T + h[:2, 2]
    return p / (xy @ h[2, :2] + h[2, 2])[:, None]


def fit_homography(
    src: np.ndarray, dst: np.ndarray, w: np.ndarray
) -> tuple[HomographyModel, np.ndarray]:
    """Weighted homography: normalised DLT, then Levenberg-Marquardt on pixel residuals.

    Args:
        src: Source pixels ``(M, 2)``, ``M >= 4``.
        dst: Destination pixels ``(M, 2)``.
        w: Non-negative weights ``(M,)``.

    Returns:
        ``(model, loo_residuals (M, 2))`` (LOO to first order, see the module docstring).

    Raises:
        ValueError: Degenerate point layout.
    """
    used = w > 0
    ts, td = _hartley(src[used]), _hartley(dst[used])
    sn = src @ ts[:2, :2].T + ts[:2, 2]
    dn = dst @ td[:2, :2].T + td[:2, 2]
    x, y = sn[:, 0], sn[:, 1]
    u, v = dn[:, 0], dn[:, 1]
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows_u = np.column_stack([x, y, one, zero, zero, zero, -u * x, -u * y, -u])
    rows_v = np.column_stack([zero, zero, zero, x, y, one, -v * x, -v * y, -v])
    sw = np.sqrt(w)[:, None]
    a = np.vstack([rows_u * sw, rows_v * sw])
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    if sv.size < 9 or sv[-2] <= 1e-10 * sv[0]:
        raise ValueError(_DEGENERATE.format(what="homography", n=int(np.count_nonzero(w))))
    hn = vt[-1].reshape(3, 3)
    if abs(hn[2, 2]) < 1e-12:
        raise ValueError(_DEGENERATE.format(what="homography", n=int(np.count_nonzero(w))))
    hn = hn / hn[2, 2]
    td_inv = np.linalg.inv(td)
    scale_d = 1.0 / td[0, 0]

    def residuals(p: np.ndarray) -> np.ndarray:
        hh = np.append(p, 1.0).reshape(3, 3)
        return np.asarray(((_project(hh, sn) - dn) * scale_d * sw).ravel())

    sol = least_squares(residuals, hn.ravel()[:8], method="lm", x_scale="jac")
    hn = np.append(sol.x, 1.0).reshape(3, 3)
    h = td_inv @ hn @ ts
    model = HomographyModel(h)
    res = model.apply(src) - dst
    jac = np.asarray(sol.jac).reshape(len(src), 2, 8)
    jtj_inv = np.linalg.pinv(np.einsum("nkp,nkq->pq", jac, jac))
    blocks = np.einsum("nkp,pq,nlq->nkl", jac, jtj_inv, jac)  # (M, 2, 2) hat-matrix blocks
    mats = np.eye(2) - blocks
    ok = np.abs(np.linalg.det(mats)) > 1e-9
    loo = np.full_like(res, np.nan)
    loo[ok] = np.linalg.solve(mats[ok], res[ok][..., None])[..., 0]
    return model, loo


def tps_loo_residuals(
    uv: np.ndarray,
    values: np.ndarray,
    smoothing: float | np.ndarray,
) -> np.ndarray:
    """Exact leave-one-out residuals of a thin-plate spline (Rippa's formula).

    Builds the system ``[[K + diag(smoothing), P], [P^T, 0]]`` with ``K_ij = r^2 log r`` and
    ``P = [1, u, v]`` (the one ``RBFInterpolator`` solves), inverts it once and returns
    ``f_without_i(uv_i) - values_i = -c_i / (A^-1)_ii``.

    Args:
        uv: Normalised control points ``(M, 2)``.
        values: Values at the control points ``(M, 2)``.
        smoothing: Scalar or ``(M,)``.

    Returns:
        ``(M, 2)`` LOO residuals (NaN where the system is singular, all NaN for ``M < 4``).
    """
    m = len(uv)
    out = np.full((m, 2), np.nan)
    if m < 4:
        return out
    r = np.hypot(*(uv[:, None, :] - uv[None, :, :]).transpose(2, 0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(r > 0, r**2 * np.log(r), 0.0)
    k[np.diag_indices(m)] += np.broadcast_to(np.asarray(smoothing, dtype=np.float64), (m,))
    p = np.column_stack([np.ones(m), uv])
    a = np.block([[k, p], [p.T, np.zeros((3, 3))]])
    try:
        a_inv = np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return out
    coef = a_inv[:m, :m] @ values
    diag = np.diag(a_inv)[:m]
    ok = np.abs(diag) > 1e-300
    out[ok] = -coef[ok] / diag[ok, None]
    return out


def fit_tps(
    src: np.ndarray,
    dst: np.ndarray,
    smoothing: float,
    w: np.ndarray,
    rng: np.random.Generator,
) -> tuple[TPSModel, np.ndarray]:
    """Thin-plate spline through the points with positive weight.

    Points whose source positions agree to :data:`TPS_MERGE_DECIMALS` decimals (keypoint
    detectors such as SIFT emit the same location twice) become one control point at their
    weighted mean, so the interpolation system stays regular. With ``smoothing > 0`` the weights
    set per-point smoothing ``smoothing / w_i`` (weights rescaled to mean 1), so heavier points
    are followed more closely.

    Args:
        src: Source pixels ``(M, 2)``.
        dst: Destination pixels ``(M, 2)``.
        smoothing: Smoothing in normalised coordinates (0 = exact interpolation).
        w: Non-negative weights ``(M,)``.
        rng: Picks the LOO subset above :data:`TPS_LOO_MAX_POINTS` control points.

    Returns:
        ``(model, loo_residuals (M, 2))``.
    """
    used = np.flatnonzero(w > 0)
    _, group = np.unique(np.round(src[used], TPS_MERGE_DECIMALS), axis=0, return_inverse=True)
    group = group.reshape(-1)
    wu = w[used]
    wsum = np.bincount(group, weights=wu)
    ctrl = np.column_stack([np.bincount(group, wu * src[used, k]) / wsum for k in (0, 1)])
    vals = np.column_stack([np.bincount(group, wu * dst[used, k]) / wsum for k in (0, 1)])
    n_ctrl = len(ctrl)
    sm = np.full(n_ctrl, float(smoothing))
    if smoothing > 0:
        sm = smoothing / (wsum / wsum.mean())
    model = TPSModel(ctrl, vals, float(smoothing) if smoothing == 0 else sm, None)
    uv = model.normalisation.forward(ctrl)
    loo_ctrl = np.full((n_ctrl, 2), np.nan)
    if n_ctrl > TPS_LOO_MAX_POINTS:
        sub = np.sort(rng.choice(n_ctrl, TPS_LOO_MAX_POINTS, replace=False))
        loo_ctrl[sub] = tps_loo_residuals(uv[sub], vals[sub], sm[sub])
    else:
        loo_ctrl = tps_loo_residuals(uv, vals, sm)
    loo = model.apply(src) - dst
    # A merged point's own LOO error plus its offset from the merged value.
    loo[used] = loo_ctrl[group] + (vals[group] - dst[used])
    return model, loo
