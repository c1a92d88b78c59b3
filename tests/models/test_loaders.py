"""The loader table: a model loads by the method its card or checkpoint names; only old files are recognised by keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sarcoreg.core.methods import method_names
from sarcoreg.models import load, loaders
from sarcoreg.models.card import ModelCard, save_card, sha256_of
from sarcoreg.models.descriptor_model import load_descriptor_model
from sarcoreg.models.loaders import LOADERS, MethodLoader, loader_for, register_loader, unregister_loader
from sarcoreg.models.nets.bnn import BNN
from sarcoreg.models.registry import load_card
from sarcoreg.models.safe_load import ModelFileError
from sarcoreg.models.shared_modality import normalise

from tests.conftest import REPO, shared_data

#: RRL-Net weights from before checkpoints named their method: ``{"model": fp16 state dict}``.
WARMSTART = REPO / "checkpoints" / "rrlnet-visnir-warmstart.pt"


@pytest.fixture(scope="module")
def patches() -> tuple[np.ndarray, np.ndarray]:
    """Two real 64 x 64 pairs ``(2, 64, 64)``: optical gray and SAR dB of a held-out scene (aligned, shifted)."""
    z = np.load(shared_data("s1s2", "bigearthnet-configilm", "benv1_pairs", "S2A_MSIL2A_20170613T101031_39_24.npz"))
    sar = normalise(z["s1"][:1], "sar")[0]
    gray = normalise(z["s2_10m"][[2, 1, 0]].astype(np.float32), "optical").mean(axis=0)
    a = np.stack([gray[16:80, 16:80]] * 2)
    b = np.stack([sar[16:80, 16:80], sar[16:80, 25:89]])
    return a.astype(np.float32), b.astype(np.float32)


def test_every_learned_method_has_a_loader() -> None:
    for method in method_names(learned=True):
        assert loader_for(method).method == method
    with pytest.raises(ValueError, match="no model loader for method 'bnn-moco'.*aae, bnn, rrlnet, shared"):
        loader_for("bnn-moco")  # MoCo pre-training runs are not a model


def test_old_checkpoint_loads_through_the_legacy_fallback(patches: tuple[np.ndarray, np.ndarray],
                                                           tmp_path: Path) -> None:
    """The warm-start file names no method: its keys say RRL-Net; tagged, the same weights need no guess."""
    old = torch.load(WARMSTART, map_location="cpu", weights_only=True)
    assert set(old) == {"model"}  # a real old file: no "method"
    assert loaders.legacy_method(old["model"]) == "rrlnet"
    model = load(WARMSTART, device="cpu", backend="torch")
    assert model.patch_size == 64 and model.device == "torch:cpu"
    scores = model.score(*patches)  # type: ignore[union-attr]
    assert scores.shape == (2,) and np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1))

    tagged = tmp_path / "tagged.pt"
    torch.save(loaders.tagged_weights("rrlnet", old["model"]), tagged)
    calls: list[Any] = []

    def no_guessing(state: dict[str, Any]) -> str:
        calls.append(state)
        raise AssertionError("legacy_method called for a file that names its method")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loaders, "legacy_method", no_guessing)
        again = load(tagged, device="cpu")
        np.testing.assert_allclose(again.score(*patches), scores, atol=1e-6)  # type: ignore[union-attr]
    assert not calls


def test_the_method_a_file_names_wins(tmp_path: Path) -> None:
    old = torch.load(WARMSTART, map_location="cpu", weights_only=True)["model"]
    wrong = tmp_path / "wrong.pt"
    torch.save({"method": "bnn", "model": old}, wrong)  # RRL-Net weights that say BNN: no guessing, an error
    with pytest.raises(ModelFileError, match="do not fit the bnn network"):
        load(wrong, device="cpu")
    unknown = tmp_path / "unknown.pt"
    torch.save({"method": "census", "model": old}, unknown)
    with pytest.raises(ValueError, match="no model loader for method 'census'"):
        load(unknown, device="cpu")
    nothing = tmp_path / "nothing.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, nothing)
    with pytest.raises(ValueError, match="nothing.pt: weights that name no method"):
        load(nothing, device="cpu")


def test_loop_checkpoint_and_card_method(tmp_path: Path, patches: tuple[np.ndarray, np.ndarray]) -> None:
    """A ``best.pt`` of the training loop (``format`` + ``method``) loads; a card must agree with its file."""
    torch.manual_seed(0)
    net = BNN(width=8)
    best = tmp_path / "best.pt"
    torch.save({"format": "sarcoreg-training-checkpoint/2", "method": "bnn", "model": net.state_dict(),
                "epoch": 1, "step": 2, "metrics": {}}, best)
    model = load(best, device="cpu")
    assert np.all(np.isfinite(model.score(*patches)))  # type: ignore[union-attr]
    with pytest.raises(ModelFileError, match="a 'bnn' model has no descriptor encoders"):
        load_descriptor_model(best, device="cpu")
    card = ModelCard(name="b", method="rrlnet", file=str(best), sha256=sha256_of(best), licence="",
                     inputs={"patch_size": 64})
    with pytest.raises(ModelFileError, match="card says method 'rrlnet'.*holds 'bnn'"):
        load_card(card, device="cpu")


class _Toy(torch.nn.Module):
    """A toy patch network: ``score = 1 - mean |a - b| * w``; ``(N, 1, 8, 8)`` pairs -> ``(N,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - (a - b).abs().mean(dim=(1, 2, 3)) * self.w


def _toy_network(state: dict[str, Any]) -> tuple[Any, int]:
    net = _Toy()
    net.load_state_dict(state)
    return net, 8


def test_an_out_of_tree_method_registers_its_loader(tmp_path: Path) -> None:
    weights = tmp_path / "toy.pt"
    torch.save({"method": "toy", "model": _Toy().state_dict()}, weights)
    with pytest.raises(ValueError, match="has a loader already"):
        register_loader(MethodLoader("bnn", "patch", network=_toy_network))
    register_loader(MethodLoader("toy", "patch", network=_toy_network))
    try:
        card_file = save_card(ModelCard(name="toy", method="toy", file=weights.name, sha256=sha256_of(weights),
                                        licence="", inputs={"patch_size": 8}), tmp_path)
        from sarcoreg.models.card import read_card

        model = load_card(read_card(card_file), device="cpu")
        scores = model.score(np.zeros((2, 8, 8)), np.ones((2, 8, 8)) * 0.5)  # type: ignore[union-attr]
        np.testing.assert_allclose(scores, [0.5, 0.5])
    finally:
        unregister_loader("toy")
    assert "toy" not in LOADERS
    with pytest.raises(ValueError, match="needs a torch network"):
        MethodLoader("x", "patch")
