"""The BNN towers: backbones, parameter counts, distance, broadcasting, state round trip, ONNX parity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models import load
from sarcoreg.models.bnn import BNN, Tower, count_parameters, export_onnx, make_backbone, module_from_state

torch.set_num_threads(1)


def _vgg11_bn_count() -> int:
    convs = [(1, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    return sum(9 * a * b + 2 * b for a, b in convs)  # 3 x 3 kernels without bias + BN scale / shift


# ResNet50: torchvision's 25,557,032 minus the fc (2048 x 1000 + 1000) and the RGB stem
# (64 x 3 x 7 x 7) plus a one-channel stem (64 x 1 x 7 x 7). Darknet53: the published 41.6 M
# of the ImageNet classifier minus its 1000-way fc (1024 x 1000 + 1000) is about 40.6 M.
EXPECTED = {
    "vgg11": (_vgg11_bn_count(), 512),
    "resnet50": (25_557_032 - 2_049_000 - 9_408 + 3_136, 2048),
    "darknet53": (40_584_352, 1024),
}


@pytest.mark.parametrize("name", ["vgg11", "resnet50", "darknet53"])
def test_backbone_shapes_and_parameter_counts(name: str) -> None:
    torch.manual_seed(0)
    bb = make_backbone(name)
    n_params, feat = EXPECTED[name]
    assert count_parameters(bb) == n_params
    assert bb.out_features == feat
    bb.eval()
    with torch.no_grad():
        assert bb(torch.rand(2, 1, 64, 64)).shape == (2, feat)
        assert bb(torch.rand(1, 1, 112, 112)).shape == (1, feat)  # SARptical-sized patches work too
    tower = Tower(name)
    assert count_parameters(tower) == n_params + feat * 50 + 50


def test_darknet53_has_52_convolutions() -> None:
    bb = make_backbone("darknet53")
    assert sum(isinstance(m, torch.nn.Conv2d) for m in bb.modules()) == 52


def test_towers_do_not_share_weights_and_distance_formula() -> None:
    torch.manual_seed(1)
    net = BNN("vgg11").eval()
    assert net.sar_tower.head.weight.data_ptr() != net.opt_tower.head.weight.data_ptr()
    assert count_parameters(net) == 2 * count_parameters(net.sar_tower)
    a, b = torch.rand(3, 1, 64, 64), torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        za, zb = net.embed_optical(a), net.embed_sar(b)
        assert za.shape == zb.shape == (3, 50)
        h = net.distance(a, b)
        manual = torch.linalg.norm(zb - za, dim=1) / math.sqrt(50)
        torch.testing.assert_close(h, manual, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net(a, b), 1.0 / (1.0 + manual), atol=1e-5, rtol=1e-5)
        # one template against many patches equals the repeated template
        one = net(a[:1], b)
        torch.testing.assert_close(one, net(a[:1].expand(3, -1, -1, -1), b), atol=1e-5, rtol=1e-5)


def test_score_is_monotone_and_invariant_to_patch_brightness() -> None:
    torch.manual_seed(2)
    net = BNN("vgg11").eval()
    a, b = torch.rand(4, 1, 64, 64), torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        h, s = net.distance(a, b), net(a, b)
        assert torch.equal(torch.argsort(h), torch.argsort(-s))
        # per-patch standardisation: an affine change of the SAR patch changes nothing
        torch.testing.assert_close(net(a, 0.5 * b + 0.2), s, atol=2e-4, rtol=1e-3)


def test_bad_backbone_is_named() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        BNN("vgg16")


def test_state_round_trip_and_registry_load(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = BNN("vgg11", patch_size=32).eval()
    torch.save(net.state_dict(), tmp_path / "bnn.pt")
    back, size = module_from_state(torch.load(tmp_path / "bnn.pt", weights_only=True))
    assert size == 32 and back.backbone_name == "vgg11"
    model = load(tmp_path / "bnn.pt", device="cpu")
    assert model.patch_size == 32
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 32, 32), dtype=np.float32), rng.random((5, 32, 32), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None]).numpy()
    np.testing.assert_allclose(model.score(a, b), want, atol=1e-6)


def test_onnx_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(4)
    net = BNN("vgg11").eval()
    # BN statistics away from their initial values so the export is checked with real ones
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    path = export_onnx(net, tmp_path / "bnn.onnx")
    rng = np.random.default_rng(1)
    a = rng.random((7, 64, 64), dtype=np.float32)
    b = rng.random((7, 64, 64), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None]).numpy()
        want_one = net(torch.from_numpy(a[:1])[:, None], torch.from_numpy(b)[:, None]).numpy()
    model = load(path, device="cpu")
    assert model.patch_size == 64
    np.testing.assert_allclose(model.score(a, b), want, atol=1e-4)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got_one = sess.run(None, {"a": a[:1, None], "b": b[:, None]})[0]  # one template, seven patches
    np.testing.assert_allclose(got_one, want_one, atol=1e-4)
