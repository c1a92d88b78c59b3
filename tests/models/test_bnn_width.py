"""The BNN's width option: narrow VGG11 towers, stored in the weights, old weights still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models import load
from sarcoreg.models.bnn import BNN, count_parameters, export_onnx, make_backbone, module_from_state
from sarcoreg.training.moco import MoCoEncoder, transfer_to_bnn

torch.set_num_threads(1)


def test_width_scales_vgg11_and_is_kept_in_the_weights() -> None:
    assert make_backbone("vgg11", 8).out_features == 64
    small, full = BNN("vgg11", width=8), BNN("vgg11")
    assert count_parameters(small) < count_parameters(full) / 30
    net, size = module_from_state(small.state_dict())
    assert net.width == 8 and size == 64
    with pytest.raises(ValueError, match="published width only"):
        make_backbone("darknet53", 16)


def test_weights_without_a_width_load_as_width_64() -> None:
    state = BNN("vgg11", patch_size=32).state_dict()
    state["bnn_config"] = state["bnn_config"][:3]  # as written before the width was stored
    net, size = module_from_state(state)
    assert net.width == 64 and size == 32 and list(net.bnn_config) == [0, 50, 32, 64]


def test_narrow_onnx_matches_torch_and_moco_transfer_checks_the_width(tmp_path: Path) -> None:
    net = BNN("vgg11", patch_size=32, width=4).eval()
    torch.save(net.state_dict(), tmp_path / "w4.pt")
    export_onnx(net, tmp_path / "w4.onnx")
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 32, 32), dtype=np.float32), rng.random((6, 32, 32), dtype=np.float32)
    s_onnx = load(tmp_path / "w4.onnx", device="cpu").score(a, b)
    s_torch = load(tmp_path / "w4.pt", device="cpu").score(a, b)
    assert np.abs(s_onnx - s_torch).max() < 1e-5
    for mod, width in (("sar", 4), ("opt", 8)):
        enc = MoCoEncoder("vgg11", dim=8, width=width)
        torch.save({"backbone": "vgg11", "width": width, "modality": mod, "steps": 1,
                    "state": enc.backbone.state_dict()}, tmp_path / f"encoder_{mod}.pt")
    with pytest.raises(ValueError, match="width 8.*does not fit"):
        transfer_to_bnn(net, tmp_path / "encoder_sar.pt", tmp_path / "encoder_opt.pt")
