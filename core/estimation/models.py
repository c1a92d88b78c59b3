"""Geometric models that map target pixel coordinates to reference pixel coordinates.

Every model maps ``(N, 2)`` GDAL pixel coordinates ``(col, row)`` of one raster onto ``(N, 2)``
pixel coordinates of another (the fitted model: target -> reference; its inverse the other way).
Shift, affine and homography are 3 x 3 matrices; polynomials and the thin-plate spline work in
*normalised* source coordinates ``u = (x - cx) / s``, ``v = (y - cy) / s`` (centre and scale of the
points they were fitted to), which keeps their design matrices well conditioned.

:func:`model_from_dict` rebuilds any model from its :meth:`GeometricModel.to_dict`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.interpolate import RBFInterpolator

from .coords import (
    Normalisation,
    affine_from_samples,
    as_points,
    bbox,
    domain_grid,
    monomial_design,
    monomial_exponents,
)

__all__ = [
    "AffineModel",
    "GeometricModel",
    "HomographyModel",
    "MatrixModel",
    "PolynomialModel",
    "ShiftModel",
    "SimilarityModel",
    "TPSModel",
    "model_from_dict",
]


class GeometricModel(ABC):
    """A fitted mapping of pixel coordinates, ``(N, 2)`` -> ``(N, 2)``.

    Attributes:
        kind: One of ``"shift"``, ``"affine"``, ``"homography"``, ``"poly1"``, ``"poly2"``,
            ``"poly3"``, ``"tps"``.
    """

    kind: str = ""

    @abstractmethod
    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Map pixel coordinates.

        Args:
            xy: ``(N, 2)`` pixel coordinates ``(col, row)`` in the source raster.

        Returns:
            ``(N, 2)`` pixel coordinates in the destination raster (NaN rows stay NaN).
        """

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """Same as :meth:`apply`."""
        return self.apply(xy)

    @property
    def is_affine(self) -> bool:
        """True for shift, similarity and affine: the result can be written as a GDAL geotransform update."""
        return self.kind in ("shift", "similarity", "affine")

    @property
    @abstractmethod
    def matrix_px(self) -> np.ndarray:
        """3 x 3 pixel matrix: exact for the matrix kinds, a least-squares affine otherwise."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able description: ``kind``, ``matrix_px`` (nested lists) and the parameters."""


class MatrixModel(GeometricModel):
    """A model given by a 3 x 3 matrix acting on homogeneous ``(col, row, 1)``."""

    def __init__(self, matrix: np.ndarray) -> None:
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (3, 3):
            raise ValueError(f"{type(self).__name__} needs a 3 x 3 matrix, got {m.shape}")
        self._m = m

    @property
    def matrix_px(self) -> np.ndarray:
        """The exact 3 x 3 pixel matrix (a copy)."""
        return self._m.copy()

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` pixels through the matrix (with perspective division)."""
        p = as_points(xy)
        m = self._m
        out = p @ m[:2, :2].T + m[:2, 2]
        if self.kind == "homography":
            w = p @ m[2, :2] + m[2, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                out = out / w[:, None]
        return out

    def inverted(self) -> MatrixModel:
        """The exact inverse, of the same kind."""
        inv = np.linalg.inv(self._m)
        if self.kind == "homography":
            return HomographyModel(inv)
        if self.kind == "shift":
            return ShiftModel(float(inv[0, 2]), float(inv[1, 2]))
        if self.kind == "similarity":
            return SimilarityModel(inv)
        return AffineModel(inv)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "matrix_px"}``."""
        return {"kind": self.kind, "matrix_px": self._m.tolist()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._m.tolist()})"


class ShiftModel(MatrixModel):
    """Pure translation ``(x + dx, y + dy)``."""

    kind = "shift"

    def __init__(self, dx: float, dy: float) -> None:
        super().__init__(np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]))

    @property
    def shift_px(self) -> tuple[float, float]:
        """``(dx, dy)`` in pixels."""
        return float(self._m[0, 2]), float(self._m[1, 2])

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "matrix_px", "shift_px": [dx, dy]}``."""
        d = super().to_dict()
        d["shift_px"] = list(self.shift_px)
        return d


class AffineModel(MatrixModel):
    """Affine map; the last row of the matrix is ``[0, 0, 1]``."""

    kind = "affine"

    def __init__(self, matrix: np.ndarray) -> None:
        m = np.array(matrix, dtype=np.float64)
        if m.shape == (2, 3):
            m = np.vstack([m, [0.0, 0.0, 1.0]])
        super().__init__(m)
        self._m[2] = (0.0, 0.0, 1.0)


class SimilarityModel(AffineModel):
    """Rotation, uniform scale and translation: ``[[a, -b, tx], [b, a, ty], [0, 0, 1]]``.

    The rigid geometry of two sensors that differ only by orientation, pixel size and offset:
    4 parameters instead of the affine's 6, so it extrapolates beyond its tie points far better
    when they cover only part of the image.
    """

    kind = "similarity"

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__(matrix)
        a, b = self._m[0, 0], self._m[1, 0]
        if not (np.isclose(self._m[1, 1], a, rtol=1e-6, atol=1e-9) and np.isclose(self._m[0, 1], -b, rtol=1e-6,
                                                                                  atol=1e-9)):
            raise ValueError(f"not a similarity matrix (rotation and uniform scale): {self._m[:2, :2].tolist()}")

    @property
    def scale(self) -> float:
        """Uniform scale factor."""
        return float(np.hypot(self._m[0, 0], self._m[1, 0]))

    @property
    def rotation_deg(self) -> float:
        """Rotation in degrees (counter-clockwise in pixel coordinates, y down)."""
        return float(np.degrees(np.arctan2(self._m[1, 0], self._m[0, 0])))


class HomographyModel(MatrixModel):
    """Projective map, scaled so that ``matrix[2, 2] == 1`` where possible."""

    kind = "homography"

    def __init__(self, matrix: np.ndarray) -> None:
        m = np.array(matrix, dtype=np.float64)
        if m.shape == (3, 3) and abs(m[2, 2]) > 1e-12:
            m = m / m[2, 2]
        super().__init__(m)


class PolynomialModel(GeometricModel):
    """Polynomial of degree 1..3 in normalised source coordinates.

    ``dst = design(u, v) @ coefficients`` where ``design`` holds the monomials of
    :func:`monomial_exponents` and ``(u, v) = normalisation.forward(src)``.

    Args:
        degree: 1, 2 or 3.
        normalisation: Source-coordinate normalisation.
        coefficients: ``(n_terms, 2)``: column 0 gives destination x, column 1 destination y.
        domain: Bounding box ``(xmin, ymin, xmax, ymax)`` of the fitting points (used for
            :attr:`matrix_px`).
    """

    def __init__(
        self,
        degree: int,
        normalisation: Normalisation,
        coefficients: np.ndarray,
        domain: tuple[float, float, float, float],
    ) -> None:
        n_terms = (degree + 1) * (degree + 2) // 2
        coef = np.asarray(coefficients, dtype=np.float64)
        if coef.shape != (n_terms, 2):
            raise ValueError(f"poly{degree} needs ({n_terms}, 2) coefficients, got {coef.shape}")
        self.degree = degree
        self.kind = f"poly{degree}"
        self.normalisation = normalisation
        self.coefficients = coef
        self.domain = domain

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Evaluate the polynomial at ``(N, 2)`` source pixels."""
        uv = self.normalisation.forward(as_points(xy))
        return np.asarray(monomial_design(uv, self.degree) @ self.coefficients)

    @property
    def matrix_px(self) -> np.ndarray:
        """Least-squares affine approximation over :attr:`domain` (exact for ``poly1``)."""
        grid = domain_grid(self.domain)
        return affine_from_samples(grid, self.apply(grid))

    def to_dict(self) -> dict[str, Any]:
        """Kind, degree, normalisation, monomial exponents, x/y coefficients, domain, matrix."""
        return {
            "kind": self.kind,
            "matrix_px": self.matrix_px.tolist(),
            "degree": self.degree,
            "normalisation": self.normalisation.to_dict(),
            "terms": [list(t) for t in monomial_exponents(self.degree)],
            "coefficients_x": self.coefficients[:, 0].tolist(),
            "coefficients_y": self.coefficients[:, 1].tolist(),
            "domain_px": list(self.domain),
            "formula": "x' = sum_k cx[k] u^i[k] v^j[k], y' likewise with cy; "
            "u = (x - center[0]) / scale, v = (y - center[1]) / scale",
        }


class TPSModel(GeometricModel):
    """Thin-plate spline through control points (scipy ``RBFInterpolator``).

    The spline (kernel ``r^2 log r`` plus an affine part) is fitted in normalised source
    coordinates, so ``smoothing`` is in those units and does not depend on the raster size.

    Args:
        control_xy: Source control points in pixels, ``(M, 2)``.
        values_xy: Destination pixels at the control points, ``(M, 2)``.
        smoothing: Scalar, or ``(M,)`` per-point smoothing (0 interpolates exactly).
        normalisation: Source normalisation; default from ``control_xy``.

    Raises:
        ValueError: The system is singular (duplicated or collinear control points with
            ``smoothing == 0``).
    """

    kind = "tps"

    def __init__(
        self,
        control_xy: np.ndarray,
        values_xy: np.ndarray,
        smoothing: float | np.ndarray = 0.0,
        normalisation: Normalisation | None = None,
    ) -> None:
        self.control_xy = as_points(control_xy, "control_xy")
        self.values_xy = as_points(values_xy, "values_xy")
        if self.control_xy.shape != self.values_xy.shape:
            raise ValueError(
                f"TPS control points {self.control_xy.shape} and values "
                f"{self.values_xy.shape} differ in shape"
            )
        self.smoothing = smoothing
        self.normalisation = normalisation or Normalisation.from_points(self.control_xy)
        self.domain = bbox(self.control_xy)
        try:
            self._rbf = RBFInterpolator(
                self.normalisation.forward(self.control_xy),
                self.values_xy,
                kernel="thin_plate_spline",
                smoothing=smoothing,
                degree=1,
            )
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise ValueError(
                f"thin-plate spline through {len(self.control_xy)} control points failed "
                f"({exc}); duplicated or collinear points? Use tps_smoothing > 0 or a "
                "polynomial transform"
            ) from exc

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Evaluate the spline at ``(N, 2)`` source pixels (NaN rows stay NaN)."""
        p = as_points(xy)
        out = np.full_like(p, np.nan)
        ok = np.isfinite(p).all(axis=1)
        if ok.any():
            out[ok] = self._rbf(self.normalisation.forward(p[ok]))
        return out

    @property
    def matrix_px(self) -> np.ndarray:
        """Least-squares affine approximation over the control points' bounding box."""
        grid = domain_grid(self.domain)
        return affine_from_samples(grid, self.apply(grid))

    def to_dict(self) -> dict[str, Any]:
        """Kind, matrix, kernel, smoothing, normalisation and the control points."""
        sm = self.smoothing
        return {
            "kind": self.kind,
            "matrix_px": self.matrix_px.tolist(),
            "kernel": "thin_plate_spline",
            "polynomial_degree": 1,
            "smoothing": np.asarray(sm).tolist(),
            "normalisation": self.normalisation.to_dict(),
            "control_points_px": self.control_xy.tolist(),
            "values_px": self.values_xy.tolist(),
            "domain_px": list(self.domain),
        }


def model_from_dict(d: dict[str, Any]) -> GeometricModel:
    """Rebuild a model from :meth:`GeometricModel.to_dict`.

    Raises:
        ValueError: Unknown ``kind``.
    """
    kind = d.get("kind", "")
    if kind == "shift":
        dx, dy = d["shift_px"]
        return ShiftModel(float(dx), float(dy))
    if kind == "affine":
        return AffineModel(np.asarray(d["matrix_px"]))
    if kind == "similarity":
        return SimilarityModel(np.asarray(d["matrix_px"]))
    if kind == "homography":
        return HomographyModel(np.asarray(d["matrix_px"]))
    if kind in ("poly1", "poly2", "poly3"):
        coef = np.column_stack([d["coefficients_x"], d["coefficients_y"]])
        domain = tuple(float(v) for v in d["domain_px"])
        return PolynomialModel(
            int(d["degree"]),
            Normalisation.from_dict(d["normalisation"]),
            coef,
            (domain[0], domain[1], domain[2], domain[3]),
        )
    if kind == "tps":
        sm = np.asarray(d["smoothing"], dtype=np.float64)
        return TPSModel(
            np.asarray(d["control_points_px"]),
            np.asarray(d["values_px"]),
            float(sm) if sm.ndim == 0 else sm,
            Normalisation.from_dict(d["normalisation"]),
        )
    raise ValueError(f"cannot rebuild a model of kind '{kind}'")
