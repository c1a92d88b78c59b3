"""Real SAR / optical image pairs (SRIF with corrected ground truth, OSMNet, WHU) and the S1/S2 regions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sarcoreg.training.pair_datasets import bigearthnet_npz, load_source, split_pool
from sarcoreg.training.real_pairs import crop_pool, osmnet_pairs, pairs_from_spec, s1s2_regions, srif_pairs, whu_pairs

from tests.conftest import shared_data


def _grad_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """NCC of gradient magnitudes (log SAR is already in b), a rough alignment score."""
    def g(x: np.ndarray) -> np.ndarray:
        x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0)
        return np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1))

    ga, gb = g(a), g(b)
    ga, gb = ga - ga.mean(), gb - gb.mean()
    return float((ga * gb).sum() / np.sqrt((ga**2).sum() * (gb**2).sum()))


def test_srif_pairs_are_aligned_by_the_corrected_ground_truth() -> None:
    pairs = srif_pairs(shared_data("sar-optical", "srif"), limit=6)
    assert len(pairs) == 6 and pairs[0].name == "srif/pair1"
    aligned, shifted = [], []
    for p in pairs:
        assert p.a.shape == p.b.shape and 175 <= p.a.shape[0] <= 256
        assert p.a.dtype == np.float32 and 0.0 <= p.a.min() and p.b.max() <= 1.0
        assert (p.b == 0).mean() < 0.05  # the centred square lies inside the SAR footprint
        aligned.append(_grad_ncc(p.a, p.b))
        shifted.append(_grad_ncc(p.a[:-12, :-12], p.b[12:, 12:]))
    assert np.median(aligned) > np.median(shifted) + 0.05


def test_low_confidence_srif_pairs_are_left_out() -> None:
    import csv

    root = shared_data("sar-optical", "srif")
    with open(root / "gt_corrected" / "angles.csv", newline="") as f:
        low = [int(r["pair"]) for r in csv.DictReader(f) if r["low_confidence"].strip() not in ("0", "")]
    assert low
    first_low = min(low)
    names = {p.name for p in srif_pairs(root, limit=first_low)}
    assert f"srif/pair{first_low}" not in names


def test_osmnet_and_whu_pairs() -> None:
    osm = osmnet_pairs(shared_data("sar-optical", "osmnet"))
    assert [p.name for p in osm] == ["osmnet/1", "osmnet/2", "osmnet/3", "osmnet/4"]
    assert all(p.a.shape == (256, 256) == p.b.shape for p in osm)
    whu = whu_pairs(shared_data("sar-optical", "whu-opt-sar"), tile=500)
    assert len(whu) == 4 and whu[3].name == "whu/500_500" and whu[0].a.shape == (500, 500)
    assert pairs_from_spec(f"osmnet:{shared_data('sar-optical', 'osmnet')}") is not None
    assert pairs_from_spec("qxs:/somewhere") is None and pairs_from_spec("/plain/folder") is None
    plain = pairs_from_spec(str(shared_data("sar-optical", "osmnet")))  # recognised by its layout
    assert plain is not None and len(plain) == 4


def test_crop_pool_groups_per_pair_and_skips_small_pairs() -> None:
    osm = osmnet_pairs(shared_data("sar-optical", "osmnet"))
    pool = crop_pool(osm, 64, crops_per_pair=3, seed=1)
    assert pool.sar.shape == (12, 64, 64) and pool.sar.dtype == np.uint8
    assert list(np.unique(pool.groups)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no 300 px crop"):
        crop_pool(osm, 300, 2, seed=0)


def test_s1s2_regions_keep_mosaics_with_their_patches() -> None:
    names = ["S2A_X_T33UUP_26_57.npz", "S2A_X_T33UUP_25_57.npz", "benv2_mosaic_T33UUP_x26-27_y55-59.npz",
             "S2A_X_T33UUP_27_59.npz", "other.npz"]
    ids = s1s2_regions(names)
    assert ids[0] == ids[2] == ids[3]
    assert len({ids[0], ids[1], ids[4]}) == 3


def test_npz_with_mosaics_split_by_region() -> None:
    folder = shared_data("s1s2", "bigearthnet-configilm")
    plain = bigearthnet_npz(folder, 64, crops_per_pair=1, seed=0)
    with_mosaics = bigearthnet_npz(folder, 64, crops_per_pair=1, seed=0, mosaics=True)
    assert len(with_mosaics) > len(plain)
    mosaic_groups = {g for g, n in zip(with_mosaics.groups, with_mosaics.names, strict=True) if "mosaic" in n}
    assert len(mosaic_groups) == 3
    train, val = split_pool(with_mosaics, 0.3, seed=3)
    for g in mosaic_groups:  # a mosaic and the patches inside it are on one side only
        assert (g in set(train.groups)) != (g in set(val.groups))
    real = load_source(f"whu:{shared_data('sar-optical', 'whu-opt-sar')}", 64, None, 0, 2)
    assert len(real) == 32 and len(np.unique(real.groups)) == 16
