"""The one training loop (training/loop.py): resume continues steps and random states, time budget, checkpoints.

The method here is a small real one: a two-layer CNN with dropout that tells aligned real S1/S2
patch pairs from pairs of different scenes (its sampling uses the loop's numpy generator, its
dropout torch's generator, so an exact resume needs both restored).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sarcoreg.training.loop import (
    CHECKPOINT_FORMAT,
    LoopConfig,
    LoopResult,
    TrainContext,
    TrainMethod,
    read_checkpoint,
    run_training,
)
from sarcoreg.training.pair_datasets import AlignedPatches, bigearthnet_npz, split_pool
from torch import nn
from typing_extensions import override

from tests.conftest import shared_data


@pytest.fixture(scope="module")
def pools() -> tuple[AlignedPatches, AlignedPatches]:
    return toy_pools()


class PairMethod(TrainMethod):
    """Aligned (1) or not (0): SAR and optical patch as two channels of a small CNN."""

    name = "toy-pairs"

    def __init__(self, ctx: TrainContext, train: AlignedPatches, val: AlignedPatches, batch: int = 8,
                 dropout: float = 0.3) -> None:
        self.ctx, self.train, self.val, self.batch = ctx, train, val, batch
        self.net = nn.Sequential(nn.Conv2d(2, 6, 5, stride=2), nn.ReLU(), nn.Dropout(dropout), nn.Flatten(),
                                 nn.Linear(6 * 14 * 14, 1)).to(ctx.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.05, momentum=0.9)
        self.trained = ctx.wrap(self.net)

    def _pairs(self, pool: AlignedPatches, idx: np.ndarray, partner: np.ndarray) -> torch.Tensor:
        x = np.stack([pool.sar[idx], pool.opt[partner]], axis=1).astype(np.float32) / 255.0
        return torch.from_numpy(x).to(self.ctx.device)

    @override
    def state_objects(self) -> dict[str, Any]:
        return {"model": self.net, "optimizer": self.opt}

    @override
    def start_epoch(self, epoch: int) -> None:
        self.net.train()

    @override
    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        rng, n = self.ctx.rng, len(self.train)
        idx = rng.choice(n, self.batch, replace=False)
        y = (np.arange(self.batch) % 2 == 0).astype(np.float32)
        partner = np.where(y > 0, idx, (idx + rng.integers(1, n, self.batch)) % n)
        x = self._pairs(self.train, self.ctx.shard(idx), self.ctx.shard(partner))
        logits = self.trained(x)[:, 0]
        loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(self.ctx.shard(y)))
        self.ctx.optimise(loss, self.opt)
        return {"loss": float(loss.detach())}

    @override
    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        self.net.eval()
        n = len(self.val)
        idx = np.arange(n)
        with torch.no_grad():
            pos = self.net(self._pairs(self.val, idx, idx))[:, 0] > 0
            neg = self.net(self._pairs(self.val, idx, (idx + n // 2) % n))[:, 0] > 0
        self.net.train()
        acc = float((pos.float().mean() + (~neg).float().mean()) / 2)
        return {"loss": float(np.mean([s["loss"] for s in steps])), "val_accuracy": acc}

    @override
    def score(self, row: dict[str, Any]) -> float:
        return -float(row["val_accuracy"])


def toy_pools() -> tuple[AlignedPatches, AlignedPatches]:
    """One 32 x 32 crop of each real S1/S2 scene, split by scene."""
    pool = bigearthnet_npz(shared_data("s1s2", "bigearthnet-configilm"), patch_size=32, crops_per_pair=1, seed=0)
    return split_pool(pool, 12 / 54, seed=0)


def run_toy(pools: tuple[AlignedPatches, AlignedPatches], out: Path, resume: Path | None = None,
            dropout: float = 0.3, **loop: Any) -> tuple[LoopResult, list[PairMethod]]:
    """Train :class:`PairMethod` (2 epochs of 3 steps unless ``loop`` says otherwise)."""
    made: list[PairMethod] = []

    def make(ctx: TrainContext) -> PairMethod:
        made.append(PairMethod(ctx, *pools, dropout=dropout))
        return made[-1]

    cfg = LoopConfig(**{"epochs": 2, "steps_per_epoch": 3, "seed": 7, "device": "cpu", "threads": 1,
                        "progress": False, **loop})
    return run_training(make, out, cfg, resume=resume, log=lambda _s: None), made


def step_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(ln) for ln in (out / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "step"}


def test_resume_continues_step_count_and_random_states(pools: tuple[AlignedPatches, AlignedPatches],
                                                       tmp_path: Path) -> None:
    straight, made = run_toy(pools, tmp_path / "straight")
    assert straight.steps == 6 and straight.epochs_run == 2 and straight.stopped_by == "epochs"
    first, _ = run_toy(pools, tmp_path / "split", epochs=1)
    assert first.steps == 3
    resumed, made2 = run_toy(pools, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    assert resumed.steps == 6 and [h["step"] for h in resumed.history] == [3, 6]
    # numpy sampling and torch dropout continue where they were: the same losses, the same weights
    a, b = step_losses(tmp_path / "straight"), step_losses(tmp_path / "split")
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    assert [b[s] for s in range(1, 7)] == pytest.approx([a[s] for s in range(1, 7)], rel=1e-6, abs=1e-7)
    for p, q in zip(made[0].net.parameters(), made2[0].net.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    hist = json.loads((tmp_path / "split" / "history.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]


def test_time_budget_stops_and_leaves_a_loadable_last_pt(pools: tuple[AlignedPatches, AlignedPatches],
                                                         tmp_path: Path) -> None:
    res, made = run_toy(pools, tmp_path, epochs=5, max_minutes=1e-6)
    assert res.stopped_by == "max_minutes" and res.stopped_by_budget and res.steps == 1 and res.epochs_run == 1
    state = read_checkpoint(tmp_path / "last.pt", made[0])  # weights_only load
    assert state["format"] == CHECKPOINT_FORMAT and state["method"] == "toy-pairs"
    assert state["step"] == 1 and state["epochs_done"] == 1 and state["seconds"] > 0
    assert isinstance(state["torch_rng"], torch.Tensor) and "state" in state["rng"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["method"] == "toy-pairs" and best["epoch"] == 1 and "val_accuracy" in best["metrics"]
    # the budget counts the resumed time: a larger one continues, with the epoch count going on
    res2, _ = run_toy(pools, tmp_path, epochs=2, max_minutes=10.0, resume=tmp_path / "last.pt")
    assert res2.steps == 4 and res2.epochs_run == 2 and res2.stopped_by == "epochs"
    assert sorted(step_losses(tmp_path)) == [1, 2, 3, 4]


def test_step_counted_run_and_a_checkpoint_of_another_method(pools: tuple[AlignedPatches, AlignedPatches],
                                                             tmp_path: Path) -> None:
    res, made = run_toy(pools, tmp_path, epochs=None, max_steps=5, steps_per_epoch=2)
    assert res.stopped_by == "max_steps" and [h["step"] for h in res.history] == [2, 4, 5]
    made[0].name = "other"
    with pytest.raises(ValueError, match="'toy-pairs' run, not 'other'"):
        read_checkpoint(tmp_path / "last.pt", made[0])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt: not a training checkpoint"):
        read_checkpoint(tmp_path / "odd.pt", made[0])
    with pytest.raises(ValueError, match="needs max_steps"):
        LoopConfig(epochs=None, steps_per_epoch=2)
    assert math.isfinite(res.best["score"])
