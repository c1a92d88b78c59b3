"""The augmentations of the public RRL-Net training code (imgaug ``gen4``), re-done with OpenCV.

On uint8 patch batches ``(N, 2, P, P)``:

1. per modality, *independently* (so the two patches of a pair get different jitter), for each
   patch 0-2 of, in random order: Gaussian blur (sigma 0-1), gamma contrast (0.5-1.5), x scale
   and y scale (0.95-1.05, about the centre), x and y translation (+-5 %), additive Gaussian
   noise (sigma 0.02 * 255);
2. *jointly* on both patches of a pair: 0-2 of horizontal flip (p 0.5), vertical flip (p 0.5),
   rotation by 90, 180 or 270 degrees.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["augment_pairs"]

_PHOTO_GEO = ("blur", "gamma", "scale_x", "scale_y", "shift_x", "shift_y", "noise")
_PHOTO = ("blur", "gamma", "noise")
_JOINT = ("fliplr", "flipud", "rot90")


def _jitter(p: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
    """One photometric / small geometric op on a uint8 patch (P, P)."""
    size = p.shape[0]
    if op == "blur":
        sigma = float(rng.uniform(0.0, 1.0))
        return p if sigma < 1e-3 else cv2.GaussianBlur(p, (0, 0), sigma)
    if op == "gamma":
        g = float(rng.uniform(0.5, 1.5))
        return np.clip(255.0 * (p / 255.0) ** g, 0, 255).astype(np.uint8)
    if op == "noise":
        return np.clip(p + rng.normal(0.0, 0.02 * 255.0, p.shape), 0, 255).astype(np.uint8)
    c = size / 2.0
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if op in ("scale_x", "scale_y"):
        s = float(rng.uniform(0.95, 1.05))
        k = 0 if op == "scale_x" else 1
        m[k, k] = s
        m[k, 2] = c * (1.0 - s)
    else:
        m[0 if op == "shift_x" else 1, 2] = float(rng.uniform(-0.05, 0.05)) * size
    return cv2.warpAffine(p, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _joint(pair: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
    """One joint flip / rotation of a pair (2, P, P)."""
    if op == "fliplr":
        return pair[:, :, ::-1] if rng.random() < 0.5 else pair
    if op == "flipud":
        return pair[:, ::-1, :] if rng.random() < 0.5 else pair
    return np.rot90(pair, k=int(rng.integers(1, 4)), axes=(1, 2))


def augment_pairs(images: np.ndarray, rng: np.random.Generator, independent_geometry: bool = True) -> np.ndarray:
    """Augment a batch of patch pairs.

    Args:
        images: ``(N, 2, P, P)`` uint8 pairs.
        rng: Random generator.
        independent_geometry: Allow the per-modality scale and translation (up to 5 %: 3 px of a
            64 px patch). Off for training against near-shifted negatives, where such a shift would
            turn a positive into one; the joint flips and rotations stay.

    Returns:
        A new ``(N, 2, P, P)`` uint8 array.
    """
    out = np.array(images, copy=True)
    ops = _PHOTO_GEO if independent_geometry else _PHOTO
    for i in range(out.shape[0]):
        for m in range(2):
            for k in rng.permutation(len(ops))[: int(rng.integers(0, 3))]:
                out[i, m] = _jitter(out[i, m], ops[k], rng)
        pair = out[i]
        for k in rng.permutation(len(_JOINT))[: int(rng.integers(0, 3))]:
            pair = _joint(pair, _JOINT[k], rng)
        out[i] = pair
    return out
