"""Robust estimation of the target-pixel -> reference-pixel transform from tie points.

Public API::

    from sarcoreg.core.estimation import fit_transform
    fit = fit_transform(target_xy, ref_xy, "affine", threshold_px=3.0, seed=0)
    fit.model.apply(xy), fit.inverse.apply(xy), fit.inliers, fit.rmse_px, fit.to_dict()

Modules: :mod:`.coords` (point arrays, normalisation, monomials), :mod:`.models` (the model
families and :func:`model_from_dict`), :mod:`.ransac` (robust inlier search),
:mod:`.refit` (weighted least-squares refits with leave-one-out residuals), :mod:`.stats`
(residual statistics), :mod:`.fit` (:func:`fit_transform`, :class:`FitResult`).
"""

from __future__ import annotations

from .fit import TRANSFORM_KINDS, FitResult, fit_transform, min_points
from .models import (
    AffineModel,
    GeometricModel,
    HomographyModel,
    MatrixModel,
    PolynomialModel,
    ShiftModel,
    SimilarityModel,
    TPSModel,
    model_from_dict,
)
from .stats import radial_stats

__all__ = [
    "TRANSFORM_KINDS",
    "AffineModel",
    "FitResult",
    "GeometricModel",
    "HomographyModel",
    "MatrixModel",
    "PolynomialModel",
    "ShiftModel",
    "SimilarityModel",
    "TPSModel",
    "fit_transform",
    "min_points",
    "model_from_dict",
    "radial_stats",
]
