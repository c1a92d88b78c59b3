"""Shared-modality training: losses, SSIM windows, loaders on the real data folders, a resumable run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models.shared_modality import SharedConfig, load_shared_model
from sarcoreg.training import shared_data as sd
from sarcoreg.training.shared_losses import (
    LossWeights,
    dissim,
    image_metrics,
    masked_mse,
    shared_loss_v1,
    shared_loss_v2,
    ssim,
    ssim_window,
)

from tests.conftest import shared_data


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("window", ["gaussian11", "uniform5"])
def test_ssim_identity_and_range(window: str) -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 40, 40, generator=g)
    assert abs(float(dissim(a, a, window=window))) < 1e-5
    b = torch.rand(2, 3, 40, 40, generator=g)
    s = float(ssim(a, b, window=window))
    assert -1.0 <= s < 0.2  # independent noise: about 0
    assert float(ssim(a, 1.0 - a, window=window)) < -0.5  # inverted contrast: negative
    assert ssim(a, b, window=window, reduction="none").shape == (2,)


def test_ssim_windows() -> None:
    g = ssim_window("gaussian11")
    u = ssim_window("uniform5")
    assert g.shape == (11, 11) and u.shape == (5, 5)
    assert abs(float(g.sum()) - 1) < 1e-6 and abs(float(u.sum()) - 1) < 1e-6
    assert float(g[5, 5]) > float(g[0, 0])
    with pytest.raises(ValueError, match="window"):
        ssim_window("box")


def test_ssim_matches_direct_formula_for_one_window() -> None:
    """On an image exactly one 5 x 5 window big, SSIM is the textbook formula on the whole image."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 1, 5, 5, generator=g), torch.rand(1, 1, 5, 5, generator=g)
    ma, mb = a.mean(), b.mean()
    va, vb = ((a - ma) ** 2).mean(), ((b - mb) ** 2).mean()
    cov = ((a - ma) * (b - mb)).mean()
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    assert abs(float(ssim(a, b, window="uniform5")) - float(ref)) < 1e-5


def test_mask_excludes_pixels() -> None:
    a = torch.zeros(1, 3, 48, 48)
    b = a.clone()
    b[..., :, 30:] = torch.rand(1, 3, 48, 18)  # differ only on the right
    valid = torch.ones(1, 1, 48, 48)
    valid[..., 24:] = 0
    assert float(masked_mse(a, b, valid)) == 0.0
    assert abs(float(dissim(a, b, valid=valid))) < 1e-6
    assert float(dissim(a, b)) > 0.1


def test_v2_stop_gradient_and_weights() -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.rand(1, 3, 32, 32, generator=g).requires_grad_(True)
    o = torch.rand(1, 3, 32, 32, generator=g).requires_grad_(True)
    gray = torch.rand(1, 1, 32, 32, generator=g)
    only_so = LossWeights(alpha=0.0, beta=0.0, gamma=3.0, v2_stop_gradient=True)
    loss, parts = shared_loss_v2(s, o, gray, only_so)
    loss.backward()
    assert s.grad is None or float(s.grad.abs().max()) == 0.0  # the stop-gradient really stops it
    assert o.grad is not None and float(o.grad.abs().max()) > 0
    s.grad, o.grad = None, None
    loss, _ = shared_loss_v2(s, o, gray, LossWeights(alpha=0.0, beta=0.0, gamma=3.0, v2_stop_gradient=False))
    loss.backward()
    assert s.grad is not None and float(s.grad.abs().max()) > 0
    w = LossWeights.paper("v2")
    assert (w.alpha, w.beta, w.gamma, w.v2_stop_gradient, w.window) == (16.0, 1.0, 3.0, True, "gaussian11")
    total, parts = shared_loss_v2(s, o, gray)
    expect = parts["mse"] + 3 * parts["dissim_so"] + 16 * parts["dissim_gray"]
    assert abs(float(total.detach()) - expect) < 1e-4
    # identical shared images whose channel mean is the optical gray: zero loss
    same = gray.repeat(1, 3, 1, 1)
    zero, _ = shared_loss_v2(same, same, gray)
    assert abs(float(zero)) < 1e-5


def test_v1_terms() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(1, 2, 32, 32, generator=g), torch.rand(1, 4, 32, 32, generator=g)
    s = torch.rand(1, 3, 32, 32, generator=g)
    perfect, parts = shared_loss_v1(x, y, s, s, x, y)
    assert abs(float(perfect)) < 1e-5 and parts["rec_sar"] < 1e-5
    w = LossWeights.paper("v1")
    assert (w.alpha, w.beta, w.gamma, w.eta) == (1.0, 3.0, 16.0, 1.0)
    o = torch.rand(1, 3, 32, 32, generator=g)
    loss, p = shared_loss_v1(x, y, s, o, x * 0.5, y)
    expect = p["rec_sar"] + p["rec_opt"] + 3 * p["mse"] + 16 * p["dissim_so"]
    assert abs(float(loss) - expect) < 1e-4 and p["rec_sar"] > 0


def test_image_metrics() -> None:
    a = torch.full((1, 3, 32, 32), 0.5)
    m = image_metrics(a, a + 0.1)
    assert abs(m["rmse"] - 0.1) < 1e-6 and abs(m["psnr"] - 20.0) < 1e-3
    assert image_metrics(a, a)["psnr"] == 100.0


# ---------------------------------------------------------------------------------------------- loaders


def _check(scenes: list[sd.ScenePair], n_sar: int = 1, n_opt: int = 3) -> None:
    assert scenes
    for sc in scenes:
        assert sc.sar.shape[0] == n_sar and sc.optical.shape[0] == n_opt
        assert sc.sar.shape[1:] == sc.optical.shape[1:] == sc.valid.shape
        assert sc.sar.dtype == sc.optical.dtype == np.float32
        assert 0.0 <= sc.sar.min() and sc.sar.max() <= 1.0 and 0.0 <= sc.optical.min() and sc.optical.max() <= 1.0
        assert sc.valid.mean() > 0.2


def test_bigearthnet_configilm_loader() -> None:
    scenes = sd.bigearthnet_configilm(shared_data("s1s2", "bigearthnet-configilm"), ("VV", "VH"),
                                      ("B02", "B03", "B04", "B08"))
    _check(scenes, 2, 4)
    train, held = sd.split_holdout(scenes)
    assert len(held) == 10 and len(train) == 47  # BigEarthNet v1 test split held out; 3 mosaics train
    mosaic = next(s for s in scenes if "mosaic" in s.name and s.shape == (600, 240))
    assert 0.5 < mosaic.valid.mean() < 1.0  # the missing cells are masked
    rgb = sd.bigearthnet_configilm(shared_data("s1s2", "bigearthnet-configilm"), ("VV",), ("R", "G", "B"))
    z = np.load(shared_data("s1s2", "bigearthnet-configilm", "benv1_pairs", f"{rgb[0].name}.npz"))
    red = sd.normalise(z["s2_10m"][[2, 1, 0]].astype(np.float32), "optical", valid=rgb[0].valid)[0]
    assert np.abs(rgb[0].optical[0] - red).max() < 1e-6  # R = B04 first


def test_srif_osmnet_whu_loaders() -> None:
    srif = sd.srif(shared_data("sar-optical", "srif"), limit=12)
    _check(srif)
    assert any(s.holdout for s in srif) and all(s.shape == (256, 256) for s in srif)
    assert all(s.valid.mean() < 0.9 for s in srif)  # the rotated footprint's black corners are masked
    # the warped optical lines up with the SAR: gradient correlation higher than for a shifted copy
    sc = srif[0]
    gs, go = np.gradient(sc.sar[0]), np.gradient(sc.optical[0])
    mag_s, mag_o = np.hypot(*gs), np.hypot(*go)
    m = sc.valid
    aligned = np.corrcoef(mag_s[m], mag_o[m])[0, 1]
    shifted = np.corrcoef(mag_s[m], np.roll(mag_o, 6, axis=1)[m])[0, 1]
    assert aligned > shifted
    _check(sd.osmnet(shared_data("sar-optical", "osmnet", "ims")))
    whu = sd.whu(shared_data("sar-optical", "whu-opt-sar"))
    _check(whu)
    assert [s.holdout for s in whu] == [False, True] and whu[0].shape == (1000, 736)


def test_paired_files_multisenge_layout(tmp_path: Path) -> None:
    """MultiSenGE layout: s1<ID>.tif (2-band linear sigma0) / s2<ID>.tif (10 bands), written from real S1/S2."""
    from osgeo import gdal

    z = np.load(shared_data("s1s2", "bigearthnet-configilm", "benv1_pairs", "S2A_MSIL2A_20170613T101031_39_24.npz"))
    lin = (10.0 ** (z["s1"] / 10.0)).astype(np.float32)
    s2 = np.concatenate([z["s2_10m"][:3], np.repeat(z["s2_10m"][3:], 7, axis=0)]).astype(np.float32)
    for name, arr in ((f"s1{17}.tif", lin), (f"s2{17}.tif", s2), ("s1_only99.tif", lin)):
        ds = gdal.GetDriverByName("GTiff").Create(str(tmp_path / name), 120, 120, arr.shape[0], gdal.GDT_Float32)
        for k in range(arr.shape[0]):
            ds.GetRasterBand(k + 1).WriteArray(arr[k])
        ds = None
    scenes = sd.multisenge(tmp_path)
    _check(scenes)
    assert [s.name for s in scenes] == ["17"]
    ref = sd.make_pair(z["s1"][:1], z["s2_10m"][[2, 1, 0]].astype(np.float32), "r", "s1s2")
    assert np.abs(scenes[0].sar - ref.sar).max() < 1e-3  # linear sigma0 converted to dB, then normalised
    assert np.abs(scenes[0].optical - ref.optical).max() < 1e-5  # bands (B4, B3, B2)
    assert len(sd.load_spec(f"pairs:{tmp_path}:s1{{id}}.tif:s2{{id}}.tif")) == 1


def test_sen12_layout(tmp_path: Path) -> None:
    import cv2

    sar = cv2.imread(str(shared_data("sar-optical", "osmnet", "ims", "sar1.png")), cv2.IMREAD_GRAYSCALE)
    opt = cv2.imread(str(shared_data("sar-optical", "osmnet", "ims", "opt1.png")), cv2.IMREAD_GRAYSCALE)
    (tmp_path / "ROIs1158_spring" / "s1_1").mkdir(parents=True)
    (tmp_path / "ROIs1158_spring" / "s2_1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "ROIs1158_spring" / "s1_1" / "ROIs1158_spring_s1_1_p30.png"), sar)
    cv2.imwrite(str(tmp_path / "ROIs1158_spring" / "s2_1" / "ROIs1158_spring_s2_1_p30.png"), cv2.merge([opt] * 3))
    scenes = sd.sen12(tmp_path)
    _check(scenes)
    assert scenes[0].name == "ROIs1158_spring_s1_1_p30"


def test_crop_sampler_and_synthetic() -> None:
    scenes = sd.osmnet(shared_data("sar-optical", "osmnet", "ims"))
    train, _ = sd.split_holdout(scenes)
    syn = sd.synthetic_partners(train, n_sar=1, copies=1, seed=3)
    _check(syn)
    assert len(syn) == len(train) and all(s.source == "synthetic" for s in syn)
    sampler = sd.CropSampler(train + syn, crop=96, seed=0)
    state = sampler.state()
    x, y, v = sampler.batch(3)
    assert x.shape == (3, 1, 96, 96) and y.shape == (3, 3, 96, 96) and v.shape == (3, 1, 96, 96)
    sampler.set_state(state)
    x2, _, _ = sampler.batch(3)
    assert np.array_equal(x, x2)  # resumable
    with pytest.raises(ValueError, match="multiple of 32"):
        sd.CropSampler(train, crop=100)


# ---------------------------------------------------------------------------------------------- training


def test_train_three_steps_and_resume(tmp_path: Path) -> None:
    """A tiny real run (2 SAR + 4 optical bands, v1 with inverses), then resumed for 2 more steps."""
    from sarcoreg.training.shared_cli import shared_main

    data = shared_data("s1s2", "bigearthnet-configilm")
    argv = ["--data", f"bigearthnet-configilm:{data}", "--criterion", "v1", "--sar-bands", "VV,VH",
            "--optical-bands", "B02,B03,B04,B08", "--rgb", "0,1,2", "--crop", "64", "--batch-size", "2",
            "--max-steps", "3", "--eval-every", "2", "--warmup-steps", "2", "--threads", "1", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "run")]
    assert shared_main(argv) == 0
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert [h["step"] for h in hist] == [2, 3]
    assert all(np.isfinite(h["val_loss"]) and 0 <= h["val_ssim"] <= 1 for h in hist)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["baseline"]["pairs"] == 10 and summary["steps"] == 3
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 3 and "sar_inverse.encoder._conv_stem.weight" in ck["model"]
    argv[argv.index("--max-steps") + 1] = "5"
    assert shared_main([*argv, "--resume", str(tmp_path / "run" / "last.pt")]) == 0
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["history"]
    assert [h["step"] for h in hist] == [2, 3, 4, 5]
    model = load_shared_model(tmp_path / "run", device="cpu")
    assert model.backend == "torch" and model.sar_bands == ("VV", "VH") and model.config == SharedConfig(
        ("VV", "VH"), ("B02", "B03", "B04", "B08"), 3, "v1", (0, 1, 2))
    out = model.transform(np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32), "optical")
    assert out.shape == (1, 3, 64, 64)


def test_train_job_writes_a_loadable_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's train job (QGIS *Train a model*): run, ONNX export, card, then load by name."""
    from sarcoreg.core.progress import Progress
    from sarcoreg.core.train_job import train_argv
    from sarcoreg.models import load
    from sarcoreg.models.registry import MODEL_PATH_ENV, check_card, find_card
    from sarcoreg.training.job import run_from_params

    params = {"method": "shared", "data": [f"osmnet:{shared_data('sar-optical', 'osmnet', 'ims')}"],
              "out_dir": str(tmp_path / "run"), "model_name": "my-shared", "model_folder": str(tmp_path / "models"),
              "epochs": 1, "steps_per_epoch": 2, "threads": 1, "device": "cpu", "batch_size": 2,
              "extra_args": ["--crop", "64"]}
    argv = train_argv(params)
    assert argv[0] == "shared" and "--steps-per-epoch" in argv
    res = run_from_params(params, Progress())
    assert res["epochs_done"] >= 1
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path / "models"))
    card = find_card("my-shared")
    assert card.method == "shared" and set(card.all_files()) == {"main", "optical"}
    assert check_card(card)["ok"]
    assert card.metrics["table1_held_out"]["none"]["pairs"] == 1
    # a 2-step network is numerically arbitrary: agreement itself is tested in test_shared_modality
    assert set(card.metrics["onnx"]) == {"sar", "optical"}
    assert np.isfinite(card.metrics["onnx_vs_torch_real_pairs_max_abs_diff"])
    model = load("my-shared", device="cpu")
    assert model.transform(np.zeros((1, 1, 64, 64), np.float32), "sar").shape == (1, 3, 64, 64)
