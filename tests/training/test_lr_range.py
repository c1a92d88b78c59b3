"""The learning-rate range test on a tiny model: curve, divergence stop, suggested range, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.training.lr_range import lr_range_test, plot_lr_range, suggest_range


def _tiny_regression() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1) + 0.05 * torch.randn(256, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    gen = torch.Generator().manual_seed(1)

    def step() -> float:
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return model, opt, step


def test_range_test_on_tiny_model(tmp_path: Path) -> None:
    _, opt, step = _tiny_regression()
    seen: list[float] = []

    def set_lr(lr: float) -> None:
        seen.append(lr)
        for g in opt.param_groups:
            g["lr"] = lr

    res = lr_range_test(step, set_lr, start_lr=1e-5, end_lr=100.0, num_steps=120)
    # Learning rates grow geometrically from the start; SGD diverges long before lr = 100.
    assert seen[0] == pytest.approx(1e-5)
    assert np.all(np.diff(res.lrs) > 0)
    assert res.diverged and res.lrs[-1] < 100.0
    lo, hi = res.suggested
    assert hi == pytest.approx(10 * lo)
    assert res.lrs[0] < lo < hi <= res.lrs[-1]
    # The range ends where training works: the raw losses near `hi` are far below the first ones.
    i = int(np.searchsorted(res.lrs, hi))
    assert res.losses[max(0, i - 4) : i + 1].mean() < 0.2 * res.losses[:10].mean()
    png = plot_lr_range(res, tmp_path / "lr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_suggest_range_on_a_known_curve() -> None:
    lrs = np.geomspace(1e-6, 1.0, 61)
    # Flat, then a steep fall centred at 1e-4, minimum at 1e-2, then a rise.
    loss = 2.0 - np.tanh((np.log10(lrs) + 4.0) * 2.0) + np.where(lrs > 1e-2, 50 * (lrs - 1e-2), 0.0)
    (lo, hi), steep = suggest_range(lrs, loss)
    assert steep == pytest.approx(1e-4, rel=0.3)
    assert lo == pytest.approx(steep / np.sqrt(10), rel=1e-6) and hi == pytest.approx(steep * np.sqrt(10), rel=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        suggest_range(lrs[:2], loss[:2])
