"""Tests of sarcoreg.core.prepare on real Sentinel-1 / Sentinel-2 data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core.prepare import (
    PercentileStretch,
    detect_sar_scale,
    fit_stretch_optical,
    fit_stretch_sar,
    lee_filter,
    looks_like_sar,
    optical_to_gray,
    prepare_optical,
    prepare_sar,
    to_db,
)
from sarcoreg.core.synthetic import gamma_speckle

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BENV1 = DATA / "s1s2" / "bigearthnet-configilm" / "benv1_pairs"
SPATIALIST = DATA / "sar-only" / "spatialist" / "tests_data"


def _benv1_files() -> list[Path]:
    files = sorted(BENV1.glob("*.npz"))
    assert len(files) == 30, f"expected 30 BigEarthNet pairs in {BENV1}"
    return files


def _spatialist_db() -> list[np.ndarray]:
    files = sorted(SPATIALIST.glob("*_db.tif"))
    assert len(files) == 3, f"expected 3 spatialist VV dB GeoTIFFs in {SPATIALIST}"
    return [gdal.Open(str(f)).ReadAsArray().astype(np.float32) for f in files]


# ------------------------------------------------------------------------------- dB conversion


def test_to_db_known_values() -> None:
    x = np.array([1.0, 0.1, 0.01, 10.0, 0.0, -1.0, np.nan])
    inten = to_db(x, "intensity")
    amp = to_db(x, "amplitude")
    np.testing.assert_allclose(inten[:4], [0.0, -10.0, -20.0, 10.0], atol=1e-5)
    np.testing.assert_allclose(amp[:4], [0.0, -20.0, -40.0, 20.0], atol=1e-5)
    for out in (inten, amp):
        assert out.dtype == np.float32
        assert np.isnan(out[4:]).all() and not np.isinf(out).any()
    db = np.array([-12.5, 3.0, np.nan], np.float32)
    np.testing.assert_array_equal(to_db(db, "db")[:2], db[:2])


def test_to_db_masked_array_becomes_nan() -> None:
    x = np.ma.masked_array([0.1, 1.0], mask=[True, False])
    out = to_db(x, "intensity")
    assert np.isnan(out[0]) and out[1] == 0.0


def test_to_db_rejects_unknown_scale() -> None:
    with pytest.raises(ValueError, match="unknown SAR scale"):
        to_db(np.ones(3), "power")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- scale detection


def test_detect_scale_on_real_bigearthnet() -> None:
    """dB always right; intensity vs amplitude right on >= 93 % of real VV, VH and VV+VH samples."""
    right = total = 0
    for f in _benv1_files():
        s1 = np.load(f)["s1"]  # (2, 120, 120) VV, VH in dB
        for sample in (s1[0], s1[1], s1):
            inten = np.power(10.0, sample / 10.0)
            assert detect_sar_scale(sample) == "db", f.name
            right += detect_sar_scale(inten) == "intensity"
            right += detect_sar_scale(np.sqrt(inten)) == "amplitude"
            total += 2
    assert right / total >= 0.93, f"{right}/{total}"


def test_detect_scale_all_three_on_named_real_patches() -> None:
    names = [
        "S2A_MSIL2A_20170613T101031_39_24.npz",
        "S2A_MSIL2A_20170617T113321_48_5.npz",
        "S2A_MSIL2A_20170818T103021_43_48.npz",
        "S2B_MSIL2A_20180417T102019_74_79.npz",
    ]
    for name in names:
        s1 = np.load(BENV1 / name)["s1"]
        inten = np.power(10.0, s1 / 10.0)
        assert detect_sar_scale(s1) == "db"
        assert detect_sar_scale(inten) == "intensity", name
        assert detect_sar_scale(np.sqrt(inten)) == "amplitude", name


def test_detect_scale_on_spatialist_geotiffs() -> None:
    for db in _spatialist_db():
        inten = np.power(10.0, db / 10.0)
        assert detect_sar_scale(db) == "db"
        assert detect_sar_scale(inten) == "intensity"
        assert detect_sar_scale(np.sqrt(inten)) == "amplitude"
        # NaN nodata and zeros (linear nodata) are ignored
        inten_nd = inten.copy()
        inten_nd[:50] = 0.0
        inten_nd[50:60] = np.nan
        assert detect_sar_scale(inten_nd) == "intensity"


def test_detect_scale_rejects_empty_sample() -> None:
    with pytest.raises(ValueError, match="no finite value"):
        detect_sar_scale(np.full((4, 4), np.nan))


# ------------------------------------------------------------------------------- stretch


def test_stretch_fit_on_sample_matches_global_windowwise() -> None:
    db = _spatialist_db()[0]
    global_st = PercentileStretch.fit(db)
    sample_st = PercentileStretch.fit(db[::4, ::4])
    assert abs(sample_st.lo - global_st.lo) < 0.5 and abs(sample_st.hi - global_st.hi) < 0.5
    whole = sample_st.apply(db)
    assert whole.dtype == np.float32 and whole.min() == 0.0 and whole.max() == 1.0
    tiles = np.zeros_like(whole)
    for r in range(0, db.shape[0], 64):
        for c in range(0, db.shape[1], 50):
            tiles[r : r + 64, c : c + 50] = sample_st.apply(db[r : r + 64, c : c + 50])
    np.testing.assert_array_equal(tiles, whole)


def test_stretch_percentiles_and_nan() -> None:
    x = np.arange(1001, dtype=np.float64)
    x_nan = np.concatenate([x, [np.nan] * 50])
    st = PercentileStretch.fit(x_nan, 10.0, 90.0)
    assert st.lo == pytest.approx(100.0) and st.hi == pytest.approx(900.0)
    out = st.apply(np.array([0.0, 100.0, 500.0, 900.0, 2000.0, np.nan]))
    np.testing.assert_allclose(out[:5], [0.0, 0.0, 0.5, 1.0, 1.0])
    assert np.isnan(out[5])
    masked = np.ma.masked_array([1e9, 1.0, 2.0, 3.0], mask=[True, False, False, False])
    assert PercentileStretch.fit(masked, 0, 100).hi == 3.0
    const = PercentileStretch.fit(np.full(10, 4.0))
    assert const.hi > const.lo
    with pytest.raises(ValueError):
        PercentileStretch.fit(np.full(5, np.nan))


# ------------------------------------------------------------------------------- Lee filter


def _cv(x: np.ndarray) -> float:
    return float(np.std(x) / np.mean(x))


def test_lee_reduces_speckle_and_keeps_step_edge() -> None:
    rng = np.random.default_rng(5)
    looks = 4
    truth = np.full((128, 128), 0.05)
    truth[:, 64:] = 0.5  # a 10 dB step edge between columns 63 and 64
    img = truth * gamma_speckle(truth.shape, looks, rng)
    out = lee_filter(img, size=7, looks=looks)
    flat_in, flat_out = img[10:-10, 10:50], out[10:-10, 10:50]
    assert _cv(flat_in) == pytest.approx(0.5, rel=0.1)  # 1 / sqrt(L)
    assert _cv(flat_out) < 0.5 * _cv(flat_in)
    # means preserved on both sides
    assert np.mean(out[:, 10:50]) == pytest.approx(0.05, rel=0.05)
    assert np.mean(out[:, 78:118]) == pytest.approx(0.5, rel=0.05)
    # the edge stays where it was: the largest jump of the row-averaged profile
    profile = np.log(out.mean(axis=0))
    assert int(np.argmax(np.diff(profile))) == 63
    # estimated looks work too and are of the right order
    est = lee_filter(img, size=7)
    assert _cv(est[10:-10, 10:50]) < 0.6 * _cv(flat_in)


def test_lee_nan_aware_and_db_in_linear_domain() -> None:
    rng = np.random.default_rng(1)
    img = 0.1 * gamma_speckle((64, 64), 4, rng)
    img[20:25, 20:25] = np.nan
    out = lee_filter(img, 5, looks=4)
    assert np.isnan(out[20:25, 20:25]).all()
    assert np.isfinite(np.delete(out.ravel(), np.flatnonzero(np.isnan(img.ravel())))).all()
    db = 10 * np.log10(img)
    out_db = lee_filter(db, 5, looks=4, scale="db")
    np.testing.assert_allclose(out_db, 10 * np.log10(out), atol=1e-3, equal_nan=True)
    amp = np.sqrt(img)
    np.testing.assert_allclose(lee_filter(amp, 5, looks=4, scale="amplitude") ** 2, out, rtol=1e-4)


def test_lee_on_real_sar_lowers_local_variation() -> None:
    db = _spatialist_db()[0]
    inten = np.power(10.0, db / 10.0)
    out = lee_filter(db, 5, scale="db")
    d_in = np.nanmedian(np.abs(np.diff(db, axis=1)))
    d_out = np.nanmedian(np.abs(np.diff(out, axis=1)))
    assert d_out < 0.7 * d_in
    assert np.nanmean(10 ** (out / 10)) == pytest.approx(float(np.mean(inten)), rel=0.05)


# ------------------------------------------------------------------------------- optical


def test_optical_to_gray_weights() -> None:
    bands = np.stack([np.full((3, 4), v, np.uint16) for v in (100, 200, 300, 1000)])
    assert optical_to_gray(bands[:1]).tolist() == bands[0].astype(np.float32).tolist()
    assert optical_to_gray(bands[0]).shape == (3, 4)
    np.testing.assert_allclose(optical_to_gray(bands[:2]), 150.0)
    np.testing.assert_allclose(optical_to_gray(bands), 0.299 * 100 + 0.587 * 200 + 0.114 * 300)
    np.testing.assert_allclose(optical_to_gray(bands, [0, 0, 0, 2]), 1000.0)  # normalised
    np.testing.assert_allclose(optical_to_gray(bands, [1, 1, 0, 0]), 150.0)
    with pytest.raises(ValueError, match="4 bands"):
        optical_to_gray(bands, [1, 1])
    with pytest.raises(ValueError, match="sum"):
        optical_to_gray(bands, [1, -1, 0, 0])
    nan_bands = bands.astype(np.float32)
    nan_bands[3, 0, 0] = np.nan
    gray = optical_to_gray(nan_bands)  # band 4 has weight 0: its NaN does not matter
    assert np.isfinite(gray).all()
    assert np.isnan(optical_to_gray(nan_bands, [1, 1, 1, 1])[0, 0])


def test_prepare_optical_and_sar_real_pair_windowwise() -> None:
    d = np.load(BENV1 / "S2A_MSIL2A_20170617T113321_48_5.npz")
    s2 = d["s2_10m"]  # B02, B03, B04, B08
    weights = [0.114, 0.587, 0.299, 0.0]  # luma with Sentinel-2's B, G, R order
    st_opt = fit_stretch_optical(s2[:, ::3, ::3], weights)
    opt = prepare_optical(s2, weights=weights, stretch=st_opt)
    assert opt.shape == (120, 120) and opt.dtype == np.float32
    assert 0.0 <= opt.min() and opt.max() <= 1.0 and opt.std() > 0.05
    win = prepare_optical(s2[:, 30:90, 40:100], weights=weights, stretch=st_opt)
    np.testing.assert_array_equal(win, opt[30:90, 40:100])

    s1_amp = np.power(10.0, d["s1"] / 20.0)
    st_sar = fit_stretch_sar(s1_amp[:, ::2, ::2], "amplitude")
    sar = prepare_sar(s1_amp, scale="amplitude", stretch=st_sar)
    sar_db = prepare_sar(d["s1"], scale="db", stretch=st_sar)
    np.testing.assert_allclose(sar, sar_db, atol=1e-5)
    first = prepare_sar(d["s1"], scale="db", combine="first")
    np.testing.assert_allclose(first, PercentileStretch.fit(d["s1"][0]).apply(d["s1"][0]))
    auto = prepare_sar(s1_amp, scale="auto")
    np.testing.assert_allclose(auto, prepare_sar(d["s1"], scale="db"), atol=1e-5)
    filt = prepare_sar(d["s1"], scale="db", speckle_filter=True, stretch=st_sar)
    assert filt.shape == (120, 120) and np.nanmax(filt) <= 1.0


def test_looks_like_sar_on_real_images() -> None:
    for db in _spatialist_db():
        inten = np.power(10.0, db / 10.0)
        assert looks_like_sar(db) and looks_like_sar(inten) and looks_like_sar(np.sqrt(inten))
    n_opt_as_sar = 0
    for f in _benv1_files()[:10]:
        d = np.load(f)
        s1 = d["s1"]
        assert looks_like_sar(s1) and looks_like_sar(np.power(10.0, s1[0] / 20.0)), f.name
        assert not looks_like_sar(d["s2_10m"]), f.name  # 4 bands
        n_opt_as_sar += sum(looks_like_sar(b) for b in d["s2_10m"])
    # single optical bands are the heuristic's weak case (measured: 13 of these 40)
    assert n_opt_as_sar <= 14
    srif = DATA / "sar-optical" / "srif" / "dataset" / "Optical-SAR"
    opt_as_sar = sar_missed = 0
    for k in range(1, 21):
        opt = cv2.imread(str(srif / f"pair{k}_1.jpg"), cv2.IMREAD_GRAYSCALE)
        sar = cv2.imread(str(srif / f"pair{k}_2.jpg"), cv2.IMREAD_GRAYSCALE)
        opt_as_sar += looks_like_sar(opt)
        sar_missed += not looks_like_sar(sar)
    assert sar_missed == 0 and opt_as_sar <= 2
