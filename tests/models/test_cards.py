"""Every shipped model card, typed: its files with their checksums, its inputs, its loader, a forward pass.

The cards are those in ``models/cards/*.json`` (found by globbing, so a new card is checked without
editing this file). The forward pass runs the model that the loader table (``models/loaders.py``)
picks for the card's method on a real patch pair: a held-out BigEarthNet scene (SAR VV dB, optical
R, G, B), 64 x 64 pixels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sarcoreg.models.card import (
    CARDS_DIR,
    MODELS_DIR,
    CardInputs,
    ModelCard,
    parse_inputs,
    raw_files,
    read_card,
    save_card,
    sha256_of,
    typed_layout,
)
from sarcoreg.models.card_upgrade import main as upgrade_main
from sarcoreg.models.card_upgrade import upgrade_card
from sarcoreg.models.loaders import loader_for
from sarcoreg.models.registry import load_card
from sarcoreg.models.shared_modality import normalise

from tests.conftest import shared_data

SHIPPED_CARDS = sorted(CARDS_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def real_pair() -> tuple[np.ndarray, np.ndarray]:
    """SAR VV in dB ``(1, 64, 64)`` and optical R, G, B ``(3, 64, 64)``, each stretched to [0, 1]."""
    z = np.load(shared_data("s1s2", "bigearthnet-configilm", "benv1_pairs", "S2A_MSIL2A_20170613T101031_39_24.npz"))
    sar = normalise(z["s1"][:1], "sar")
    opt = normalise(z["s2_10m"][[2, 1, 0]].astype(np.float32), "optical")
    return sar[:, 16:80, 16:80], opt[:, 16:80, 16:80]


def test_cards_are_shipped() -> None:
    assert len(SHIPPED_CARDS) >= 4


@pytest.mark.parametrize("path", SHIPPED_CARDS, ids=lambda p: p.stem)
def test_shipped_card(path: Path, real_pair: tuple[np.ndarray, np.ndarray]) -> None:
    card = read_card(path)
    assert card.name == path.stem
    assert "main" in card.files
    for role, f in card.files.items():
        assert f.path.is_file(), f"{card.name}: {role} file {f.path} missing"
        assert len(f.sha256) == 64 and sha256_of(f.path) == f.sha256, f"{card.name}: {role} checksum"
    spec = card.input_spec
    assert isinstance(spec, CardInputs)
    assert spec.optical.bands and spec.sar.bands and spec.optical.scaling and spec.sar.scaling
    loader = loader_for(card.method)
    model = load_card(card, device="cpu")
    sar, opt = real_pair
    if loader.kind == "patch":
        assert spec.patch_size == model.patch_size == 64
        a, b = opt.mean(axis=0)[None], sar[:1]  # optical gray and SAR, as the engine prepares them
        shifted = np.roll(b, 9, axis=2)
        scores = model.score(np.concatenate([a, a]), np.concatenate([b, shifted]))  # type: ignore[union-attr]
        assert scores.shape == (2,) and np.all(np.isfinite(scores))
    else:
        assert spec.multiple == 32 and spec.output_channels == 3
        assert model.bands("sar") == spec.sar.bands and model.bands("optical") == spec.optical.bands  # type: ignore[union-attr]
        for modality, image in (("sar", sar), ("optical", opt)):
            out = model.transform(image[None], modality)  # type: ignore[union-attr]
            assert out.shape == (1, 3, 64, 64) and np.all(np.isfinite(out))


@pytest.mark.parametrize("path", SHIPPED_CARDS, ids=lambda p: p.stem)
def test_typed_layout_reads_like_the_old_one(path: Path, tmp_path: Path) -> None:
    """Parity: a shipped card rewritten by ``card_upgrade`` reads back to the same card."""
    (tmp_path / "cards").mkdir()
    for name in {f.path.name for f in read_card(path).files.values()}:
        (tmp_path / name).symlink_to(MODELS_DIR / name)
    copy = shutil.copy(path, tmp_path / "cards" / path.name)
    before = read_card(Path(copy))
    assert upgrade_card(Path(copy))
    raw = json.loads(Path(copy).read_text())
    assert list(raw)[:3] == ["name", "method", "files"] and "file" not in raw and "extra_files" not in raw
    assert read_card(Path(copy)) == before
    assert not upgrade_card(Path(copy))  # already in the files layout
    assert upgrade_main(["--check", str(copy)]) == 0 and upgrade_main(["--check", str(path)]) in (0, 1)


def test_card_writers_write_the_typed_layout(tmp_path: Path) -> None:
    """``save_card`` (what every card writer of ``training/`` calls) writes ``files``; reading gives the card back."""
    (tmp_path / "w.onnx").write_bytes(b"main")
    (tmp_path / "w-opt.onnx").write_bytes(b"opt")
    card = ModelCard(name="w", method="aae", file="w.onnx", sha256=sha256_of(tmp_path / "w.onnx"), licence="x",
                     inputs={"patch_size": 32, "channels": 1, "scaling": "[0, 1]"},
                     extra_files={"optical_encoder": "w-opt.onnx"},
                     extra_sha256={"optical_encoder": sha256_of(tmp_path / "w-opt.onnx")})
    written = save_card(card, tmp_path)
    raw = json.loads(written.read_text())
    assert raw["files"] == {"main": {"path": "w.onnx", "sha256": card.sha256},
                            "optical_encoder": {"path": "w-opt.onnx", "sha256": card.extra_sha256["optical_encoder"]}}
    assert raw_files(raw)["optical_encoder"] == ("w-opt.onnx", card.extra_sha256["optical_encoder"])
    back = read_card(written)
    assert back.files["optical_encoder"].path == (tmp_path / "w-opt.onnx").resolve()
    assert back.input_spec.patch_size == 32
    # a raw dict in the old layout (as training/shared_card.py passes) is written in the new one too
    legacy = {"name": "v", "method": "shared", "file": "w.onnx", "sha256": "", "licence": "",
              "extra_files": {"optical": "w-opt.onnx"}, "extra_sha256": {"optical": ""}}
    assert "files" in json.loads(save_card(legacy, tmp_path).read_text())
    assert typed_layout(legacy)["files"]["optical"] == {"path": "w-opt.onnx", "sha256": ""}


def test_card_with_both_layouts_or_bad_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cards").mkdir()
    bad = tmp_path / "cards" / "b.json"
    bad.write_text(json.dumps({"name": "b", "method": "bnn", "file": "x.onnx", "files": {"main": {"path": "x"}}}))
    with pytest.raises(ValueError, match="keep one layout"):
        read_card(bad)
    bad.write_text(json.dumps({"name": "b", "method": "bnn", "files": {"optical": {"path": "x"}}}))
    with pytest.raises(ValueError, match="'main' entry"):
        read_card(bad)
    bad.write_text(json.dumps({"name": "b", "method": "bnn", "files": {"main": {"path": 3}}}))
    with pytest.raises(ValueError, match="files.main"):
        read_card(bad)


def test_inputs_are_checked() -> None:
    spec = parse_inputs({"patch_size": 64, "channels": 1, "scaling": "dB"})
    assert spec.patch_size == 64 and spec.optical.bands == ("gray",) and spec.sar.scaling == "dB"
    image = parse_inputs({"sar": {"bands": ["VV", "VH"]}, "optical_bands": ["R", "G", "B", "N"], "channels": 4})
    assert image.sar.bands == ("VV", "VH") and image.output_channels == 4 and image.multiple == 32
    for inputs, what in [({"patch_size": 0}, "patch_size"), ({"patch_size": "64"}, "patch_size"),
                         ({"patch_size": 64, "channels": 3}, "channels"), ({}, "patch_size"),
                         ({"sar_bands": [], "optical_bands": ["R"]}, "sar_bands"),
                         ({"sar_bands": ["VV"], "optical_bands": ["R"], "multiple": -1}, "multiple")]:
        with pytest.raises(ValueError, match=what):
            parse_inputs(inputs)
