"""The RRL-Net matcher: registration, lazy model loading, coarse-to-fine search, real data."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from sarcoreg.core.matchers.base import ChipBatch, available_matchers, get_matcher
from sarcoreg.core.matchers.peaks import BORDER_ERROR
from sarcoreg.core.matchers.rrlnet import RRLNetMatcher

from tests.conftest import REPO, RRLNET_TEST_MODEL, shared_data


class NegativeSSD:
    """A real (non-learned) patch model: score = minus the mean squared difference."""

    name = "neg-ssd"
    device = "numpy"

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size
        self.calls = 0

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.calls += 1
        return -((np.asarray(a, np.float32) - np.asarray(b, np.float32)) ** 2).mean(axis=(1, 2))


def _chips(
    img: np.ndarray, other: np.ndarray, centres: list[tuple[int, int]], t: int, r: int, shift: tuple[int, int]
) -> ChipBatch:
    """Templates from ``img`` at ``centres``; search windows from ``other`` whose content is moved by ``shift``."""
    dx, dy = shift
    h = t // 2
    ref = np.stack([img[y - h : y + h, x - h : x + h] for x, y in centres])
    # The target content at reference position p lies at p + shift: window around the same centre.
    tgt = np.stack([other[y - h - r - dy : y + h + r - dy, x - h - r - dx : x + h + r - dx] for x, y in centres])
    xy = np.array([[x, y] for x, y in centres], np.float64)
    return ChipBatch(ref.astype(np.float32), tgt.astype(np.float32), xy)


def _smooth_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((220, 220)).astype(np.float32), (0, 0), 3.0)


def test_registered_and_lazy() -> None:
    assert "rrlnet" in available_matchers()
    m = get_matcher("rrlnet", model="no-such-model")  # nothing is loaded yet
    assert isinstance(m, RRLNetMatcher)
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        _ = m.model
    with pytest.raises(ValueError, match="coarse_stride"):
        RRLNetMatcher(coarse_stride=0)


@pytest.mark.parametrize("shift", [(3, -2), (-6, 5)])
def test_coarse_to_fine_finds_the_dense_peak(shift: tuple[int, int]) -> None:
    img = _smooth_image()
    chips = _chips(img, img, [(100, 100), (120, 90)], t=32, r=8, shift=shift)
    coarse = RRLNetMatcher(model=NegativeSSD(32), coarse_stride=4)
    dense = RRLNetMatcher(model=NegativeSSD(32), coarse_stride=1)
    rc, rd = coarse.match(chips), dense.match(chips)
    assert rc.valid.all() and rd.valid.all()
    np.testing.assert_allclose(rd.shift_xy, [shift, shift], atol=0.05)
    # Same integer peak and the same 3 x 3 neighbourhood, hence the same sub-pixel position.
    np.testing.assert_allclose(rc.shift_xy, rd.shift_xy, atol=1e-9)
    assert rc.maps is not None and rc.maps.shape == (2, 17, 17)
    assert coarse.evaluations < 0.5 * dense.evaluations == 0.5 * 2 * 17 * 17
    peak = rc.maps[0, 8 + shift[1], 8 + shift[0]]
    assert np.isfinite(rc.maps[0, 7 + shift[1] : 10 + shift[1], 7 + shift[0] : 10 + shift[0]]).all()
    assert peak == np.nanmax(rc.maps[0])


def test_template_resampled_to_model_patch_size() -> None:
    img = _smooth_image(1)
    chips = _chips(img, img, [(110, 110)], t=48, r=6, shift=(2, 1))
    res = RRLNetMatcher(model=NegativeSSD(64), coarse_stride=2).match(chips)
    assert res.valid[0]
    np.testing.assert_allclose(res.shift_xy[0], [2, 1], atol=0.3)


def test_nodata_and_border_rows() -> None:
    img = _smooth_image(2)
    chips = _chips(img, img, [(100, 100), (120, 120)], t=32, r=4, shift=(0, 0))
    valid = np.ones_like(chips.reference, bool)
    valid[0, :, :20] = False
    chips = ChipBatch(chips.reference, chips.target, chips.ref_xy, reference_valid=valid)
    res = RRLNetMatcher(model=NegativeSSD(32)).match(chips)
    assert not res.valid[0] and "nodata" in res.errors[0] and res.valid[1]
    far = _chips(img, img, [(100, 100)], t=32, r=4, shift=(7, 0))
    res = RRLNetMatcher(model=NegativeSSD(32)).match(far)
    assert not res.valid[0] and res.errors[0] == BORDER_ERROR


def test_onnx_model_on_real_pair_without_torch(rrlnet_model_folder) -> None:  # type: ignore[no-untyped-def]
    """RGB templates vs NIR search windows of a held-out country pair in a fresh interpreter that
    must not import torch: the ONNX model runs, the search stays coarse-to-fine, the maps are
    probabilities and every row is either a match inside the radius or invalid with a reason.

    Localisation accuracy is NOT asserted: the model of the test model folder has random weights
    (no trained RRL-Net ships yet: the CPU-trained ones of the first session were too weak).
    """
    folder = shared_data("vis-nir", "registration", "country")
    code = f"""
import sys, cv2, numpy as np
sys.path.insert(0, {str(REPO)!r})
from sarcoreg.core.matchers.base import get_matcher
from tests.core.test_rrlnet_matcher import _chips
rgb = cv2.imread({str(folder / '0013_rgb.jpg')!r}, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
nir = cv2.imread({str(folder / '0013_nir.jpg')!r}, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
chips = _chips(rgb, nir, [(300, 250), (620, 400), (480, 300)], t=64, r=8, shift=(3, -2))
m = get_matcher('rrlnet', model={RRLNET_TEST_MODEL!r}, device='cpu')
res = m.match(chips)
maps = res.maps[np.isfinite(res.maps)]
ok = all((v and np.abs(s).max() <= 8) or (not v and e) for v, s, e in zip(res.valid, res.shift_xy, res.errors))
print(m.evaluations, 'torch' in sys.modules, m.device, int(0 <= maps.min() and maps.max() <= 1), int(ok))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    evals, torch_loaded, device, in_unit, rows_ok = out.stdout.split()
    assert torch_loaded == "False" and device.startswith("onnxruntime")
    assert 3 * 25 <= int(evals) < 3 * 17 * 17  # the 5 x 5 coarse grid plus refinement, not the dense map
    assert in_unit == "1" and rows_ok == "1"
