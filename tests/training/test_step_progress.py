"""Per-step progress of a real training run (the hook behind QGIS *Train a model*)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sarcoreg.core.progress import Cancelled, Progress
from sarcoreg.core.train_job import throttled
from sarcoreg.training.step_hook import report_step, step_hook

from tests.conftest import shared_data


def _bnn_args(out: Path) -> list[str]:
    return ["bnn", "--data", str(shared_data("s1s2", "bigearthnet-configilm")), "--patch-size", "32",
            "--crops-per-scene", "1", "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "4",
            "--threads", "1", "--device", "cpu", "--no-progress", "--out", str(out)]


def test_every_step_reports_and_a_raising_hook_stops_the_run(tmp_path: Path) -> None:
    from sarcoreg.training.cli import main

    seen: list[tuple[float, str]] = []
    with step_hook(lambda f, m: seen.append((f, m))):
        assert main(_bnn_args(tmp_path / "run")) == 0
    assert [m for _, m in seen] == [f"epoch {e}/2 step {s}/3" for e in (1, 2) for s in (1, 2, 3)]
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    report_step(0.5, "no hook installed: nothing happens")

    progress = Progress()
    calls: list[str] = []

    def cancel_after_two(fraction: float, message: str) -> None:
        calls.append(message)
        if len(calls) == 2:
            progress.cancel()

    progress.callback = cancel_after_two
    with pytest.raises(Cancelled), step_hook(throttled(progress, {}, every_s=0.0)):
        main(_bnn_args(tmp_path / "cancelled"))
    assert len(calls) == 2  # stopped within a step of the cancel, not at the end of the epoch
