"""Training on several processes (torch DDP, gloo on the CPU): the loss curve of one process, resumable by one.

Two real CPU processes train on real S1/S2 patch pairs; every process draws the same global batch
and keeps every second sample, DDP averages the gradients. Without BatchNorm or dropout (the
small method of ``test_training_loop``) that is the single-process step exactly, up to float
rounding: the step losses agree closely. The slow test runs the real ``sarcoreg-train bnn``
command under ``torchrun`` (BatchNorm statistics then come from half batches: close, not equal).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import shared_data
from tests.training.test_training_loop import run_toy, step_losses, toy_pools

STEPS = {"epochs": 2, "steps_per_epoch": 4}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One of the processes: torchrun's environment variables, then the same call as one process."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    res, _ = run_toy(toy_pools(), Path(out), dropout=0.0, **STEPS)
    assert res.world_size == world and res.rank == rank and res.steps == 8


def test_two_gloo_processes_follow_the_single_process_loss_curve(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single, _ = run_toy(toy_pools(), tmp_path / "one", dropout=0.0, **STEPS)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    one, two = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    lines = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert sum('"kind": "step"' in ln for ln in lines) == 8  # rank 0 alone writes: one line per step
    np.testing.assert_allclose([two[s] for s in range(1, 9)], [one[s] for s in range(1, 9)], rtol=1e-4, atol=1e-6)
    # the rank-0 checkpoint resumes in a single process, from the 2-process state
    resumed, _ = run_toy(toy_pools(), tmp_path / "two", resume=tmp_path / "two" / "last.pt", dropout=0.0,
                            epochs=3, steps_per_epoch=4)
    assert resumed.world_size == 1 and resumed.steps == 12 and [h["step"] for h in resumed.history] == [4, 8, 12]
    ref, _ = run_toy(toy_pools(), tmp_path / "one", resume=tmp_path / "one" / "last.pt", dropout=0.0,
                     epochs=3, steps_per_epoch=4)
    np.testing.assert_allclose([step_losses(tmp_path / "two")[s] for s in range(9, 13)],
                               [step_losses(tmp_path / "one")[s] for s in range(9, 13)], rtol=1e-4, atol=1e-6)
    assert ref.steps == 12


@pytest.mark.slow
def test_torchrun_two_processes_train_bnn_with_one_command(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m sarcoreg.training.cli bnn ...`` on real S1/S2 pairs, then resumed alone."""
    args = ["bnn", "--data", str(shared_data("s1s2", "bigearthnet-configilm")), "--patch-size", "32",
            "--crops-per-scene", "1", "--width", "8", "--batch-size", "8", "--lr", "0.01", "--steps-per-epoch", "4",
            "--threads", "1", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "sarcoreg.training.cli", *args, "--epochs", "2", "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("epoch 2:") == 1 and "DDP: 2 processes" in two.stdout  # rank 0 alone logs
    one = subprocess.run([sys.executable, "-m", "sarcoreg.training.cli", *args, "--epochs", "2", "--out",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    # same data order and global batch; only the BatchNorm statistics of the half batches differ
    assert b[1] == pytest.approx(a[1], rel=0.05)
    assert np.mean([b[s] for s in range(5, 9)]) == pytest.approx(np.mean([a[s] for s in range(5, 9)]), rel=0.2)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["steps"] == 8 and (tmp_path / "two" / "best.onnx").is_file()
    resumed = subprocess.run([sys.executable, "-m", "sarcoreg.training.cli", *args, "--epochs", "3", "--out",
                              str(tmp_path / "two"), "--resume", str(tmp_path / "two" / "last.pt")],
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "DDP" not in resumed.stdout
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["steps"] == 12


_TINY = {
    "rrlnet": ["--data", "vis-nir/registration/country", "--pairs-per-image", "8", "--epochs", "1",
               "--steps-per-epoch", "2", "--batch-size", "4", "--bn-recalibrate", "1"],
    "bnn-moco": ["--data", "s1s2/bigearthnet-configilm", "--patch-size", "32", "--crops-per-scene", "1", "--width", "8",
                 "--batch-size", "8", "--queue-size", "32", "--epochs", "1", "--steps-per-epoch", "2",
                 "--modality", "sar"],
    "aae": ["--data", "s1s2/bigearthnet-configilm", "--patch-size", "32", "--search-size", "64", "--per-image", "1",
            "--width", "2", "--latent-dim", "8", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
            "--supervision", "0.25", "--min-negative-offset", "6"],
    "shared": ["--data", "osmnet:sar-optical/osmnet/ims", "--criterion", "v1", "--crop", "64", "--batch-size", "2",
               "--max-steps", "2", "--eval-every", "2", "--warmup-steps", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(_TINY))
def test_torchrun_two_processes_run_every_method(method: str, tmp_path: Path) -> None:
    """Every method's command trains under ``torchrun --nproc_per_node 2`` (DDP through each method's step)."""
    args = list(_TINY[method])
    i = args.index("--data") + 1
    kind, _, rel = args[i].rpartition(":")
    args[i] = f"{kind}:{shared_data(rel)}" if kind else str(shared_data(rel))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "sarcoreg.training.cli", method, *args, "--threads", "1", "--device", "cpu",
                          "--no-progress", "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DDP: 2 processes" in run.stdout
    folder = tmp_path / "sar" if method == "bnn-moco" else tmp_path
    assert (folder / "last.pt").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["sar"] if method == "bnn-moco" else summary)["steps"] == 2
