"""Shipping an AAE: three ONNX graphs + a card with checksummed encoder files, loadable by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.core.train_job import train_argv
from sarcoreg.models import load
from sarcoreg.models.descriptor_model import load_descriptor_model
from sarcoreg.models.registry import MODEL_PATH_ENV, check_card, find_card
from sarcoreg.training.aae_card import write_aae_card
from sarcoreg.training.cli import main as train_main

from tests.conftest import shared_data

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("aae-card") / "run"
    rc = train_main([
        "aae", "--data", f"osmnet:{shared_data('sar-optical', 'osmnet')}", "--out", str(out),
        "--patch-size", "32", "--search-size", "64", "--per-image", "2", "--width", "2", "--latent-dim", "8",
        "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--val-fraction", "0.25",
        "--min-negative-offset", "6", "--threads", "1", "--no-progress", "--device", "cpu",
    ])
    assert rc == 0
    return out


def test_card_names_and_checks_the_encoders(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "models"
    card = write_aae_card(tiny_run, "aae-tiny", "test only", notes="tiny", folder=folder, compare=tiny_run)
    assert card.method == "aae" and card.inputs["patch_size"] == 32
    assert set(card.extra_files) == {"optical_encoder", "sar_encoder"}
    assert card.extra_files["sar_encoder"] == "aae-tiny-sar-encoder.onnx"
    assert max(card.metrics["onnx_vs_torch"].values()) < 1e-4
    assert card.metrics["compared_run"]["supervision"] == 1.0
    monkeypatch.setenv(MODEL_PATH_ENV, str(folder))
    found = find_card("aae-tiny")
    assert check_card(found)["ok"]
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 32, 32), dtype=np.float32), rng.random((3, 32, 32), dtype=np.float32)
    pair = load("aae-tiny").score(a, b)
    desc = load_descriptor_model("aae-tiny")
    assert np.allclose(pair, desc.score(a, b), atol=1e-5)
    # A changed encoder file is refused by name (the card holds its checksum).
    enc = folder / "aae-tiny-sar-encoder.onnx"
    enc.write_bytes(enc.read_bytes() + b"\0")
    assert "sar_encoder" in check_card(find_card("aae-tiny"))["error"]
    with pytest.raises(ValueError, match="checksum for sar_encoder"):
        load_descriptor_model("aae-tiny")


def test_card_with_matching_errors_of_aae_eval(tiny_run: Path, tmp_path: Path) -> None:
    ev = tmp_path / "evaluation.json"
    ev.write_text(json.dumps({"val_image_pairs": ["x"], "s100": {"mean_px": 3.0, "cases": 4},
                              "s25": {"mean_px": 4.0, "cases": 4}}))
    card = write_aae_card(tiny_run, "aae-tiny2", "test only", evaluation=ev, label="s100", folder=tmp_path)
    assert card.metrics["matching_errors"] == {"s100": {"mean_px": 3.0, "cases": 4}}


def test_train_job_arguments_for_aae_and_bnn() -> None:
    argv = train_argv({"method": "aae", "data": "d", "out_dir": "o", "epochs": 1, "pairs_per_image": 3,
                       "patch_size": 32, "search_size": 64, "width": 4})
    assert argv[:1] == ["aae"] and argv[argv.index("--per-image") + 1] == "3"
    assert argv[argv.index("--search-size") + 1] == "64" and argv[argv.index("--width") + 1] == "4"
    argv = train_argv({"method": "bnn", "data": "d", "out_dir": "o", "patch_size": 32, "search_size": 64})
    assert "--patch-size" in argv and "--search-size" not in argv and "--per-image" not in argv
