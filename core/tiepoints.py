"""The tie-point table: what the engine found, per candidate, after estimation.

Field names follow AROSICS' CoRegPoints table where one exists (so AROSICS users find their
columns), plus sarcoreg's own (score, matcher, target coordinates, residuals). Failed points keep
their row with NaN coordinates/shifts and the reason in ``LAST_ERR``; writers turn NaN into
-9999 where a format needs a number, as AROSICS does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .georef import Georef

__all__ = ["TiePoints", "TIEPOINT_FIELDS"]

#: (name, kind) of every column; kind is "int", "float", "str" or "bool".
TIEPOINT_FIELDS: list[tuple[str, str]] = [
    ("POINT_ID", "int"),
    ("X_IM", "float"),  # reference pixel column (GDAL convention)
    ("Y_IM", "float"),  # reference pixel row
    ("X_MAP", "float"),  # reference map x
    ("Y_MAP", "float"),  # reference map y
    ("X_WIN_SIZE", "int"),
    ("Y_WIN_SIZE", "int"),
    ("X_SHIFT_PX", "float"),  # target displacement relative to reference, reference pixels
    ("Y_SHIFT_PX", "float"),
    ("X_SHIFT_M", "float"),  # same in map units
    ("Y_SHIFT_M", "float"),
    ("ABS_SHIFT", "float"),  # map units (pixels for plain images)
    ("ANGLE", "float"),  # degrees clockwise from north (up) of the shift vector
    ("RELIABILITY", "float"),  # 0..100 as in AROSICS
    ("SCORE", "float"),
    ("MATCHER", "str"),
    ("TGT_X_IM", "float"),  # matched position in the original target raster's pixels
    ("TGT_Y_IM", "float"),
    ("RES_X_PX", "float"),  # residual of the fitted transform, reference pixels
    ("RES_Y_PX", "float"),
    ("RESIDUAL_PX", "float"),
    ("LAST_ERR", "str"),
    ("L1_OUTLIER", "bool"),  # failed or low reliability
    ("L2_OUTLIER", "bool"),  # rejected by the robust fit (RANSAC)
    ("OUTLIER", "bool"),
]


@dataclass
class TiePoints:
    """Tie points in the reference frame, one row per candidate.

    Attributes:
        ref_xy: Reference pixel coordinates, ``(N, 2)``.
        target_xy: Matched target position in the **original target raster's** pixel
            coordinates, ``(N, 2)``; NaN where matching failed.
        shift_px: Displacement of the target content relative to the reference, in reference
            pixels, ``(N, 2)``, once the target is put on the reference grid by its own
            georeferencing (the error of that georeferencing); NaN where matching failed.
        score: Matcher similarity, ``(N,)``.
        reliability: 0..1, ``(N,)``.
        residual_px: Fitted-transform residual in reference pixels, ``(N, 2)``: for the engine
            ``model(p) - ref_xy`` with ``p`` the match on the reference grid (``target_xy``
            through the target's georeferencing, i.e. ``ref_xy + shift_px``), since the engine's
            model is a correction in reference-grid pixels; NaN where not fitted.
        l1_outlier: Failed or unreliable, ``(N,)`` bool.
        l2_outlier: Rejected by the robust fit, ``(N,)`` bool.
        errors: Reason per row ("" when fine).
        matcher: Name of the matcher.
        window: Template size in pixels.
        reference: Georeferencing of the reference raster.
    """

    ref_xy: np.ndarray
    target_xy: np.ndarray
    shift_px: np.ndarray
    score: np.ndarray
    reliability: np.ndarray
    residual_px: np.ndarray
    l1_outlier: np.ndarray
    l2_outlier: np.ndarray
    errors: list[str]
    matcher: str
    window: int
    reference: Georef

    def __len__(self) -> int:
        return int(self.ref_xy.shape[0])

    @property
    def outlier(self) -> np.ndarray:
        """Any-level outlier flag, ``(N,)`` bool."""
        return np.asarray(self.l1_outlier | self.l2_outlier)

    @property
    def inlier(self) -> np.ndarray:
        """Rows used by the final transform, ``(N,)`` bool."""
        return ~self.outlier

    def columns(self) -> dict[str, np.ndarray | list[str]]:
        """All table columns by AROSICS-style name (see :data:`TIEPOINT_FIELDS`)."""
        n = len(self)
        ref_map = self.reference.pixel_to_map(self.ref_xy)
        m = self.reference.matrix
        shift_map = self.shift_px @ m[:2, :2].T
        abs_shift = np.hypot(shift_map[:, 0], shift_map[:, 1])
        # Angle of the map-space shift vector, clockwise from north.
        angle = (np.degrees(np.arctan2(shift_map[:, 0], shift_map[:, 1])) + 360.0) % 360.0
        res = self.residual_px
        return {
            "POINT_ID": np.arange(n, dtype=np.int64),
            "X_IM": self.ref_xy[:, 0],
            "Y_IM": self.ref_xy[:, 1],
            "X_MAP": ref_map[:, 0],
            "Y_MAP": ref_map[:, 1],
            "X_WIN_SIZE": np.full(n, self.window, np.int64),
            "Y_WIN_SIZE": np.full(n, self.window, np.int64),
            "X_SHIFT_PX": self.shift_px[:, 0],
            "Y_SHIFT_PX": self.shift_px[:, 1],
            "X_SHIFT_M": shift_map[:, 0],
            "Y_SHIFT_M": shift_map[:, 1],
            "ABS_SHIFT": abs_shift,
            "ANGLE": angle,
            "RELIABILITY": 100.0 * self.reliability,
            "SCORE": self.score,
            "MATCHER": [self.matcher] * n,
            "TGT_X_IM": self.target_xy[:, 0],
            "TGT_Y_IM": self.target_xy[:, 1],
            "RES_X_PX": res[:, 0],
            "RES_Y_PX": res[:, 1],
            "RESIDUAL_PX": np.hypot(res[:, 0], res[:, 1]),
            "LAST_ERR": list(self.errors),
            "L1_OUTLIER": self.l1_outlier,
            "L2_OUTLIER": self.l2_outlier,
            "OUTLIER": self.outlier,
        }
