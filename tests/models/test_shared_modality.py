"""Shared-modality networks and inference API: shapes, band counts, ONNX export, loading, the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models.registry import find_card, sha256_of
from sarcoreg.models.shared_modality import (
    SharedConfig,
    build_unet,
    export_onnx,
    load_shared_model,
    make_nets,
    normalise,
    state_dict_from_onnx,
)
from sarcoreg.training.shared_losses import ssim

from tests.conftest import shared_data


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_build_unet_shapes_and_range() -> None:
    torch.manual_seed(0)
    net = build_unet(2, 3).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 2, 64, 96))
    assert y.shape == (2, 3, 64, 96)
    assert float(y.min()) > 0.0 and float(y.max()) < 1.0
    inv = build_unet(3, 4, sigmoid=False).eval()
    with torch.no_grad():
        z = inv(torch.rand(1, 3, 32, 32))
    assert z.shape == (1, 4, 32, 32)
    assert not isinstance(inv, torch.nn.Sequential)  # no sigmoid: outputs unbounded


@pytest.mark.parametrize("criterion", ["v1", "v2"])
def test_nets_any_band_counts(criterion: str) -> None:
    cfg = SharedConfig(sar_bands=("VV", "VH"), optical_bands=("B02", "B03", "B04", "B08"), channels=5,
                       criterion=criterion)
    nets = make_nets(cfg).eval()
    x, y = torch.rand(1, 2, 64, 64), torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        s, o = nets(x, y)
        assert s.shape == o.shape == (1, 5, 64, 64)
        if criterion == "v1":
            assert nets.sar_inverse(s).shape == (1, 2, 64, 64)
            assert nets.optical_inverse(o).shape == (1, 4, 64, 64)
        else:
            assert nets.sar_inverse is None and nets.optical_inverse is None


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="criterion"):
        SharedConfig(criterion="v3")
    with pytest.raises(ValueError, match="rgb"):
        SharedConfig(optical_bands=("R",), rgb=(2,))
    c = SharedConfig(sar_bands=("VV", "VH"), rgb=(0, 1, 2))
    assert SharedConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_normalise_percentiles_mask_and_flat() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(-12, 4, size=(2, 50, 60)).astype(np.float32)
    img[0, 0, 0] = np.nan
    valid = np.ones((50, 60), bool)
    valid[:, :5] = False
    out = normalise(img, "sar", valid=valid)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.all(out[:, :, :5] == 0) and out[0, 0, 0] == 0
    inside = img[:, :, 5:][np.isfinite(img[:, :, 5:])]
    lo, hi = np.percentile(inside, [0.5, 99.5])  # joint over both bands
    assert np.isclose(out[1, 10, 10], np.clip((img[1, 10, 10] - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert not normalise(np.full((4, 4), 3.0), "optical").any()
    with pytest.raises(ValueError, match="modality"):
        normalise(img, "radar")


def test_onnx_export_agrees_and_feeds_torch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = build_unet(2, 3).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)  # type: ignore[union-attr]
            m.running_var.uniform_(0.5, 1.5)  # type: ignore[union-attr]
    info = export_onnx(net, tmp_path / "sar.onnx", 2, check_size=64)
    assert info["fp16_weights"] and info["max_abs_diff"] < 5e-3 and info["max_abs_diff_fp32"] < 1e-5
    assert info["bytes"] < 13_000_000
    weights = state_dict_from_onnx(tmp_path / "sar.onnx")
    used = [k for k in net.state_dict() if k in weights]
    assert len(used) > 0.9 * len(net.state_dict()) - 60  # all but BN counters and the unused head / attention
    for key, ref in net.state_dict().items():
        if key in weights:
            assert np.allclose(weights[key], ref.numpy(), atol=2e-3 * max(1.0, float(ref.abs().max())))
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "sar.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 2, 96, 160), dtype=np.float32)  # dynamic batch, H, W
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {"x": x})[0] - ref).max() < 5e-3


def _card_folder(tmp_path: Path) -> Path:
    """A model folder with a random-weight 1-SAR / 3-optical shared model (ONNX + card)."""
    torch.manual_seed(2)
    cfg = SharedConfig()
    nets = make_nets(cfg).eval()
    export_onnx(nets.sar, tmp_path / "t-sar.onnx", 1, check_size=64)
    export_onnx(nets.optical, tmp_path / "t-optical.onnx", 3, check_size=64)
    (tmp_path / "cards").mkdir()
    card = {"name": "t", "method": "shared", "file": "t-sar.onnx", "sha256": sha256_of(tmp_path / "t-sar.onnx"),
            "licence": "test", "inputs": {**cfg.to_dict(), "multiple": 32},
            "extra_files": {"optical": "t-optical.onnx"},
            "extra_sha256": {"optical": sha256_of(tmp_path / "t-optical.onnx")}}
    (tmp_path / "cards" / "t.json").write_text(json.dumps(card))
    torch.save({"model": nets.state_dict(), "config": {"model": cfg.to_dict()}}, tmp_path / "best.pt")
    return tmp_path


def test_load_card_backends_agree(tmp_path: Path) -> None:
    folder = _card_folder(tmp_path)
    onnx_model = load_shared_model(folder / "cards" / "t.json", device="cpu", backend="onnx")
    torch_model = load_shared_model(folder / "cards" / "t.json", device="cpu", backend="torch")
    ckpt_model = load_shared_model(folder / "best.pt", device="cpu")
    assert (onnx_model.backend, onnx_model.device) == ("onnx", "CPUExecutionProvider")
    assert (torch_model.backend, torch_model.device) == ("torch", "cpu")
    assert ckpt_model.card is None and onnx_model.card is not None
    assert onnx_model.multiple == 32 and onnx_model.channels == 3
    assert onnx_model.sar_bands == ("VV",) and onnx_model.optical_bands == ("R", "G", "B")
    rng = np.random.default_rng(0)
    sar, opt = rng.random((2, 1, 64, 96), dtype=np.float32), rng.random((2, 3, 64, 96), dtype=np.float32)
    a = onnx_model.transform(sar, "sar")
    assert a.shape == (2, 3, 64, 96) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.abs(a - torch_model.transform(sar, "sar")).max() < 5e-3
    assert np.abs(torch_model.transform(opt, "optical") - ckpt_model.transform(opt, "optical")).max() < 5e-3
    gray = onnx_model.transform(opt[:, :1], "optical")  # gray optical replicated to R = G = B
    assert np.allclose(gray, onnx_model.transform(np.repeat(opt[:, :1], 3, axis=1), "optical"))
    with pytest.raises(ValueError, match="multiples of 32"):
        onnx_model.transform(sar[:, :, :60], "sar")
    with pytest.raises(ValueError, match="band"):
        onnx_model.transform(np.repeat(sar, 2, axis=1), "sar")
    with pytest.raises(ValueError, match="modality"):
        onnx_model.transform(sar, "lidar")


def test_load_card_checksum_mismatch(tmp_path: Path) -> None:
    folder = _card_folder(tmp_path)
    card = json.loads((folder / "cards" / "t.json").read_text())
    card["extra_sha256"]["optical"] = "0" * 64
    (folder / "cards" / "t.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="checksum"):
        load_shared_model(folder / "cards" / "t.json", device="cpu")


def _real_pair() -> tuple[np.ndarray, np.ndarray]:
    """A held-out BigEarthNet pair (v1 test split): SAR VV dB (1, 96, 96), optical R, G, B (3, 96, 96), normalised."""
    z = np.load(shared_data("s1s2", "bigearthnet-configilm", "benv1_pairs", "S2A_MSIL2A_20170613T101031_39_24.npz"))
    sar = normalise(z["s1"][:1], "sar")
    opt = normalise(z["s2_10m"][[2, 1, 0]].astype(np.float32), "optical")
    return sar[:, 12:108, 12:108], opt[:, 12:108, 12:108]


@pytest.mark.parametrize(("name", "min_std"), [("shared-v2", 0.02), ("shared-v1", 0.005)])
def test_shipped_model_on_real_pair(name: str, min_std: float) -> None:
    """v1's shared images have low contrast (the paper stretches them before use), hence its lower bar."""
    from sarcoreg.models import load

    card = find_card(name)
    assert card.method == "shared" and card.inputs["channels"] == 3
    model = load(name, device="cpu")
    assert type(model).__name__ == "SharedModalityModel" and model.backend == "onnx"
    sar, opt = _real_pair()
    s = model.transform(sar[None], "sar")
    o = model.transform(opt[None], "optical")
    assert s.shape == o.shape == (1, 3, 96, 96)
    assert 0.0 <= min(s.min(), o.min()) and max(s.max(), o.max()) <= 1.0
    shared = float(ssim(torch.from_numpy(s), torch.from_numpy(o)))
    raw = float(ssim(torch.from_numpy(np.repeat(sar, 3, 0)[None]), torch.from_numpy(opt[None])))
    assert shared > raw + 0.1
    assert s.std() > min_std and o.std() > min_std  # not degenerate (constant) shared images
