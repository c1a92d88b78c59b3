"""Synthetic SAR-like images from real optical imagery, with known distortions and ground truth.

Used by tests, benchmarks and training to get optical/SAR pairs whose true mapping is known
exactly. Everything is seeded and reproducible.

Coordinates are GDAL pixel coordinates ``(col, row)``: ``(0, 0)`` is the top-left corner of the
top-left pixel, the centre of pixel ``[i, j]`` is ``(j + 0.5, i + 0.5)``. OpenCV's ``remap`` puts
pixel centres on integers, so a GDAL position ``p`` is OpenCV's ``p - 0.5``. A distortion that maps
reference position ``p`` to target position ``q`` puts the reference content found at ``p`` at
``q`` in the target: a pure shift by ``(dx, dy)`` gives ``q = p + (dx, dy)``, the same sign as
:attr:`sarcoreg.core.matchers.base.MatchResult.shift_xy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter
from scipy.ndimage import shift as nd_shift

__all__ = [
    "Distortion",
    "DistortionKind",
    "SyntheticPair",
    "corner_error",
    "make_pair",
    "random_distortion",
    "sar_like",
    "sar_like_db",
    "gamma_speckle",
    "write_geotiff",
]

DistortionKind = Literal["shift", "rotation", "scale", "affine", "nonrigid"]
PointMap = Callable[[np.ndarray], np.ndarray]

# sigma0 range (dB) that the radiometric transfer maps [0, 1] onto: land-like -25..-3 dB.
_DB_LOW = -25.0
_DB_SPAN = 22.0


# --------------------------------------------------------------------------------------------
# Radiometry
# --------------------------------------------------------------------------------------------


def _random_curve(rng: np.random.Generator, monotone: bool, knots: int = 6) -> np.ndarray:
    """Values at ``knots + 1`` equally spaced points of [0, 1] of a random transfer curve."""
    if monotone:
        steps = rng.gamma(2.0, 1.0, size=knots)
        vals = np.concatenate([[0.0], np.cumsum(steps)])
        return np.asarray(vals / vals[-1])
    return np.asarray(rng.uniform(0.0, 1.0, size=knots + 1))


def gamma_speckle(shape: tuple[int, ...], looks: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative fully developed speckle of ``looks``-look intensity.

    Args:
        shape: Output shape.
        looks: Number of looks ``L`` (> 0).
        rng: Random generator.

    Returns:
        float32 Gamma(shape ``L``, scale ``1 / L``) samples: mean 1, variance ``1 / L``.
    """
    if looks <= 0:
        raise ValueError(f"looks must be positive, got {looks}")
    return rng.gamma(looks, 1.0 / looks, size=shape).astype(np.float32)


def sar_like(
    optical_gray: np.ndarray,
    *,
    looks: float = 4.0,
    seed: int = 0,
    contrast_reversal: float = 0.35,
    layover: float = 0.6,
    layover_offset: float = 2.0,
    water: float = 0.8,
    radiometry: bool = True,
    speckle: bool = True,
) -> np.ndarray:
    """A SAR-like linear intensity image from an optical gray image (same grid).

    Steps (each seeded by ``seed``):

    1. Radiometric transfer ``r = (1 - c) * mono(g) + c * wild(g)``: ``mono`` a random monotone
       curve, ``wild`` a random non-monotone one, ``c = contrast_reversal``, so bright/dark
       relations change in part of the range (partial contrast inversion).
    2. Double-bounce / layover: strong gradients of the (smoothed) optical become bright lines,
       moved by ``layover_offset`` pixels towards the sensor (negative x: range direction),
       ``r += layover * edge_strength``.
    3. Water-like areas: flat and dark optical regions get low, smooth backscatter
       (``r *= 1 - water * mask``).
    4. ``r`` in [0, ~1.6] goes to sigma0 ``-25 + 22 r`` dB, then linear intensity.
    5. Multiplicative Gamma speckle with ``looks`` looks (mean 1, variance ``1 / looks``).

    Args:
        optical_gray: ``(H, W)`` float in [0, 1] (values are clipped); NaN = nodata.
        looks: Number of looks of the speckle.
        seed: Seed of the transfer curves and the speckle.
        contrast_reversal: Weight 0..1 of the non-monotone part of the transfer.
        layover: Strength of the bright edge lines (0 = none).
        layover_offset: Offset of the bright lines along -x, pixels.
        water: Darkening 0..1 of flat dark areas.
        radiometry: False skips steps 1-4: the output is then the optical gray itself, for tests
            of pure geometry.
        speckle: False skips step 5.

    Returns:
        ``(H, W)`` float32 linear intensity (> 0; NaN where the input is NaN).
    """
    g = np.asarray(optical_gray, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"sar_like wants a (H, W) gray image, got shape {g.shape}")
    nodata = ~np.isfinite(g)
    g = np.clip(np.where(nodata, 0.0, g), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    if radiometry:
        xs = np.linspace(0.0, 1.0, 7)
        mono = np.interp(g, xs, _random_curve(rng, True))
        wild = np.interp(g, xs, _random_curve(rng, False))
        r = (1.0 - contrast_reversal) * mono + contrast_reversal * wild
        smooth = gaussian_filter(g, 1.5)
        if layover > 0:
            gx = np.abs(cv2.Sobel(smooth, cv2.CV_64F, 1, 0, ksize=3))
            gy = np.abs(cv2.Sobel(smooth, cv2.CV_64F, 0, 1, ksize=3))
            grad = np.hypot(gx, gy)
            lo, hi = np.percentile(grad, [85.0, 99.5])
            edges = np.clip((grad - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
            edges = nd_shift(edges, (0.0, -layover_offset), order=1, mode="constant", cval=0.0)
            r = r + layover * edges
        if water > 0:
            local_var = uniform_filter(smooth**2, 9) - uniform_filter(smooth, 9) ** 2
            dark = g < np.percentile(g, 15.0)
            flat = local_var < np.percentile(local_var, 40.0)
            mask = gaussian_filter((dark & flat).astype(np.float64), 2.0)
            r = r * (1.0 - water * mask)
        inten = np.power(10.0, (_DB_LOW + _DB_SPAN * r) / 10.0)
    else:
        inten = g
    if speckle:
        inten = inten * gamma_speckle(g.shape, looks, rng)
    out = inten.astype(np.float32)
    out[nodata] = np.nan
    return out


def sar_like_db(optical_gray: np.ndarray, **kwargs: Any) -> np.ndarray:
    """:func:`sar_like` in dB (``10 log10``; NaN where not positive), float32 ``(H, W)``."""
    inten = sar_like(optical_gray, **kwargs).astype(np.float64)
    out = np.full(inten.shape, np.nan, dtype=np.float32)
    pos = inten > 0
    out[pos] = 10.0 * np.log10(inten[pos])
    return out


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def _as_points(xy: np.ndarray) -> np.ndarray:
    """``xy`` as a float64 ``(N, 2)`` array."""
    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts.reshape(1, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) (col, row), got shape {np.shape(xy)}")
    return pts


@dataclass(frozen=True)
class Distortion:
    """A known geometric distortion: reference position ``p`` -> target position ``q``.

    ``target_to_reference(q) = inv(matrix) @ q + u(q)`` where ``matrix`` is a 3 x 3 affine
    (reference -> target, GDAL pixels) and ``u`` a smooth displacement field (a sum of Gaussian
    bumps, evaluated at the target position; zero for the affine kinds).

    Attributes:
        kind: ``"shift"``, ``"rotation"``, ``"scale"``, ``"affine"``, ``"nonrigid"`` or
            ``"identity"``.
        matrix: 3 x 3 reference -> target affine in GDAL pixel coordinates.
        bumps: ``(K, 5)`` rows ``(cx, cy, sigma, ax, ay)``: bump centre (target pixels), width and
            displacement amplitude ``(ax, ay)`` (target -> reference, pixels).
        params: The drawn parameters (for reports).
    """

    kind: str
    matrix: np.ndarray
    bumps: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def identity(cls) -> Distortion:
        """No distortion."""
        return cls("identity", np.eye(3))

    @classmethod
    def shift(cls, dx: float, dy: float) -> Distortion:
        """Content moves by ``(dx, dy)`` pixels: ``q = p + (dx, dy)``."""
        m = np.eye(3)
        m[:2, 2] = (dx, dy)
        return cls("shift", m, params={"dx": float(dx), "dy": float(dy)})

    @classmethod
    def affine(cls, matrix: np.ndarray, kind: str = "affine", **params: Any) -> Distortion:
        """Reference -> target affine, ``(2, 3)`` or ``(3, 3)``, GDAL pixel coordinates."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape == (2, 3):
            m = np.vstack([m, [0.0, 0.0, 1.0]])
        if m.shape != (3, 3):
            raise ValueError(f"affine matrix must be (2, 3) or (3, 3), got {m.shape}")
        return cls(kind, m, params=dict(params, matrix=m[:2].tolist()))

    def displacement(self, q: np.ndarray) -> np.ndarray:
        """The bump field ``u(q)`` at target points ``(N, 2)`` -> ``(N, 2)``."""
        pts = _as_points(q)
        out = np.zeros_like(pts)
        for cx, cy, sigma, ax, ay in self.bumps:
            w = np.exp(-((pts[:, 0] - cx) ** 2 + (pts[:, 1] - cy) ** 2) / (2.0 * sigma * sigma))
            out[:, 0] += ax * w
            out[:, 1] += ay * w
        return out

    def target_to_reference(self, xy: np.ndarray) -> np.ndarray:
        """Target pixel positions ``(N, 2)`` -> reference positions ``(N, 2)`` (GDAL)."""
        q = _as_points(xy)
        inv = np.linalg.inv(self.matrix)
        return np.asarray(q @ inv[:2, :2].T + inv[:2, 2] + self.displacement(q))

    def reference_to_target(self, xy: np.ndarray, iterations: int = 30) -> np.ndarray:
        """Reference positions ``(N, 2)`` -> target positions ``(N, 2)`` (GDAL).

        Exact for the affine kinds; for a bump field a fixed-point iteration
        ``q <- matrix @ (p - u(q))`` (converges since the field is smooth and small).
        """
        p = _as_points(xy)
        m = self.matrix
        q = p @ m[:2, :2].T + m[:2, 2]
        if len(self.bumps) == 0:
            return np.asarray(q)
        for _ in range(iterations):
            s = p - self.displacement(q)
            q = s @ m[:2, :2].T + m[:2, 2]
        return np.asarray(q)

    def displacement_field(self, height: int, width: int) -> np.ndarray:
        """Dense target -> reference displacement at the target pixel centres.

        Returns:
            ``(2, height, width)`` float32: ``[0]`` = dx, ``[1]`` = dy, where
            ``target_to_reference(centre) = centre + (dx, dy)``.
        """
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        q = np.stack([cols.ravel(), rows.ravel()], axis=1)
        d = self.target_to_reference(q) - q
        return d.T.reshape(2, height, width).astype(np.float32)


def _about_centre(linear: np.ndarray, centre: tuple[float, float], t: np.ndarray) -> np.ndarray:
    """3 x 3 affine ``x -> linear @ (x - c) + c + t``."""
    c = np.asarray(centre, dtype=np.float64)
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = c - linear @ c + t
    return m


def _rotation(deg: float) -> np.ndarray:
    """2 x 2 rotation by ``deg`` degrees (clockwise on screen, since rows go down)."""
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def random_distortion(
    kind: DistortionKind,
    rng: np.random.Generator,
    *,
    shape: tuple[int, int] = (512, 512),
    max_shift: float = 20.0,
    max_rotation_deg: float = 10.0,
    max_scale: float = 0.1,
    max_shear: float = 0.05,
    max_displacement: float = 8.0,
    n_bumps: int = 5,
) -> Distortion:
    """Draw a random distortion of one kind.

    Rotations and scalings are about the image centre. Every kind but ``"shift"`` and
    ``"nonrigid"`` also gets a random shift within ``max_shift``.

    Args:
        kind: ``"shift"`` (uniform in ``[-max_shift, max_shift]^2``), ``"rotation"`` (angle
            uniform in ``+-max_rotation_deg``), ``"scale"`` (factor ``1 +- max_scale``),
            ``"affine"`` (rotation, anisotropic scale, shear within ``max_shear``, shift) or
            ``"nonrigid"`` (``n_bumps`` Gaussian bumps of widths 15-35 % of the image side,
            rescaled so the largest displacement over the image is ``max_displacement``, plus a
            shift within ``max_shift / 4``).
        rng: Random generator.
        shape: ``(height, width)`` of the image the distortion is for.
        max_shift: Largest shift per axis, pixels.
        max_rotation_deg: Largest rotation, degrees.
        max_scale: Largest relative scale change.
        max_shear: Largest shear coefficient (affine).
        max_displacement: Largest bump displacement (nonrigid), pixels.
        n_bumps: Number of bumps (nonrigid).

    Returns:
        The distortion, with its drawn parameters in ``params``.
    """
    h, w = shape
    centre = (w / 2.0, h / 2.0)
    t = rng.uniform(-max_shift, max_shift, size=2)
    if kind == "shift":
        return Distortion.shift(float(t[0]), float(t[1]))
    if kind == "rotation":
        deg = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
        m = _about_centre(_rotation(deg), centre, t)
        return Distortion.affine(m, "rotation", angle_deg=deg, shift=t.tolist())
    if kind == "scale":
        s = float(1.0 + rng.uniform(-max_scale, max_scale))
        m = _about_centre(np.eye(2) * s, centre, t)
        return Distortion.affine(m, "scale", scale=s, shift=t.tolist())
    if kind == "affine":
        deg = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
        sx, sy = (1.0 + rng.uniform(-max_scale, max_scale, size=2)).tolist()
        sh = float(rng.uniform(-max_shear, max_shear))
        lin = _rotation(deg) @ np.array([[1.0, sh], [0.0, 1.0]]) @ np.diag([sx, sy])
        m = _about_centre(lin, centre, t)
        return Distortion.affine(
            m, "affine", angle_deg=deg, scale=(sx, sy), shear=sh, shift=t.tolist()
        )
    if kind == "nonrigid":
        side = float(min(h, w))
        k = max(int(n_bumps), 1)
        bumps = np.column_stack(
            [
                rng.uniform(0.0, w, k),
                rng.uniform(0.0, h, k),
                rng.uniform(0.15, 0.35, k) * side,
                rng.normal(0.0, 1.0, (k, 2)),
            ]
        )
        base = Distortion("nonrigid", np.eye(3), bumps)
        grid_cols, grid_rows = np.meshgrid(np.linspace(0, w, 33), np.linspace(0, h, 33))
        u = base.displacement(np.stack([grid_cols.ravel(), grid_rows.ravel()], axis=1))
        peak = float(np.hypot(u[:, 0], u[:, 1]).max())
        bumps[:, 3:] *= max_displacement / max(peak, 1e-9)
        m = np.eye(3)
        m[:2, 2] = t / 4.0
        return Distortion(
            "nonrigid",
            m,
            bumps,
            params={
                "bumps": bumps.tolist(),
                "shift": (t / 4.0).tolist(),
                "max_displacement": max_displacement,
            },
        )
    raise ValueError(
        f"unknown distortion kind '{kind}'; "
        "use 'shift', 'rotation', 'scale', 'affine' or 'nonrigid'"
    )


def _remap_maps(distortion: Distortion, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (OpenCV convention) that sample the reference for each target pixel."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    q = np.stack([cols.ravel(), rows.ravel()], axis=1)
    p = distortion.target_to_reference(q) - 0.5  # GDAL -> OpenCV (centres on integers)
    map_x = p[:, 0].reshape(height, width).astype(np.float32)
    map_y = p[:, 1].reshape(height, width).astype(np.float32)
    return map_x, map_y


def warp_to_target(
    image: np.ndarray,
    distortion: Distortion,
    out_shape: tuple[int, int] | None = None,
    interpolation: int = cv2.INTER_CUBIC,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a reference-grid image onto the target grid of ``distortion``.

    cv2.remap quantises sub-pixel positions to 1/32 pixel.

    Args:
        image: ``(H, W)`` on the reference grid.
        distortion: The distortion.
        out_shape: ``(height, width)`` of the target; default the reference's.
        interpolation: cv2 interpolation flag.

    Returns:
        ``(warped, valid)``: ``(h, w)`` float32 (0 outside) and the bool mask of target pixels
        whose source lies inside the reference's pixel centres.
    """
    src = np.asarray(image, dtype=np.float32)
    h, w = out_shape if out_shape is not None else src.shape
    map_x, map_y = _remap_maps(distortion, h, w)
    warped = cv2.remap(
        src, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,)
    )
    sh, sw = src.shape
    valid = (map_x >= 0) & (map_x <= sw - 1) & (map_y >= 0) & (map_y <= sh - 1)
    warped = np.where(valid, warped, 0.0).astype(np.float32)
    return warped, valid


@dataclass
class SyntheticPair:
    """An optical reference and a distorted SAR-like target with their true mapping.

    Attributes:
        reference: Optical gray ``(H, W)`` float32 in [0, 1].
        target: SAR-like linear intensity on the target grid ``(h, w)`` float32; 0 outside
            ``target_valid``.
        target_valid: ``(h, w)`` bool, True where the target has content.
        gt_target_to_reference: Target pixel ``(N, 2)`` -> reference pixel ``(N, 2)`` (GDAL).
        gt_reference_to_target: Reference pixel ``(N, 2)`` -> target pixel ``(N, 2)`` (GDAL).
        distortion: The distortion used.
        params: Everything that was drawn or set (distortion, looks, seed, ...).
    """

    reference: np.ndarray
    target: np.ndarray
    target_valid: np.ndarray
    gt_target_to_reference: PointMap
    gt_reference_to_target: PointMap
    distortion: Distortion
    params: dict[str, Any]


def make_pair(
    optical_gray: np.ndarray,
    *,
    distortion: Distortion,
    looks: float = 4.0,
    seed: int = 0,
    out_shape: tuple[int, int] | None = None,
    radiometry: bool = True,
    speckle: bool = True,
    **sar_options: Any,
) -> SyntheticPair:
    """Make a co-registration case from a real optical image.

    The SAR-like radiometry (:func:`sar_like` without speckle) is computed on the reference grid,
    warped onto the target grid with ``distortion`` (cv2.remap, cubic, half-pixel corrected), and
    speckle is drawn afterwards on the target grid (so it is not interpolated).

    Args:
        optical_gray: ``(H, W)`` float in [0, 1], the reference.
        distortion: Geometric distortion (reference -> target).
        looks: Number of looks of the speckle.
        seed: Seed of the radiometry and the speckle.
        out_shape: ``(height, width)`` of the target; default the reference's shape.
        radiometry: False keeps the optical values (pure geometry).
        speckle: False leaves out the speckle.
        **sar_options: Further options of :func:`sar_like` (``contrast_reversal``, ``layover`` ...).

    Returns:
        The pair.
    """
    ref = np.asarray(optical_gray, dtype=np.float32)
    if ref.ndim != 2:
        raise ValueError(f"make_pair wants a (H, W) optical gray image, got shape {ref.shape}")
    clean = sar_like(
        ref, looks=looks, seed=seed, radiometry=radiometry, speckle=False, **sar_options
    )
    clean = np.nan_to_num(clean, nan=0.0)
    target, valid = warp_to_target(clean, distortion, out_shape)
    target = np.maximum(target, 0.0)
    if speckle:
        rng = np.random.default_rng([seed, 1])
        target = target * gamma_speckle(target.shape, looks, rng)
    target = np.where(valid, target, 0.0).astype(np.float32)
    params: dict[str, Any] = {
        "distortion": distortion.kind,
        "distortion_params": distortion.params,
        "looks": looks,
        "seed": seed,
        "radiometry": radiometry,
        "speckle": speckle,
        "out_shape": tuple(target.shape),
        **sar_options,
    }
    return SyntheticPair(
        reference=ref,
        target=target,
        target_valid=valid,
        gt_target_to_reference=distortion.target_to_reference,
        gt_reference_to_target=distortion.reference_to_target,
        distortion=distortion,
        params=params,
    )


def corner_error(estimated_fn: PointMap, gt_fn: PointMap, width: float, height: float) -> float:
    """Average corner error (ACE): mean distance at the 4 image corners between two mappings.

    Corners in GDAL convention: ``(0, 0), (W, 0), (0, H), (W, H)`` of the target image; both
    functions map target -> reference pixel positions ``(N, 2) -> (N, 2)``.

    Returns:
        Mean Euclidean distance in reference pixels.
    """
    corners = np.array([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]])
    est = np.asarray(estimated_fn(corners), dtype=np.float64)
    gt = np.asarray(gt_fn(corners), dtype=np.float64)
    return float(np.mean(np.hypot(est[:, 0] - gt[:, 0], est[:, 1] - gt[:, 1])))


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    *,
    crs: str = "EPSG:32633",
    origin: tuple[float, float] = (500000.0, 5000000.0),
    pixel_size: float = 10.0,
    nodata: float | None = None,
) -> Path:
    """Write a small north-up georeferenced GeoTIFF (for tests and benchmarks).

    Args:
        path: Output file.
        array: ``(H, W)`` or ``(B, H, W)``; dtype float32/float64, uint8, uint16, int16, ...
        crs: Any CRS string GDAL's ``SetFromUserInput`` takes.
        origin: Map ``(x, y)`` of the top-left corner.
        pixel_size: Pixel size in map units (square pixels).
        nodata: Nodata value set on every band, or None.

    Returns:
        The path written.
    """
    from osgeo import gdal, osr

    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"write_geotiff wants (H, W) or (B, H, W), got shape {arr.shape}")
    types = {
        np.dtype(np.uint8): gdal.GDT_Byte,
        np.dtype(np.uint16): gdal.GDT_UInt16,
        np.dtype(np.int16): gdal.GDT_Int16,
        np.dtype(np.uint32): gdal.GDT_UInt32,
        np.dtype(np.int32): gdal.GDT_Int32,
        np.dtype(np.float32): gdal.GDT_Float32,
        np.dtype(np.float64): gdal.GDT_Float64,
    }
    if arr.dtype not in types:
        raise ValueError(
            f"write_geotiff: unsupported dtype {arr.dtype}; use uint8/16, int16/32 or float"
        )
    out = Path(path)
    bands, h, w = arr.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(out), w, h, bands, types[arr.dtype])
    if ds is None:
        raise OSError(f"write_geotiff: GDAL cannot create {out}")
    ds.SetGeoTransform((float(origin[0]), pixel_size, 0.0, float(origin[1]), 0.0, -pixel_size))
    srs = osr.SpatialReference()
    if srs.SetFromUserInput(crs) != 0:
        raise ValueError(f"write_geotiff: GDAL does not understand the CRS '{crs}'")
    ds.SetProjection(srs.ExportToWkt())
    for k in range(bands):
        band = ds.GetRasterBand(k + 1)
        band.WriteArray(arr[k])
        if nodata is not None:
            band.SetNoDataValue(float(nodata))
    ds.FlushCache()
    ds = None
    return out
