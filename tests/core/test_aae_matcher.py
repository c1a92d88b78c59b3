"""The ``aae`` engine matcher: registration, missing-model error, ONNX / torch models end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sarcoreg.core.correspondence import make_cases
from sarcoreg.core.matchers.aae import DEFAULT_MODEL, AAEMatcher
from sarcoreg.core.matchers.base import ChipBatch, available_matchers, get_matcher
from sarcoreg.models.registry import list_models

from tests.conftest import shared_data


def optical_image() -> np.ndarray:
    """A real optical satellite image (WHU-OPT-SAR, 1000 x 1000), gray in [0, 1]."""
    from osgeo import gdal

    ds = gdal.Open(str(shared_data("sar-optical", "whu-opt-sar", "data", "optical", "WHU-OPT-SAR.tif")))
    return np.asarray(ds.ReadAsArray().astype(np.float32).mean(axis=0) / 255)


@pytest.fixture(scope="module")
def optical() -> np.ndarray:
    """See :func:`optical_image`."""
    return optical_image()


@pytest.fixture(scope="module")
def twin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight AAE whose SAR encoder is a copy of its optical encoder, exported to ONNX.

    On identical optical / "SAR" content the true window then has cosine similarity exactly 1.
    """
    torch = pytest.importorskip("torch")
    from sarcoreg.models.aae import AAEConfig, DualAAE, export_encoders_onnx, export_onnx

    torch.manual_seed(0)
    net = DualAAE(AAEConfig(patch_size=32, width=4, latent_dim=16))
    # Random weights, but BatchNorm statistics measured on real patches (as after training), so
    # the descriptors vary with the content instead of being dominated by one common direction.
    img = optical_image()
    patches = np.stack([img[y : y + 32, x : x + 32] for y in range(0, 960, 40) for x in range(0, 960, 40)])
    for m in net.enc_opt.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net.enc_opt.train()(torch.from_numpy(patches[:, None]))
    net.enc_sar.load_state_dict(net.enc_opt.state_dict())
    net.eval()
    out = tmp_path_factory.mktemp("aae") / "twin.onnx"
    export_onnx(net, out)
    export_encoders_onnx(net, out)
    torch.save({"model": net.state_dict()}, out.with_suffix(".pt"))
    return out


def _chips(optical: np.ndarray, n: int, seed: int) -> tuple[ChipBatch, np.ndarray]:
    temps, search, shift = make_cases([(optical, optical)], 32, 48, per_pair=n, seed=seed)
    ref_xy = np.full((n, 2), 500.0)
    return ChipBatch(temps, search, ref_xy), shift


def test_registered() -> None:
    assert "aae" in available_matchers()
    assert isinstance(get_matcher("aae"), AAEMatcher)  # constructing loads nothing


def test_missing_model_error_names_card_and_option(optical: np.ndarray) -> None:
    chips, _ = _chips(optical, 1, 0)
    with pytest.raises(ValueError, match="aae-not-shipped.*'model' option"):
        AAEMatcher(model="aae-not-shipped").match(chips)
    if DEFAULT_MODEL not in list_models():  # until a trained model is shipped
        with pytest.raises(ValueError, match=f"no model card '{DEFAULT_MODEL}'"):
            get_matcher("aae").match(chips)
    with pytest.raises(FileNotFoundError):
        AAEMatcher(model="/nonexistent/aae.onnx").match(chips)
    with pytest.raises(ValueError, match="stride"):
        AAEMatcher(stride=0)


def test_onnx_model_end_to_end(twin_model: Path, optical: np.ndarray) -> None:
    chips, shift = _chips(optical, 5, 1)
    m = get_matcher("aae", model=str(twin_model), device="cpu", stride=1)
    res = m.match(chips)
    assert m.device.startswith("onnxruntime")
    assert res.matcher == "aae" and res.valid.all(), res.errors
    assert res.maps is not None and res.maps.shape == (5, 17, 17)
    np.testing.assert_allclose(res.shift_xy, shift, atol=0.5)
    np.testing.assert_allclose(res.score, 1.0, atol=1e-4)  # the true window: identical descriptors
    assert m.evaluations == 5 * 17 * 17
    # A coarse grid: fewer windows, the same values where evaluated (random weights give a rough
    # map, so the coarse search need not find the same peak; see test_correspondence for that).
    coarse = AAEMatcher(model=twin_model, device="cpu", stride=4)
    res4 = coarse.match(chips)
    assert coarse.evaluations < m.evaluations / 2
    assert res4.maps is not None
    seen = np.isfinite(res4.maps)
    np.testing.assert_allclose(res4.maps[seen], res.maps[seen], atol=1e-5)


def test_nodata_and_flat_templates_are_rejected(twin_model: Path, optical: np.ndarray) -> None:
    chips, _ = _chips(optical, 3, 2)
    ref_valid = np.ones(chips.reference.shape, bool)
    ref_valid[0, :, :20] = False  # 62 % nodata
    reference = chips.reference.copy()
    reference[2] = 0.5
    bad = ChipBatch(reference, chips.target, chips.ref_xy, reference_valid=ref_valid)
    res = AAEMatcher(model=twin_model, device="cpu").match(bad)
    assert list(res.valid) == [False, True, False]
    assert "nodata" in res.errors[0] and "contrast" in res.errors[2]
    assert res.maps is not None and np.isnan(res.maps[0]).all()


def test_torch_checkpoint_model(twin_model: Path, optical: np.ndarray) -> None:
    chips, shift = _chips(optical, 2, 3)
    m = AAEMatcher(model=twin_model.with_suffix(".pt"), device="cpu", stride=1)
    res = m.match(chips)
    assert m.device == "torch:cpu"
    np.testing.assert_allclose(res.shift_xy, shift, atol=0.5)
