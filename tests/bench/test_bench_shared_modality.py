"""The shared-modality benchmark's ground truth: the warped SAR maps back onto the optical grid by T."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_shared_modality as bench  # noqa: E402


def test_warp_and_ground_truth_agree() -> None:
    pairs = bench.load_pairs(limit=2)
    assert len(pairs) == 2 and pairs[0].sar.shape[0] == 1 and pairs[0].optical.shape[0] == 3
    p = pairs[1]
    h, w = p.valid.shape
    warp = bench.random_similarity((h, w), np.random.default_rng([0, 1]))
    a, b, T = bench.prepare(p, "none", None, warp)
    a0, b0, T0 = bench.prepare(p, "none", None, None)
    assert a.shape == (h, w, 3) and np.allclose(T0, np.eye(3)) and np.array_equal(b, b0)
    # T maps warped-SAR pixels to optical pixels: warping A by T brings it back onto the original SAR
    back = cv2.warpAffine(a[:, :, 0], T[:2], (w, h), flags=cv2.INTER_LINEAR, borderValue=-1)
    inner = back >= 0
    inner &= cv2.erode(inner.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.mean() > 0.4
    assert np.abs(back[inner] - a0[:, :, 0][inner]).mean() < 0.03


def test_random_similarity_ranges() -> None:
    for i in range(20):
        m = bench.random_similarity((120, 120), np.random.default_rng([0, i]))
        scale = np.sqrt(abs(np.linalg.det(m[:2, :2])))
        angle = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
        centre = m @ np.array([59.5, 59.5, 1.0])
        assert 0.9 <= scale <= 1.1 and abs(angle) <= 10
        assert np.all(np.abs(centre[:2] - 59.5) <= 20 + 1e-9)
