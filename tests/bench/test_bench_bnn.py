"""The BNN benchmarks: two-fold held-out metrics and the throughput script on the shipped models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_bnn_pairs  # noqa: E402


def test_two_fold_metrics_pick_the_threshold_on_the_other_half() -> None:
    rng = np.random.default_rng(0)
    n = 200
    labels = np.r_[np.ones(n), np.zeros(n)]
    scores = np.r_[rng.normal(1.0, 0.5, n), rng.normal(0.0, 0.5, n)]
    groups = np.r_[np.arange(n) % 20, np.arange(n) % 20]
    res = bench_bnn_pairs.evaluate(labels, scores, groups, seed=1)
    assert len(res["folds"]) == 2 and res["pairs"] == 2 * n
    assert 0.75 < res["accuracy"] < 0.9 and 0.85 < res["auc"] < 0.95
    perfect = bench_bnn_pairs.evaluate(labels, labels.copy(), groups, seed=1)
    assert perfect["accuracy"] == perfect["precision"] == perfect["recall"] == 1.0 and perfect["fpr95"] == 0.0


def test_throughput_script_prints_both_back_ends(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_bnn_throughput.py"), "--batches", "4", "--seconds", "0.05",
         "--aae", "aae-sar-optical", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    for backend in ("onnxruntime:CPUExecutionProvider", "torch:cpu"):
        for mode in ("pairs", "dense"):
            assert any(backend in line and f" {mode} " in line for line in out.splitlines()), out
    rows = json.loads((tmp_path / "bnn_throughput.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"bnn-sar-optical", "aae-sar-optical"}
    assert all(r["pairs_per_s"] > 0 for r in rows)
