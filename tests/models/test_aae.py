"""The dual adversarial autoencoder: shapes, descriptors, state-dict round trip, ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models import load
from sarcoreg.models.aae import (
    AAEConfig,
    AAEInference,
    Decoder,
    DualAAE,
    Encoder,
    aae_from_state_dict,
    encoder_paths,
    export_encoders_onnx,
    export_onnx,
)
from sarcoreg.models.descriptor_model import OnnxDescriptorModel, load_descriptor_model


def _tiny(patch: int = 32) -> DualAAE:
    torch.manual_seed(0)
    return DualAAE(AAEConfig(patch_size=patch, width=4, latent_dim=16)).eval()


@pytest.mark.parametrize("patch", [32, 64])
def test_encoder_decoder_shapes(patch: int) -> None:
    cfg = AAEConfig(patch_size=patch, width=4, latent_dim=24)
    enc, dec = Encoder(cfg, (0.5, 0.2)), Decoder(cfg)
    z = enc(torch.rand(3, 1, patch, patch))
    assert z.shape == (3, 24)
    assert dec(z).shape == (3, 1, patch, patch)
    # VGG11: eight 3x3 convolutions with BN + LeakyReLU 0.2, five max-poolings.
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8, 16, 16, 32, 32, 32, 32]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in enc.features) == 5
    assert all(m.negative_slope == 0.2 for m in enc.features if isinstance(m, torch.nn.LeakyReLU))
    ups = [m for m in dec.up if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(ups) == 5 and all(u.stride == (2, 2) and u.kernel_size == (3, 3) for u in ups)


def test_paper_size_and_bad_patch_size() -> None:
    net = DualAAE()
    assert net.config.patch_size == 128 and net.config.latent_dim == 256
    assert net.enc_sar.fc.in_features == 512 * 4 * 4
    with pytest.raises(ValueError, match="multiple of 32"):
        AAEConfig(patch_size=100)


def test_branches_do_not_share_weights_and_outputs() -> None:
    net = _tiny()
    assert net.enc_sar.features[0].weight.data_ptr() != net.enc_opt.features[0].weight.data_ptr()
    x = torch.rand(2, 1, 32, 32)
    out = net(x, torch.rand(5, 1, 32, 32))
    assert out["z_opt"].shape == (2, 16) and out["z_sar"].shape == (5, 16)
    assert out["rec_sar"].shape == out["target_sar"].shape == (5, 1, 32, 32)
    # Standardisation with the paper's statistics: optical N(0.45, 0.15).
    torch.testing.assert_close(out["target_opt"], (x - 0.45) / 0.15)


def test_inference_is_cosine_of_unit_descriptors() -> None:
    inf = AAEInference(_tiny())
    a, b = torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        da, db = inf.embed_optical(a), inf.embed_sar(b)
        s = inf(a, b)
    torch.testing.assert_close(da.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(s, torch.nn.functional.cosine_similarity(da, db))
    assert float(s.abs().max()) <= 1.0 + 1e-6


def test_state_dict_round_trip_infers_architecture() -> None:
    net = _tiny(64)
    back = aae_from_state_dict(net.state_dict())
    assert back.config == net.config
    enc_only = {k: v for k, v in net.state_dict().items() if k.startswith("enc_")}
    back2 = aae_from_state_dict(enc_only).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back2.enc_sar(x), net.enc_sar(x))
    with pytest.raises(ValueError, match="not an AAE state dict"):
        aae_from_state_dict({"tower_a.x": torch.zeros(1)})


def test_onnx_exports_match_torch(tmp_path: Path) -> None:
    net = _tiny()
    pair = export_onnx(net, tmp_path / "aae.onnx")
    opt_path, sar_path = export_encoders_onnx(net, pair)
    assert (opt_path, sar_path) == encoder_paths(pair)
    rng = np.random.default_rng(1)
    a = rng.random((7, 32, 32), dtype=np.float32)
    b = rng.random((7, 32, 32), dtype=np.float32)
    inf = AAEInference(net)
    with torch.no_grad():
        ref = inf(torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None])).numpy()
        da = inf.embed_optical(torch.from_numpy(a[:, None])).numpy()
        db = inf.embed_sar(torch.from_numpy(b[:, None])).numpy()
    # The pair graph through the patch-model contract ...
    pm = load(pair, device="cpu")
    assert pm.patch_size == 32
    np.testing.assert_allclose(pm.score(a, b), ref, atol=1e-4)
    # ... and the two encoder graphs.
    dm = load_descriptor_model(pair, device="cpu", batch_size=3)
    assert isinstance(dm, OnnxDescriptorModel)
    np.testing.assert_allclose(dm.embed_optical(a), da, atol=1e-4)
    np.testing.assert_allclose(dm.embed_sar(b), db, atol=1e-4)
    np.testing.assert_allclose(dm.score(a, b), ref, atol=1e-4)
    with pytest.raises(ValueError, match="32, 32"):
        dm.embed_sar(np.zeros((1, 16, 16), np.float32))


def test_descriptor_model_from_checkpoint(tmp_path: Path) -> None:
    net = _tiny()
    torch.save({"model": net.state_dict()}, tmp_path / "best.pt")
    dm = load_descriptor_model(tmp_path / "best.pt", device="cpu")
    x = np.random.default_rng(2).random((3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = AAEInference(net).embed_optical(torch.from_numpy(x[:, None])).numpy()
    np.testing.assert_allclose(dm.embed_optical(x), ref, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="optical encoder"):
        export_onnx(net, tmp_path / "lonely.onnx")
        load_descriptor_model(tmp_path / "lonely.onnx", device="cpu")


def test_registry_loads_aae_checkpoint_as_patch_model(tmp_path: Path) -> None:
    net = _tiny()
    torch.save({"model": net.state_dict(), "config": net.config_dict()}, tmp_path / "best.pt")
    pm = load(tmp_path / "best.pt", device="cpu")
    a = np.random.default_rng(5).random((4, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = AAEInference(net)(torch.from_numpy(a[:, None]), torch.from_numpy(a[:, None])).numpy()
    assert pm.patch_size == 32 and pm.device == "torch:cpu"
    np.testing.assert_allclose(pm.score(a, a), ref, atol=1e-5)
