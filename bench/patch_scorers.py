"""Classical patch scorers with the patch-model contract, for comparison with learned models.

Each scorer has ``patch_size`` and ``score(a, b)`` (two float arrays ``(N, P, P)`` in [0, 1],
a = reference, b = target, returns ``(N,)`` similarities, higher = same place), exactly like
``sarcoreg.models.load(...)``. They also expose ``score_matrix(a, b) -> (Na, Nb)``, an exact
all-pairs shortcut (each patch is described once, then one matrix product), which the
registration protocol uses in full mode. They deliberately have no ``embed()`` so the cheap mode's
pre-filter uses SIFT descriptors for them, as it would for a network without tower features.

* ``NCCScorer``: zero-mean normalised cross-correlation of the raw patches, in [-1, 1].
* ``CFOGScorer``: NCC of CFOG feature cubes (``sarcoreg.core.matchers.structural.cfog_features``).
* ``SiftDescScorer``: upright SIFT descriptor of each patch at its centre, similarity
  ``1 - |d_a - d_b|`` of the unit-length descriptors, in [1 - sqrt(2), 1].
"""

from __future__ import annotations

import cv2
import numpy as np
from sarcoreg.core.matchers.structural import cfog_features

__all__ = ["NCCScorer", "CFOGScorer", "SiftDescScorer", "CLASSICAL_SCORERS", "DEFAULT_THRESHOLDS", "make_scorer"]


def _check(x: np.ndarray, p: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1:] != (p, p):
        raise ValueError(f"{name} must be (N, {p}, {p}) patches, got shape {arr.shape}")
    return arr


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm rows of ``(N, D)`` (flat rows stay zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-6)).astype(np.float32)


class _VectorScorer:
    """A scorer whose similarity is the dot product of per-patch unit vectors."""

    patch_size: int = 64

    def __init__(self, patch_size: int = 64) -> None:
        self.patch_size = int(patch_size)

    def describe(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` float32 unit vectors of ``(N, P, P)`` patches."""
        raise NotImplementedError

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarities ``(N,)`` of the pairs ``a[i], b[i]``."""
        a = _check(a, self.patch_size, "a")
        b = _check(b, self.patch_size, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of patches, got {a.shape[0]} and {b.shape[0]}")
        return np.einsum("nd,nd->n", self.describe(a), self.describe(b)).astype(np.float32)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """All-pairs similarities ``(Na, Nb)``, equal to ``score`` on every pair."""
        a = _check(a, self.patch_size, "a")
        b = _check(b, self.patch_size, "b")
        return (self.describe(a) @ self.describe(b).T).astype(np.float32)


class NCCScorer(_VectorScorer):
    """Zero-mean NCC of the raw patches."""

    name = "ncc"

    def describe(self, x: np.ndarray) -> np.ndarray:
        """Zero-mean unit-norm flattened patches ``(N, P*P)``."""
        return _unit_rows(x.reshape(x.shape[0], -1))


class CFOGScorer(_VectorScorer):
    """NCC of CFOG feature cubes (orientation-binned gradient channels, 9 orientations)."""

    name = "cfog"

    def __init__(self, patch_size: int = 64, orientations: int = 9, sigma: float = 0.8, batch: int = 512) -> None:
        super().__init__(patch_size)
        self.orientations = orientations
        self.sigma = sigma
        self.batch = batch

    def describe(self, x: np.ndarray) -> np.ndarray:
        """Zero-mean unit-norm CFOG cubes, flattened ``(N, 9*P*P)``."""
        out = []
        for s in range(0, x.shape[0], self.batch):
            f = cfog_features(x[s:s + self.batch], orientations=self.orientations, sigma=self.sigma)
            out.append(_unit_rows(f.reshape(f.shape[0], -1)))
        if not out:
            return np.zeros((0, self.orientations * self.patch_size ** 2), dtype=np.float32)
        return np.concatenate(out, axis=0)


class SiftDescScorer(_VectorScorer):
    """Upright SIFT descriptor at the patch centre; similarity = 1 - L2 distance (unit descriptors).

    The descriptor window of a keypoint of size ``s`` has a radius of about ``5.3 s`` px in
    OpenCV, so ``size = 6`` keeps it inside a 64 x 64 patch. Patches are tiled into one mosaic
    image so OpenCV computes all descriptors in a single call.
    """

    name = "sift-desc"

    def __init__(self, patch_size: int = 64, size: float | None = None) -> None:
        super().__init__(patch_size)
        self.size = float(size) if size is not None else 6.0 * patch_size / 64.0
        self._sift = cv2.SIFT_create()

    def describe(self, x: np.ndarray) -> np.ndarray:
        """Unit SIFT descriptors ``(N, 128)`` (not mean-centred)."""
        n, p = x.shape[0], self.patch_size
        if n == 0:
            return np.zeros((0, 128), dtype=np.float32)
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        mosaic = np.zeros((rows * p, cols * p), dtype=np.uint8)
        kps = []
        for i in range(n):
            r, c = divmod(i, cols)
            mosaic[r * p:(r + 1) * p, c * p:(c + 1) * p] = np.clip(np.rint(x[i] * 255.0), 0, 255).astype(np.uint8)
            kps.append(cv2.KeyPoint(c * p + (p - 1) / 2.0, r * p + (p - 1) / 2.0, self.size, 0.0))
        kps_out, desc = self._sift.compute(mosaic, kps)
        if desc is None or len(kps_out) != n:
            raise RuntimeError(f"SIFT computed {0 if desc is None else len(kps_out)} descriptors for {n} patches")
        d = desc.astype(np.float32)
        return (d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)).astype(np.float32)

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``1 - |d_a - d_b|`` for each pair."""
        a = _check(a, self.patch_size, "a")
        b = _check(b, self.patch_size, "b")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of patches, got {a.shape[0]} and {b.shape[0]}")
        return (1.0 - np.linalg.norm(self.describe(a) - self.describe(b), axis=1)).astype(np.float32)

    def score_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """All-pairs ``1 - |d_a - d_b|`` ``(Na, Nb)``."""
        da = self.describe(_check(a, self.patch_size, "a"))
        db = self.describe(_check(b, self.patch_size, "b"))
        d2 = np.maximum(2.0 - 2.0 * (da @ db.T), 0.0)
        return (1.0 - np.sqrt(d2)).astype(np.float32)


CLASSICAL_SCORERS = {"ncc": NCCScorer, "cfog": CFOGScorer, "sift-desc": SiftDescScorer}
# Nearest-neighbour thresholds of the registration protocol (RANSAC copes with outliers, so they
# are permissive); learned models output a probability and use 0.5.
DEFAULT_THRESHOLDS = {"ncc": 0.2, "cfog": 0.2, "sift-desc": 0.3}


def make_scorer(name: str, patch_size: int = 64) -> _VectorScorer:
    """A classical scorer by name (``ncc``, ``cfog``, ``sift-desc``)."""
    try:
        return CLASSICAL_SCORERS[name](patch_size)
    except KeyError:
        raise ValueError(f"unknown classical scorer {name!r}; choose one of {', '.join(CLASSICAL_SCORERS)}") from None
