"""``sarcoreg-train bnn-moco`` / ``bnn`` on tiny real S1/S2 crops, then the BNN model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import shared_data

torch.set_num_threads(1)


def test_cli_runs_and_card_is_written(tmp_path: Path) -> None:
    from sarcoreg.models.registry import list_cards
    from sarcoreg.training.bnn_card import write_bnn_card
    from sarcoreg.training.cli import main

    data = str(shared_data("s1s2", "bigearthnet-configilm"))
    common = ["--data", data, "--patch-size", "32", "--crops-per-scene", "1", "--max-steps", "2",
              "--batch-size", "4", "--threads", "1", "--device", "cpu", "--no-progress"]
    assert main(["bnn-moco", *common, "--queue-size", "16", "--out", str(tmp_path / "moco")]) == 0
    assert (tmp_path / "moco" / "sar" / "encoder_sar.pt").is_file()
    assert main(["bnn", *common, "--init", "moco", "--moco-dir", str(tmp_path / "moco"),
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["data"]["val_pairs"] > 0
    ev = tmp_path / "bnn_pairs.json"
    ev.write_text(json.dumps({"held_out_pairs": 10, "held_out_scenes": 3, "sources": {"s1s2": 10},
                              "NP-BNN": {"accuracy": 0.6, "precision": 0.5, "recall": 0.7, "fpr95": 0.8, "auc": 0.66,
                                         "folds": []}}))
    card = write_bnn_card(tmp_path / "run", "bnn-test", "test only", folder=tmp_path / "models", evaluation=ev)
    held = card.metrics["held_out_real_pairs"]
    assert held["pairs"] == 10 and held["NP-BNN"] == {"accuracy": 0.6, "precision": 0.5, "recall": 0.7,
                                                      "fpr95": 0.8, "auc": 0.66}
    assert card.method == "bnn" and card.inputs["patch_size"] == 32
    assert card.metrics["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert card.metrics["threshold_score"] == pytest.approx(1 / (1 + card.metrics["threshold_h"]), abs=1e-3)
    assert [c.name for c in list_cards(tmp_path / "models" / "cards")] == ["bnn-test"]
