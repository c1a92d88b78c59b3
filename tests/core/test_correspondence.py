"""Dense correspondence maps: known shifts on real imagery, batching equivalence, peaks, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sarcoreg.core.correspondence import (
    correspondence_maps,
    find_peaks,
    grid_positions,
    make_cases,
    matching_errors,
    plot_correspondence_map,
    plot_error_histograms,
)
from sarcoreg.core.synthetic import gamma_speckle

from tests.conftest import shared_data


class NCCDescriptor:
    """Hand-built descriptor: the patch itself, zero mean, unit length (cosine = NCC)."""

    name = "ncc-descriptor"
    device = "numpy"

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size
        self.calls = 0

    def _embed(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        assert x.shape[1:] == (self.patch_size, self.patch_size)
        d = np.asarray(x, np.float64).reshape(len(x), -1)
        d = d - d.mean(axis=1, keepdims=True)
        return (d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    embed_optical = _embed
    embed_sar = _embed


class ScoreOnly:
    """A patch model with only ``score`` (the NCC of each pair)."""

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size
        self._d = NCCDescriptor(patch_size)

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (self._d._embed(a) * self._d._embed(b)).sum(axis=1)


@pytest.fixture(scope="module")
def satellite() -> tuple[np.ndarray, np.ndarray]:
    """A real optical satellite image (WHU-OPT-SAR, 1000 x 1000, gray in [0, 1]) and a speckled copy."""
    from osgeo import gdal

    ds = gdal.Open(str(shared_data("sar-optical", "whu-opt-sar", "data", "optical", "WHU-OPT-SAR.tif")))
    gray = ds.ReadAsArray().astype(np.float32).mean(axis=0) / 255
    speckled = np.clip(gray * gamma_speckle(gray.shape, 4.0, np.random.default_rng(0)), 0, 1)
    return gray, speckled.astype(np.float32)


def test_grid_positions_contain_centre() -> None:
    assert list(grid_positions(9, 1)) == list(range(9))
    assert list(grid_positions(9, 3)) == [1, 4, 7]
    assert 16 in grid_positions(33, 5)
    with pytest.raises(ValueError):
        grid_positions(9, 0)


def test_make_cases_shift_convention(satellite: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, _ = satellite
    t, s, shifts = make_cases([(rgb, rgb)], 32, 64, per_pair=5, seed=3)
    assert t.shape == (5, 32, 32) and s.shape == (5, 64, 64) and np.abs(shifts).max() <= 14
    for k in range(5):  # the template's content sits at corner R + shift of the search region
        u, v = (16 + shifts[k]).astype(int)
        np.testing.assert_array_equal(s[k, v : v + 32, u : u + 32], t[k])
    with pytest.raises(ValueError, match="too small"):
        make_cases([(rgb[:60, :60], rgb[:60, :60])], 32, 64)


def test_finds_known_shift_on_real_image(satellite: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, nir = satellite
    temps, search, truth = make_cases([(rgb, nir)], 32, 64, per_pair=10, seed=0)
    model = NCCDescriptor(32)
    maps = correspondence_maps(model, temps, search, batch_size=400)
    assert maps.shape == (10, 33, 33) and np.isfinite(maps).all()
    assert maps.max() <= 1.0 + 1e-5
    pk = find_peaks(maps)
    err = matching_errors(pk.shift, truth)
    assert (err < 1.0).sum() >= 8, err
    # Unrelated search regions (another part of the image) give less reliable peaks.
    other = np.roll(search, 3, axis=0)
    rel_wrong = find_peaks(correspondence_maps(model, temps, other)).reliability
    good = err < 1.0
    assert np.median(pk.reliability[good]) > np.median(rel_wrong)


def test_batching_and_stride_equivalence(satellite: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, nir = satellite
    temps, search, truth = make_cases([(rgb, nir)], 32, 64, per_pair=4, seed=1)
    model = NCCDescriptor(32)
    dense, n_dense = correspondence_maps(model, temps, search, batch_size=1000, return_evaluations=True)
    calls_big = model.calls
    one = correspondence_maps(model, temps, search, batch_size=1)
    assert model.calls - calls_big == 1 + 4 * 33 * 33  # one call for the templates, one per window
    np.testing.assert_allclose(one, dense, atol=1e-6)
    assert n_dense == 4 * 33 * 33 and calls_big == 1 + 5  # 4356 windows in batches of 1000
    coarse, n_coarse = correspondence_maps(model, temps, search, stride=4, return_evaluations=True)
    assert n_coarse < n_dense / 3
    seen = np.isfinite(coarse)
    np.testing.assert_allclose(coarse[seen], dense[seen], atol=1e-6)
    np.testing.assert_array_equal(find_peaks(coarse).shift.round(), find_peaks(dense).shift.round())
    # A score-only patch model gives the same map (one pair evaluation per window).
    np.testing.assert_allclose(correspondence_maps(ScoreOnly(32), temps, search, batch_size=97), dense, atol=1e-5)
    # Only the chips in `rows`; the others stay NaN.
    part = correspondence_maps(model, temps, search, rows=[2])
    assert np.isnan(part[[0, 1, 3]]).all() and np.isfinite(part[2]).all()


def test_templates_resampled_to_model_size(satellite: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, nir = satellite
    temps, search, truth = make_cases([(rgb, nir)], 64, 96, per_pair=6, seed=2)
    maps = correspondence_maps(NCCDescriptor(32), temps, search, stride=2)
    assert maps.shape == (6, 33, 33)
    err = matching_errors(find_peaks(maps).shift, truth)
    assert (err < 1.5).sum() >= 5, err


def test_onnx_random_encoder_batches_equal_one_window_at_a_time(tmp_path: Path,
                                                                satellite: tuple[np.ndarray, np.ndarray]) -> None:
    torch = pytest.importorskip("torch")  # torch is a declared dependency of the training extras
    from sarcoreg.models import load
    from sarcoreg.models.aae import AAEConfig, DualAAE, export_encoders_onnx, export_onnx
    from sarcoreg.models.descriptor_model import load_descriptor_model

    torch.manual_seed(0)
    net = DualAAE(AAEConfig(patch_size=32, width=4, latent_dim=16))
    pair = export_onnx(net, tmp_path / "rand.onnx")
    export_encoders_onnx(net, pair)
    rgb, nir = satellite
    temps, search, _ = make_cases([(rgb, nir)], 32, 40, per_pair=2, seed=4)
    enc = load_descriptor_model(pair, device="cpu", batch_size=50)
    batched = correspondence_maps(enc, temps, search, batch_size=50)
    pm = load(pair, device="cpu")
    loop = np.empty_like(batched)
    for k in range(2):
        for v in range(9):
            for u in range(9):
                loop[k, v, u] = pm.score(temps[k], search[k, v : v + 32, u : u + 32])[0]
    np.testing.assert_allclose(batched, loop, atol=1e-4)


def test_find_peaks_subpixel_and_reliability() -> None:
    yy, xx = np.mgrid[-10:11, -10:11].astype(float)
    clean = np.exp(-((xx - 2.3) ** 2 + (yy + 1.6) ** 2) / (2 * 1.5**2))
    noise = np.random.default_rng(0).random((21, 21))
    pk = find_peaks(np.stack([clean, noise]))
    np.testing.assert_allclose(pk.shift[0], [2.3, -1.6], atol=0.15)
    assert pk.reliability[0] > 0.9 > 0.2 > pk.reliability[1]
    assert not pk.on_border[0]


def test_plots(tmp_path: Path, satellite: tuple[np.ndarray, np.ndarray]) -> None:
    rgb, nir = satellite
    temps, search, truth = make_cases([(rgb, nir)], 32, 64, per_pair=3, seed=5)
    maps = correspondence_maps(NCCDescriptor(32), temps, search)
    png = plot_correspondence_map(maps[0], tmp_path / "map.png", template=temps[0], search=search[0],
                                  true_shift=(truth[0, 0], truth[0, 1]), title="tie point 0")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10000
    assert matching_errors(np.array([[3.0, 4.0]]), np.zeros((1, 2)))[0] == pytest.approx(5.0)
    rng = np.random.default_rng(0)
    hist = plot_error_histograms({"100 %": rng.gamma(2, 2, 300), "25 %": np.r_[rng.gamma(3, 3, 300), np.nan]},
                                 tmp_path / "hist.png")
    assert hist.read_bytes()[:4] == b"\x89PNG" and hist.stat().st_size > 10000
    with pytest.raises(ValueError):
        plot_error_histograms({}, tmp_path / "none.png")
