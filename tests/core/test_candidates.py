"""Tie-point candidates: grid margins and spacing, keypoints on a real image, texture filter."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sarcoreg.core.candidates import (
    DEFAULT_MIN_TEXTURE,
    grid_candidates,
    keypoint_candidates,
    select_textured,
    texture_score,
)

DATA = (Path(__file__).resolve().parents[2].parent / "shared" / "data").resolve()
PHOTO = DATA / "vis-nir" / "registration" / "country" / "0000_rgb.jpg"
BEN = DATA / "s1s2" / "bigearthnet-configilm"
SEA = BEN / "benv1_pairs" / "S2B_MSIL2A_20170906T101019_27_42.npz"  # labelled "Sea and ocean"
FOREST = BEN / "benv1_pairs" / "S2B_MSIL2A_20180417T102019_74_79.npz"  # forest, shrub, water
FIELDS = BEN / "benv1_pairs" / "S2A_MSIL2A_20171002T112112_49_25.npz"  # arable land, pastures


def _corners(centres: np.ndarray, window: int) -> np.ndarray:
    return centres - window / 2.0


def _assert_fits(centres: np.ndarray, width: int, height: int, window: int, radius: int) -> None:
    c = _corners(centres, window)
    np.testing.assert_array_equal(c, np.round(c))  # integer template corners
    assert np.all(c >= radius)
    assert np.all(c[:, 0] + window + radius <= width)
    assert np.all(c[:, 1] + window + radius <= height)


def test_grid_spacing_margins_and_centring() -> None:
    w, h, t, r, sp = 500, 300, 64, 16, 50
    pts = grid_candidates(w, h, sp, t, r)
    _assert_fits(pts, w, h, t, r)
    xs, ys = np.unique(pts[:, 0]), np.unique(pts[:, 1])
    assert len(pts) == len(xs) * len(ys)
    np.testing.assert_array_equal(np.diff(xs), sp)
    np.testing.assert_array_equal(np.diff(ys), sp)
    # usable corner range x: 16..420 -> 9 columns; y: 16..220 -> 5 rows, centred in the range
    assert (len(xs), len(ys)) == (9, 5)
    left = xs[0] - t / 2 - r
    right = w - r - t - (xs[-1] - t / 2)
    assert abs(left - right) <= 1
    # row by row: the first row of candidates first
    assert np.all(pts[: len(xs), 1] == ys[0])


def test_grid_with_huge_spacing_gives_the_central_point() -> None:
    pts = grid_candidates(200, 120, 10_000, 64, 16)
    assert pts.shape == (1, 2)
    _assert_fits(pts, 200, 120, 64, 16)
    np.testing.assert_allclose(pts[0], [100.0, 60.0], atol=1)


def test_grid_exact_fit_and_odd_window() -> None:
    pts = grid_candidates(96, 96, 8, 64, 16)  # exactly one window + search
    np.testing.assert_array_equal(pts, [[48.0, 48.0]])
    odd = grid_candidates(100, 100, 10, 31, 5)
    _assert_fits(odd, 100, 100, 31, 5)
    assert np.all(odd % 1 == 0.5)


def test_grid_too_small_image_names_sizes() -> None:
    with pytest.raises(ValueError, match=r"height is 90 px.*window 64 \+ 2 x radius 16 = 96"):
        grid_candidates(200, 90, 50, 64, 16)
    with pytest.raises(ValueError, match="spacing"):
        grid_candidates(200, 200, 0, 64, 16)
    with pytest.raises(ValueError, match="radius"):
        grid_candidates(200, 200, 10, 64, -1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = cv2.imread(str(PHOTO), cv2.IMREAD_GRAYSCALE)
    assert img is not None, f"cannot read {PHOTO}"
    return img.astype(np.float32) / 255.0


def test_keypoints_are_strong_spread_and_inside(photo: np.ndarray) -> None:
    h, w = photo.shape
    t, r, dist = 64, 20, 40
    pts = keypoint_candidates(photo, max_points=60, window=t, radius=r, min_distance=dist)
    assert 30 <= len(pts) <= 60
    _assert_fits(pts, w, h, t, r)
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(pts), 1)].min() >= dist - 1.5
    # They sit on structure: templates around them are more textured than random ones.
    grid = grid_candidates(w, h, 48, t, r)

    def chips(c: np.ndarray) -> np.ndarray:
        x0 = (c - t / 2).astype(int)
        return np.stack([photo[y:y + t, x:x + t] for x, y in x0])

    assert np.median(texture_score(chips(pts))) > np.median(texture_score(chips(grid)))


def test_keypoints_avoid_invalid_pixels(photo: np.ndarray) -> None:
    valid = np.ones(photo.shape, bool)
    valid[:, : photo.shape[1] // 2] = False
    img = photo.copy()
    img[~valid] = np.nan
    pts = keypoint_candidates(img, 40, 48, 10, 20, valid=valid)
    assert len(pts) > 5
    assert np.all(pts[:, 0] > photo.shape[1] // 2)
    with pytest.raises(ValueError, match="width is 50 px"):
        keypoint_candidates(photo[:, :50], 10, 48, 10, 5)


def _common_stretch(*bands: np.ndarray) -> list[np.ndarray]:
    """One 0.5/99.5 percentile stretch over all bands, as a scene-wide preparation would do."""
    p0, p1 = np.percentile(np.concatenate([b.ravel() for b in bands]), [0.5, 99.5])
    return [np.clip((b - p0) / (p1 - p0), 0, 1).astype(np.float32) for b in bands]


def _rgb_mean(path: Path) -> np.ndarray:
    with np.load(path) as d:
        return np.asarray(d["s2_10m"][:3].astype(np.float32).mean(axis=0))


def test_texture_separates_sea_from_land_on_real_sentinel2() -> None:
    sea, forest, fields = _common_stretch(_rgb_mean(SEA), _rgb_mean(FOREST), _rgb_mean(FIELDS))

    def quads(img: np.ndarray) -> np.ndarray:
        return np.stack([img[y:y + 64, x:x + 64] for y in (0, 56) for x in (0, 56)])

    s_sea, s_forest, s_fields = (texture_score(quads(i)) for i in (sea, forest, fields))
    assert s_sea.max() < DEFAULT_MIN_TEXTURE < min(s_forest.min(), s_fields.min())
    chips = np.concatenate([quads(sea), quads(forest)])
    np.testing.assert_array_equal(select_textured(chips), [False] * 4 + [True] * 4)


def test_texture_rejects_constant_and_nodata() -> None:
    forest = _common_stretch(_rgb_mean(FOREST))[0][:64, :64]
    chips = np.stack([np.full((64, 64), 0.3, np.float32), forest, forest, forest.copy()])
    chips[3, :40] = np.nan
    valid = np.ones(chips.shape, bool)
    valid[2, :, :48] = False  # 75 % nodata
    scores = texture_score(chips)
    assert scores[0] == 0 and np.all(np.isfinite(scores))
    np.testing.assert_array_equal(select_textured(chips, valid=valid), [False, True, False, False])
    np.testing.assert_array_equal(select_textured(chips, valid=valid, min_valid=0.2),
                                  [False, True, True, True])
    assert texture_score(np.zeros((0, 8, 8))).shape == (0,)
