"""The BNN matcher: registration, the missing-model error, dense search and verification through ONNX and torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.core.matchers.base import ChipBatch, available_matchers, get_matcher
from sarcoreg.core.matchers.bnn import BNNMatcher
from sarcoreg.models.bnn import BNN, export_onnx
from sarcoreg.training.patches import s1s2_pairs

from tests.conftest import shared_data

torch.set_num_threads(1)
T, R = 32, 4


def _image() -> np.ndarray:
    """A real optical scene (Sentinel-2 luma, stretched), 120 x 120 in [0, 1]."""
    return s1s2_pairs(shared_data("s1s2", "bigearthnet-configilm"))[0].a


def _chips(img: np.ndarray, centres: list[tuple[int, int]], shift: tuple[int, int]) -> ChipBatch:
    dx, dy = shift
    h = T // 2
    ref = np.stack([img[y - h : y + h, x - h : x + h] for x, y in centres])
    tgt = np.stack([img[y - h - R - dy : y + h + R - dy, x - h - R - dx : x + h + R - dx] for x, y in centres])
    return ChipBatch(ref.astype(np.float32), tgt.astype(np.float32), np.array(centres, np.float64))


@pytest.fixture(scope="module")
def twin_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random-weight BNN whose two towers are equal (h = 0 exactly for identical patches): ONNX + .pt.

    The projection is scaled up so that distinct patches are far apart (a fresh network maps
    every patch to nearly the same point: h ~ 1e-4).
    """
    torch.manual_seed(0)
    net = BNN("vgg11", patch_size=T)
    with torch.no_grad():
        net.sar_tower.head.weight.mul_(300.0)
    net.opt_tower.load_state_dict(net.sar_tower.state_dict())
    net.eval()
    d = tmp_path_factory.mktemp("bnn")
    torch.save(net.state_dict(), d / "twin.pt")
    return export_onnx(net, d / "twin.onnx"), d / "twin.pt"


def test_registered_and_missing_model_error() -> None:
    assert "bnn" in available_matchers()
    m = get_matcher("bnn")  # nothing loaded yet
    assert isinstance(m, BNNMatcher)
    assert m.model.name == "bnn-sar-optical"  # the shipped model is the default
    with pytest.raises(ValueError, match=r"bnn-not-shipped.*--model"):
        _ = BNNMatcher(model="bnn-not-shipped").model
    with pytest.raises(ValueError, match="stride"):
        BNNMatcher(stride=0)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_dense_search_finds_the_shift(twin_model: tuple[Path, Path], backend: str) -> None:
    path = twin_model[0] if backend == "onnx" else twin_model[1]
    chips = _chips(_image(), [(40, 40), (70, 60), (80, 80)], shift=(2, -3))
    m = BNNMatcher(model=path, device="cpu")
    res = m.match(chips)
    assert res.maps is not None and res.maps.shape == (3, 2 * R + 1, 2 * R + 1)
    assert np.isfinite(res.maps).all()
    assert m.evaluations == 3 * (2 * R + 1) ** 2
    assert res.valid.all(), res.errors
    np.testing.assert_allclose(res.shift_xy, [[2, -3]] * 3, atol=0.3)
    np.testing.assert_allclose(res.maps[:, R - 3, R + 2], 1.0, atol=1e-3)  # h = 0 at the true displacement
    assert np.all(res.score > 0.999)


def test_onnx_and_torch_maps_agree_and_verify(twin_model: tuple[Path, Path]) -> None:
    chips = _chips(_image(), [(50, 50), (64, 40)], shift=(0, 0))
    m_onnx, m_torch = BNNMatcher(model=twin_model[0], device="cpu"), BNNMatcher(model=twin_model[1], device="cpu")
    np.testing.assert_allclose(m_onnx.match(chips).maps, m_torch.match(chips).maps, atol=1e-4)
    assert m_onnx.device.startswith("onnxruntime") and m_torch.device.startswith("torch")
    np.testing.assert_allclose(m_onnx.verify(chips), 1.0, atol=1e-3)
    shifted = m_onnx.verify(_chips(_image(), [(50, 50), (64, 40)], shift=(3, 3)))
    assert np.all(shifted < 0.99)


def test_coarse_stride_refines_around_the_peak(twin_model: tuple[Path, Path]) -> None:
    chips = _chips(_image(), [(40, 40), (70, 60)], shift=(1, 2))
    m = BNNMatcher(model=twin_model[0], device="cpu", stride=2)
    res = m.match(chips)
    assert res.maps is not None and np.isnan(res.maps).any()
    assert m.evaluations < 2 * (2 * R + 1) ** 2
    np.testing.assert_allclose(res.shift_xy, [[1, 2]] * 2, atol=0.3)


def test_contract_with_a_random_two_tower_model(tmp_path: Path) -> None:
    """Untied random towers: no meaningful peak, but every part of the contract holds."""
    torch.manual_seed(5)
    path = export_onnx(BNN("vgg11", patch_size=48).eval(), tmp_path / "rand.onnx")
    chips = _chips(_image(), [(40, 40), (70, 60)], shift=(0, 0))  # T = 32 templates resampled to 48
    nodata = np.ones_like(chips.reference, bool)
    nodata[1, :, :20] = False
    chips = ChipBatch(chips.reference, chips.target, chips.ref_xy, reference_valid=nodata)
    res = get_matcher("bnn", model=str(path), device="cpu").match(chips)
    assert res.matcher == "bnn" and len(res) == 2
    assert res.maps is not None and res.maps.shape == (2, 2 * R + 1, 2 * R + 1)
    assert np.isfinite(res.maps[0]).all() and np.all((res.maps[0] > 0) & (res.maps[0] <= 1))
    assert not res.valid[1] and "nodata" in res.errors[1]
