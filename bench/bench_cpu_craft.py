"""CPU training craft: what bf16 autocast and channels-last do to one training step here.

Usage::

    python bench/bench_cpu_craft.py [--threads 1] [--steps 30] [--rounds 3] [--models bnn,aae]

Times one optimiser step (forward, loss, backward, Adam) of the BNN (VGG11 towers, width 16) and
of the dual AAE (width 16, latent 128) on random 64 px batches of 32, in four variants: fp32,
``torch.autocast("cpu", dtype=torch.bfloat16)``, channels-last memory format, and both. Variants
are interleaved round by round so a change of machine load hits all of them alike; the figure per
variant is the median over rounds of the mean step time. Prints a table and the speed-up against
fp32. Random inputs are enough: the step's arithmetic does not depend on the pixel values.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

VARIANTS = ("fp32", "bf16", "channels_last", "bf16+channels_last")


def _bnn_step(batch: int, width: int) -> tuple[nn.Module, Callable[[nn.Module, bool], torch.Tensor]]:
    from sarcoreg.models.nets.bnn import BNN

    net = BNN(width=width, patch_size=64)
    a, b = torch.rand(batch, 1, 64, 64), torch.rand(batch, 1, 64, 64)
    y = (torch.arange(batch) % 2).float()

    def loss(m: nn.Module, cl: bool) -> torch.Tensor:
        fa = a.contiguous(memory_format=torch.channels_last) if cl else a
        fb = b.contiguous(memory_format=torch.channels_last) if cl else b
        h = m.distance(fa, fb)  # type: ignore[operator]
        return (y * h**2 + (1 - y) * torch.clamp(1.0 - h, min=0) ** 2).mean()

    return net, loss


def _aae_step(batch: int, width: int) -> tuple[nn.Module, Callable[[nn.Module, bool], torch.Tensor]]:
    from sarcoreg.models.nets.aae import AAEConfig, DualAAE

    net = DualAAE(AAEConfig(patch_size=64, width=width, latent_dim=128))
    a, b = torch.rand(batch, 1, 64, 64), torch.rand(batch, 1, 64, 64)

    def loss(m: nn.Module, cl: bool) -> torch.Tensor:
        fa = a.contiguous(memory_format=torch.channels_last) if cl else a
        fb = b.contiguous(memory_format=torch.channels_last) if cl else b
        out = m(fa, fb)
        rec = ((out["rec_opt"] - out["target_opt"]) ** 2).mean() + ((out["rec_sar"] - out["target_sar"]) ** 2).mean()
        za = nn.functional.normalize(out["z_opt"], dim=1)
        zs = nn.functional.normalize(out["z_sar"], dim=1)
        return rec + ((za - zs) ** 2).sum(dim=1).mean()

    return net, loss


def time_variant(make: Callable[[], tuple[nn.Module, Callable[[nn.Module, bool], torch.Tensor]]],
                 variant: str, steps: int) -> float:
    """Mean seconds per optimiser step of one variant (after 3 warm-up steps)."""
    torch.manual_seed(0)
    net, loss_fn = make()
    cl = "channels_last" in variant
    if cl:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in variant):
            loss = loss_fn(net, cl)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; prints the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--models", default="bnn,aae")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    makers = {"bnn": lambda: _bnn_step(a.batch, a.width), "aae": lambda: _aae_step(a.batch, a.width)}
    models = [m for m in a.models.split(",") if m]
    times: dict[tuple[str, str], list[float]] = {(m, v): [] for m in models for v in VARIANTS}
    for r in range(a.rounds):
        for m in models:
            for v in VARIANTS:
                times[(m, v)].append(time_variant(makers[m], v, a.steps))
        print(f"round {r + 1}/{a.rounds} done", flush=True)
    print(f"\nthreads {a.threads}, batch {a.batch}, 64 px, width {a.width}; median over {a.rounds} rounds "
          f"of the mean of {a.steps} steps")
    print("| model | variant | s/step | speed-up vs fp32 |")
    print("|---|---|---|---|")
    for m in models:
        base = float(np.median(times[(m, "fp32")]))
        for v in VARIANTS:
            t = float(np.median(times[(m, v)]))
            print(f"| {m} | {v} | {t:.3f} | {base / t:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
