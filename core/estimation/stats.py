"""Summary statistics of 2-D residuals (pixels)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["json_float", "radial_stats"]


def json_float(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN/inf (strict JSON has no NaN)."""
    v = float(value)
    return v if math.isfinite(v) else None


def radial_stats(residuals: np.ndarray) -> dict[str, float]:
    """Statistics of residual vectors; rows with NaN are ignored.

    With radial errors ``r_i = sqrt(dx_i^2 + dy_i^2)``:
    ``rmse = sqrt(mean(r^2))``, ``rmse_x = sqrt(mean(dx^2))``, ``rmse_y = sqrt(mean(dy^2))``,
    ``mean``, ``median`` and ``max`` of ``r``, and ``ce90`` = 90th percentile of ``r`` (numpy's
    linear interpolation between order statistics).

    Args:
        residuals: ``(N, 2)`` residuals ``(dx, dy)``.

    Returns:
        Keys ``n``, ``rmse``, ``rmse_x``, ``rmse_y``, ``mean``, ``median``, ``max``, ``ce90``;
        NaN values (and ``n = 0``) when no row is finite.

    Raises:
        ValueError: ``residuals`` is not ``(N, 2)``.
    """
    res = np.asarray(residuals, dtype=np.float64)
    if res.ndim != 2 or res.shape[1] != 2:
        raise ValueError(f"residuals must be an (N, 2) array of (dx, dy), got {res.shape}")
    res = res[np.isfinite(res).all(axis=1)]
    if len(res) == 0:
        nan = math.nan
        return {"n": 0.0, "rmse": nan, "rmse_x": nan, "rmse_y": nan, "mean": nan,
                "median": nan, "max": nan, "ce90": nan}
    r = np.hypot(res[:, 0], res[:, 1])
    return {
        "n": float(len(r)),
        "rmse": float(np.sqrt(np.mean(r**2))),
        "rmse_x": float(np.sqrt(np.mean(res[:, 0] ** 2))),
        "rmse_y": float(np.sqrt(np.mean(res[:, 1] ** 2))),
        "mean": float(r.mean()),
        "median": float(np.median(r)),
        "max": float(r.max()),
        "ce90": float(np.percentile(r, 90.0)),
    }
