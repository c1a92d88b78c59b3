"""Aligned-pair loaders on tiny fake folder layouts (QXS-SAROPT, SEN1-2, SARptical, generic) and real S1/S2 crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sarcoreg.training.pair_datasets import (
    AlignedPatches,
    bigearthnet_npz,
    concat_pools,
    eval_pairs,
    load_source,
    qxs_saropt,
    sarptical,
    sen12,
    split_pool,
    synthetic_pool,
)

from tests.conftest import shared_data


def _write_pair(sar_path: Path, opt_path: Path, value: int, size: int = 256) -> None:
    """A SAR image of constant ``value`` (gray) and an RGB optical image of ``value + 1``."""
    sar_path.parent.mkdir(parents=True, exist_ok=True)
    opt_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(sar_path), np.full((size, size), value, np.uint8))
    cv2.imwrite(str(opt_path), np.full((size, size, 3), value + 1, np.uint8))


def test_qxs_saropt_layout_matched_by_name(tmp_path: Path) -> None:
    for k, v in ((3, 10), (1, 20), (2, 30)):
        _write_pair(tmp_path / "sar_256_oc_0.2" / f"{k}.png", tmp_path / "opt_256_oc_0.2" / f"{k}.png", v)
    _write_pair(tmp_path / "sar_256_oc_0.2" / "9.png", tmp_path / "elsewhere" / "9.png", 99)  # no optical partner
    pool = qxs_saropt(tmp_path, patch_size=64)
    assert len(pool) == 3 and pool.sar.shape == (3, 64, 64) and pool.sar.dtype == np.uint8
    assert pool.names == ["1", "2", "3"]
    assert [int(x) for x in pool.sar[:, 0, 0]] == [20, 30, 10]
    assert [int(x) for x in pool.opt[:, 5, 5]] == [21, 31, 11]  # RGB -> gray keeps a gray value
    assert len(load_source(str(tmp_path), 64)) == 3  # detected by layout
    assert len(qxs_saropt(tmp_path, 64, limit=2)) == 2


def test_sen12_layout_pairs_s1_with_s2(tmp_path: Path) -> None:
    for roi, v in (("ROIs1158_spring", 40), ("ROIs1868_summer", 50)):
        for k in (1, 2):
            name = f"{roi}_s1_{k}_p{k}.png"
            _write_pair(tmp_path / roi / f"s1_{k}" / name,
                        tmp_path / roi / f"s2_{k}" / name.replace("_s1_", "_s2_"), v + k)
    pool = sen12(tmp_path, patch_size=32)
    assert len(pool) == 4
    assert np.array_equal(pool.opt[:, 0, 0].astype(int), pool.sar[:, 0, 0].astype(int) + 1)
    spring = load_source(f"sen12-spring:{tmp_path}", 32)
    assert len(spring) == 2 and all("spring" in n for n in spring.names)
    with pytest.raises(FileNotFoundError, match="no SEN1-2 pairs"):
        sen12(tmp_path / "ROIs1158_spring")


def test_sarptical_and_generic_folders(tmp_path: Path) -> None:
    for k in range(3):
        _write_pair(tmp_path / "SAR_patches" / f"p{k}.tif", tmp_path / "optical_patches" / f"p{k}.png", 60 + k, 112)
    pool = sarptical(tmp_path, patch_size=112)
    assert pool.sar.shape == (3, 112, 112)
    assert len(load_source(f"folders:{tmp_path / 'SAR_patches'},{tmp_path / 'optical_patches'}", 64)) == 3
    with pytest.raises(FileNotFoundError, match="needs a folder named like"):
        sarptical(tmp_path / "SAR_patches")
    with pytest.raises(ValueError, match="qxs:ROOT"):
        load_source(str(tmp_path / "nothing-here"))


def test_pools_split_and_eval_pairs() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (12, 16, 16), dtype=np.uint8)
    pool = AlignedPatches(img, img.copy(), np.repeat(np.arange(6), 2))
    train, val = split_pool(pool, 0.34, seed=1)
    assert len(train) + len(val) == 12 and not set(train.groups) & set(val.groups)
    s, o, y = eval_pairs(val, seed=0)
    n = len(val)
    assert np.array_equal(s[:n], o[:n]) and y[:n].all() and not y[n:].any()
    assert np.all(val.groups[s[n:]] != val.groups[o[n:]])
    both = concat_pools([pool, pool])
    assert len(np.unique(both.groups)) == 12
    with pytest.raises(ValueError, match="different patch sizes"):
        concat_pools([pool, AlignedPatches(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8),
                                           np.arange(2))])


def test_real_s1s2_crops_and_synthetic_partners() -> None:
    pool = bigearthnet_npz(shared_data("s1s2", "bigearthnet-configilm"), patch_size=64, crops_per_pair=2, seed=0)
    assert pool.sar.shape == (108, 64, 64)
    assert len(np.unique(pool.groups)) == 54
    # real SAR and optical are different images of one place: correlated, but far from identical
    assert float(np.abs(pool.sar.astype(float) - pool.opt.astype(float)).mean()) > 10.0
    syn = synthetic_pool(pool.opt[:4], seed=1, groups=pool.groups[:4])
    assert syn.sar.shape == (4, 64, 64) and np.array_equal(syn.opt, pool.opt[:4])
    assert np.array_equal(syn.groups, pool.groups[:4])
