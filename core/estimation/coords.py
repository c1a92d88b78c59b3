"""Coordinate helpers shared by the estimation modules: point arrays, normalisation, monomials.

Pixel coordinates are GDAL ``(col, row)``; polynomial and spline models work in normalised
coordinates ``u = (x - cx) / s``, ``v = (y - cy) / s`` that keep their systems well conditioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Normalisation",
    "affine_from_samples",
    "as_points",
    "bbox",
    "domain_grid",
    "monomial_design",
    "monomial_exponents",
]


def as_points(xy: Any, name: str = "xy") -> np.ndarray:
    """Coerce ``xy`` to a float64 ``(N, 2)`` array.

    Args:
        xy: Anything array-like with ``2 * N`` values laid out as ``(N, 2)`` (a single ``(2,)``
            point is accepted).
        name: Argument name used in the error message.

    Raises:
        ValueError: ``xy`` is not ``(N, 2)``.
    """
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of (col, row) pixels, got {arr.shape}")
    return arr


@dataclass(frozen=True)
class Normalisation:
    """Similarity normalisation ``u = (xy - center) / scale`` of pixel coordinates.

    Attributes:
        center: ``(cx, cy)`` in pixels (mean of the fitting points).
        scale: Pixels per normalised unit (RMS distance per axis from the centre; 1 if zero).
    """

    center: tuple[float, float]
    scale: float

    @classmethod
    def from_points(cls, xy: np.ndarray) -> Normalisation:
        """Normalisation that centres ``xy`` ``(N, 2)`` and gives it unit RMS spread per axis."""
        c = xy.mean(axis=0)
        s = float(np.sqrt(np.mean(np.sum((xy - c) ** 2, axis=1)) / 2.0))
        if not np.isfinite(s) or s <= 1e-12:
            s = 1.0
        return cls((float(c[0]), float(c[1])), s)

    def forward(self, xy: np.ndarray) -> np.ndarray:
        """Pixels ``(N, 2)`` -> normalised ``(N, 2)``."""
        return (xy - np.asarray(self.center)) / self.scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"center": [cx, cy], "scale": s}``."""
        return {"center": list(self.center), "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalisation:
        """Inverse of :meth:`to_dict`."""
        c = d["center"]
        return cls((float(c[0]), float(c[1])), float(d["scale"]))


def monomial_exponents(degree: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` of the monomials ``u**i * v**j`` with ``i + j <= degree``.

    Ordered by total degree, then by falling power of ``u``:
    ``1, u, v, u^2, uv, v^2, u^3, u^2 v, u v^2, v^3``.
    """
    return [(d - j, j) for d in range(degree + 1) for j in range(d + 1)]


def monomial_design(uv: np.ndarray, degree: int) -> np.ndarray:
    """Design matrix of the 2-D monomials of ``degree`` at normalised points.

    Args:
        uv: Normalised coordinates, ``(N, 2)``.
        degree: Polynomial degree (0..3 in practice).

    Returns:
        ``(N, (degree + 1) (degree + 2) / 2)`` matrix, columns as in :func:`monomial_exponents`.
    """
    u, v = uv[:, 0], uv[:, 1]
    return np.stack([u**i * v**j for i, j in monomial_exponents(degree)], axis=1)


def affine_from_samples(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 3 x 3 affine matrix mapping ``src`` ``(N, 2)`` onto ``dst`` ``(N, 2)``."""
    design = np.column_stack([src, np.ones(len(src))])
    coef, *_ = np.linalg.lstsq(design, dst, rcond=None)
    m = np.eye(3)
    m[:2, :] = coef.T
    return m


def domain_grid(domain: tuple[float, float, float, float], n: int = 11) -> np.ndarray:
    """An ``n`` x ``n`` grid of points ``(n * n, 2)`` over ``(xmin, ymin, xmax, ymax)``."""
    x0, y0, x1, y1 = domain
    if x1 - x0 < 1.0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 - y0 < 1.0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return np.column_stack([gx.ravel(), gy.ravel()])


def bbox(xy: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box ``(xmin, ymin, xmax, ymax)`` of ``(N, 2)`` points."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
