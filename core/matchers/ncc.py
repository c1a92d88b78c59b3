"""Normalised cross-correlation of intensities (the plain baseline).

Works well between images of the same modality; between SAR and optical the intensities are
not linearly related, so prefer :mod:`~sarcoreg.core.matchers.structural` there.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from ..methods import get_method
from .base import ChipBatch, Matcher, MatchResult
from .peaks import fill_invalid, nodata_errors, result_from_maps

__all__ = ["NCCMatcher"]


class NCCMatcher(Matcher):
    """Zero-mean normalised cross-correlation (OpenCV ``TM_CCOEFF_NORMED``).

    Args:
        min_valid: Smallest share of valid pixels a template and a search window need; below it
            the row is invalid. Nodata pixels are filled with the chip's mean and the
            reliability is scaled by the valid share.
    """

    name: ClassVar[str] = "ncc"
    description: ClassVar[str] = get_method("ncc").description

    def __init__(self, min_valid: float = 0.7) -> None:
        if not 0.0 <= min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
        self.min_valid = float(min_valid)

    def match(self, chips: ChipBatch) -> MatchResult:
        """Correlate every template over its search window.

        Args:
            chips: Templates ``(N, T, T)`` and search windows ``(N, T + 2R, T + 2R)``.

        Returns:
            Rows with score = the peak correlation in [-1, 1] and maps ``(N, 2R + 1, 2R + 1)``.
        """
        ref = fill_invalid(chips.reference, chips.reference_valid)
        tgt = fill_invalid(chips.target, chips.target_valid)
        r = chips.radius
        maps = np.empty((len(chips), 2 * r + 1, 2 * r + 1), dtype=np.float32)
        errors, weight = nodata_errors(chips, self.min_valid)
        for k in range(len(chips)):
            out = cv2.matchTemplate(tgt[k], ref[k], cv2.TM_CCOEFF_NORMED)
            maps[k] = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
            if not errors[k] and float(ref[k].std()) < 1e-6:
                errors[k] = "template has no contrast"
        return result_from_maps(chips, maps, self.name, weight=weight, errors=errors)
