"""One contract for every window method of the catalog (learned ones with their shipped models).

For each window method: the :class:`MatchResult` has the documented shapes and dtypes, a chip
pair with too much nodata is rejected with a reason (never matched), and a known shift is found
on small chips cut from a real optical image (WHU-OPT-SAR) and its speckled copy.
"""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core.matchers.base import ChipBatch, MatchResult, get_matcher
from sarcoreg.core.methods import get_method, method_names
from sarcoreg.models.registry import list_models

from tests.conftest import RRLNET_TEST_MODEL, shared_data

T, R = 64, 8
SHIFT = (3, -2)
KNOWN_SHIFT = ("structural", "ncc", "mi")
CENTRES = [(300, 300), (520, 380), (700, 650), (420, 760)]


def _read(kind: str) -> np.ndarray:
    path = shared_data("sar-optical", "whu-opt-sar", "data", kind, "WHU-OPT-SAR.tif")
    if not path.exists():
        pytest.skip(f"{path} not available")
    a = gdal.Open(str(path)).ReadAsArray().astype(np.float32)
    a = a.mean(axis=0) if a.ndim == 3 else a
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def chips() -> ChipBatch:
    """Optical templates ``(4, T, T)``, speckled search windows ``(4, T + 2R, T + 2R)`` whose content moved by SHIFT."""
    opt = _read("optical")
    sar = np.clip(opt * np.random.default_rng(0).gamma(4.0, 0.25, opt.shape), 0, 1).astype(np.float32)  # speckled
    dx, dy = SHIFT
    h = T // 2
    ref = np.stack([opt[y - h : y + h, x - h : x + h] for x, y in CENTRES])
    tgt = np.stack([sar[y - h - R - dy : y + h + R - dy, x - h - R - dx : x + h + R - dx] for x, y in CENTRES])
    return ChipBatch(ref, tgt, np.array(CENTRES, np.float64), np.ones(ref.shape, bool), np.ones(tgt.shape, bool))


def _matcher(name: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    spec = get_method(name)
    if not spec.learned:
        return get_matcher(name)
    if name == "rrlnet" and spec.default_model not in list_models():
        request.getfixturevalue("rrlnet_model_folder")  # no shipped RRL-Net: the random-weight test model
        return get_matcher(name, model=RRLNET_TEST_MODEL, device="cpu")
    if spec.default_model not in list_models():
        pytest.skip(f"model {spec.default_model} not installed")
    return get_matcher(name, device="cpu")


@pytest.mark.parametrize("name", method_names(kind="window"))
def test_window_method_contract(name: str, chips: ChipBatch, request: pytest.FixtureRequest) -> None:
    matcher = _matcher(name, request)
    bad_valid = chips.target_valid.copy()  # type: ignore[union-attr]
    bad_valid[1, :, : T] = False  # most of chip 1's search window is nodata
    bad_tgt = chips.target.copy()
    bad_tgt[1][~bad_valid[1]] = np.nan
    batch = ChipBatch(chips.reference, bad_tgt, chips.ref_xy, chips.reference_valid, bad_valid)
    res = matcher.match(batch)
    n = len(batch)
    assert isinstance(res, MatchResult) and res.matcher == name and len(res) == n
    assert res.ref_xy.shape == (n, 2) and res.target_xy.shape == (n, 2) and res.target_xy.dtype == np.float64
    assert res.score.shape == res.reliability.shape == res.valid.shape == (n,) and res.valid.dtype == bool
    assert len(res.errors) == n and all(isinstance(e, str) for e in res.errors)
    assert ((0 <= res.reliability) & (res.reliability <= 1)).all()
    if get_method(name).has_maps:
        assert res.maps is not None and res.maps.shape == (n, 2 * R + 1, 2 * R + 1) and res.maps.dtype == np.float32
    # Nodata: the damaged row is not matched (or not trusted), and says why.
    assert not res.valid[1] or res.reliability[1] < 0.5 or res.errors[1]
    if get_method(name).learned:
        assert not res.valid[1] and "nodata" in res.errors[1]
    # A known shift on the real chips, for the methods that find it at T = 64, R = 8. Not yet for
    # sift (too few keypoints in a 64 px template), the shipped BNN / AAE (their peaks leave the
    # 17 x 17 map on these chips) or the random-weight RRL-Net: a larger chip size is still to choose.
    if name not in KNOWN_SHIFT:
        return
    ok = [k for k in (0, 2, 3) if res.valid[k]]
    err = [float(np.hypot(*(res.shift_xy[k] - SHIFT))) for k in ok]
    assert sum(e < 2.0 for e in err) >= 2, (name, res.shift_xy, res.errors)
