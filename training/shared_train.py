"""Training of the shared-modality networks (criterion v1 or v2) with validation on held-out real pairs.

Recipe (paper section 4.4): NAdam, learning rate 2e-4 after a linear warm-up from 1e-8, batches
of random crops with flips and 90-degree rotations, inputs percentile-normalised per scene.
A run is counted in steps; every ``eval_every`` steps (an "epoch" in the log) the held-out pairs
are evaluated: the validation loss (which picks ``best.pt``) and the paper's Table-1 similarity
of the shared images (RMSE, PSNR, SSIM between ``f_X x`` and ``f_Y y``), next to the same
numbers for "no transform" (SAR VV repeated to K channels vs the optical RGB, both normalised).

Files in the run folder: ``last.pt`` (everything needed to resume: networks, optimiser, step,
sampler state, history, elapsed time), ``best.pt`` (networks of the best validation loss),
``history.json``. ``--resume last.pt`` goes on where the run stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarcoreg.models.safe_load import load_torch_weights, plain_data
from sarcoreg.models.shared_modality import SharedConfig, make_nets
from sarcoreg.training.shared_data import CropSampler, ScenePair, pad_to_multiple
from sarcoreg.training.shared_losses import LossWeights, image_metrics, shared_loss_v1, shared_loss_v2

from .step_hook import report_step

__all__ = ["ProgressFn", "SharedTrainConfig", "SharedTrainResult", "evaluate", "recalibrate_bn", "train_shared"]

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass
class SharedTrainConfig:
    """Training options.

    Attributes:
        model: The network configuration (bands, K, criterion).
        window: SSIM window of the losses (``gaussian11`` / ``uniform5``).
        crop: Crop side (multiple of 32).
        batch_size: Crops per step.
        lr: Base learning rate (NAdam).
        warmup_steps: Steps of linear warm-up from ``warmup_start``.
        warmup_start: Learning rate at step 0.
        weight_decay: NAdam weight decay.
        max_steps: Stop after this many steps.
        max_minutes: Stop after this wall-clock time (training + validation), if set.
        eval_every: Steps between validations (one "epoch" of the log).
        threads: torch CPU threads (``None``: torch's default).
        device: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``.
        seed: Seed of the initial weights and the crops.
        min_valid: Least valid share of a crop.
        bn_recalibrate_batches: Before every validation (and so in every saved checkpoint) the
            BatchNorm running statistics are re-estimated as plain averages over this many
            training batches of ``2 * batch_size`` crops (0: off). With batches of 4 random crops
            from many sources the momentum averages lag the weights, and eval-mode outputs of the
            two networks drift apart in brightness (measured: held-out RMSE 0.27 with the lagging
            statistics vs 0.16 with batch statistics, same weights).
    """

    model: SharedConfig = field(default_factory=SharedConfig)
    window: str = "gaussian11"
    crop: int = 96
    batch_size: int = 4
    lr: float = 2e-4
    warmup_steps: int = 200
    warmup_start: float = 1e-8
    weight_decay: float = 0.0
    max_steps: int = 100000
    max_minutes: float | None = None
    eval_every: int = 200
    threads: int | None = None
    device: str = "auto"
    seed: int = 0
    min_valid: float = 0.5
    bn_recalibrate_batches: int = 8

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SharedTrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["model"] = SharedConfig.from_dict(d["model"])
        return cls(**d)


@dataclass
class SharedTrainResult:
    """What a run did: steps, time, best step and its metrics, where the files are."""

    steps: int
    seconds: float
    best_step: int
    best_val_loss: float
    best_metrics: dict[str, Any]
    baseline: dict[str, Any]
    device: str
    stopped_by: str
    history: list[dict[str, Any]]
    out: str


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _gray(optical: torch.Tensor, rgb: Sequence[int]) -> torch.Tensor:
    sel = optical[:, list(rgb)] if rgb else optical
    return sel.mean(dim=1, keepdim=True)


def _loss(nets: torch.nn.Module, cfg: SharedTrainConfig, weights: LossWeights, x: torch.Tensor, y: torch.Tensor,
          valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    s, o = nets(x, y)
    if cfg.model.criterion == "v2":
        loss, parts = shared_loss_v2(s, o, _gray(y, cfg.model.rgb), weights, valid)
    else:
        loss, parts = shared_loss_v1(x, y, s, o, nets.sar_inverse(s), nets.optical_inverse(o), weights, valid)
    return loss, parts, s, o


def _baseline_images(x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """"No transform": the first SAR band repeated to K channels, the optical bands fitted to K."""
    a = x[:, :1].repeat(1, k, 1, 1)
    b = y[:, :k] if y.shape[1] >= k else y.mean(1, keepdim=True).repeat(1, k, 1, 1)
    return a, b


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rows[0] if k != "source"] if rows else ["rmse", "psnr", "ssim"]
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    out["pairs"] = len(rows)
    by: dict[str, Any] = {}
    for src in sorted({r["source"] for r in rows}):
        sel = [r for r in rows if r["source"] == src]
        by[src] = {k: float(np.mean([r[k] for r in sel])) for k in keys} | {"pairs": len(sel)}
    out["by_source"] = by
    return out


@torch.no_grad()
def evaluate(
    nets: torch.nn.Module,
    scenes: Sequence[ScenePair],
    cfg: SharedTrainConfig,
    device: torch.device,
    baseline: bool = False,
) -> dict[str, Any]:
    """Validation loss and Table-1 metrics of the shared images over whole held-out scenes.

    Each scene is reflect-padded to multiples of 32; metrics count only its valid pixels.
    With ``baseline`` the "no transform" metrics are computed too (key ``baseline``).

    Returns:
        ``{"loss", "rmse", "psnr", "ssim", "pairs", "by_source", ["baseline": {...}]}``:
        means over scenes (PSNR: mean of the per-scene PSNR).
    """
    was = nets.training
    nets.eval()
    weights = LossWeights.paper(cfg.model.criterion, cfg.window)
    rows, base_rows, losses = [], [], []
    for sc in scenes:
        sar, opt, valid = pad_to_multiple(sc)
        x = torch.from_numpy(sar[None]).to(device)
        y = torch.from_numpy(opt[None]).to(device)
        v = torch.from_numpy(valid[None, None].astype(np.float32)).to(device)
        loss, _, s, o = _loss(nets, cfg, weights, x, y, v)
        losses.append(float(loss.detach()))
        rows.append(image_metrics(s, o, v) | {"source": sc.source})
        if baseline:
            a, b = _baseline_images(x, y, cfg.model.channels)
            base_rows.append(image_metrics(a, b, v) | {"source": sc.source})
    nets.train(was)
    out = _summarise(rows) | {"loss": float(np.mean(losses))}
    if baseline:
        out["baseline"] = _summarise(base_rows)
    return out


@torch.no_grad()
def recalibrate_bn(nets: torch.nn.Module, sampler: CropSampler, batches: int, batch_size: int,
                   device: torch.device, seed: int) -> None:
    """Re-estimate every BatchNorm's running mean and variance over ``batches`` training batches.

    The statistics are reset and accumulated as a plain average (``momentum=None``); weights are
    untouched. The crops come from ``sampler``'s scenes with their own generator (seeded by
    ``seed``), so the training stream of crops is not changed.
    """
    bns = [m for m in nets.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was = nets.training
    nets.train()
    keep = sampler.state()
    sampler.rng = np.random.default_rng(seed)
    for _ in range(batches):
        xs, ys, _ = sampler.batch(batch_size)
        s, o = nets(torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device))
        if getattr(nets, "sar_inverse", None) is not None:
            nets.sar_inverse(s)
            nets.optical_inverse(o)
    sampler.set_state(keep)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    nets.train(was)


def _lr_at(step: int, cfg: SharedTrainConfig) -> float:
    if step >= cfg.warmup_steps:
        return cfg.lr
    return cfg.warmup_start + (cfg.lr - cfg.warmup_start) * step / max(1, cfg.warmup_steps)


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tensors = ("model", "optimizer", "torch_rng")  # state dicts and tensors; the rest is made plain data
    torch.save({k: v if k in tensors else plain_data(v) for k, v in payload.items()}, tmp)
    os.replace(tmp, path)


def train_shared(
    train: Sequence[ScenePair],
    val: Sequence[ScenePair],
    out: str | Path,
    cfg: SharedTrainConfig,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    callback: ProgressFn | None = None,
    data_info: dict[str, Any] | None = None,
) -> SharedTrainResult:
    """Train the shared-modality networks.

    Args:
        train: Training scenes (normalised, see :mod:`sarcoreg.training.shared_data`).
        val: Held-out scenes for the validation loss and Table-1 metrics.
        out: Run folder (created).
        cfg: Options.
        resume: ``last.pt`` of an earlier run: networks, optimiser, step, sampler state, history
            and elapsed time are restored (``cfg.max_steps`` / ``max_minutes`` of this call apply).
        progress: Show a tqdm bar.
        log: Where the ``epoch K: ...`` lines go.
        callback: ``callback(step, max_steps, info)`` after every step (``info``: loss, lr).
        data_info: Description of the data, stored in ``history.json``.

    Returns:
        The :class:`SharedTrainResult` (also written as ``history.json``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    nets = make_nets(cfg.model).to(device)
    opt = torch.optim.NAdam(nets.parameters(), lr=cfg.warmup_start, weight_decay=cfg.weight_decay)
    sampler = CropSampler(train, cfg.crop, cfg.min_valid, seed=cfg.seed)
    weights = LossWeights.paper(cfg.model.criterion, cfg.window)
    step, elapsed_before, history = 0, 0.0, []
    best_val, best_step, best_metrics = math.inf, -1, {}
    baseline: dict[str, Any] = {}
    if resume:
        ck = load_torch_weights(resume, "checkpoint")
        nets.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sampler.set_state(ck["sampler_state"])
        step, elapsed_before, history = int(ck["step"]), float(ck["elapsed"]), list(ck["history"])
        best_val, best_step = float(ck["best_val"]), int(ck["best_step"])
        best_metrics, baseline = dict(ck.get("best_metrics", {})), dict(ck.get("baseline", {}))
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {resume} at step {step}")
    if not baseline and val:
        baseline = evaluate(nets, val, cfg, device, baseline=True)["baseline"]
        log(f"no transform (held-out pairs): RMSE {baseline['rmse']:.4f} PSNR {baseline['psnr']:.2f} "
            f"SSIM {baseline['ssim']:.4f}")
    t0 = time.monotonic()
    deadline = None if cfg.max_minutes is None else t0 + 60.0 * cfg.max_minutes
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, desc=f"shared {cfg.model.criterion}", unit="step")
    nets.train()
    running: list[float] = []
    stopped_by = "max_steps"

    def checkpoint(metrics: dict[str, Any]) -> None:
        nonlocal best_val, best_step, best_metrics
        is_best = metrics["loss"] < best_val
        if is_best:
            best_val, best_step, best_metrics = float(metrics["loss"]), step, metrics
        payload = {
            "model": nets.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "config": {"model": cfg.model.to_dict(), "train": cfg.to_dict()},
            "sampler_state": sampler.state(), "elapsed": elapsed_before + time.monotonic() - t0,
            "history": history, "best_val": best_val, "best_step": best_step, "best_metrics": best_metrics,
            "baseline": baseline, "torch_rng": torch.get_rng_state(),
        }
        _save(out / "last.pt", payload)
        if is_best:
            _save(out / "best.pt", {"model": nets.state_dict(), "step": step,
                                    "config": {"model": cfg.model.to_dict(), "train": cfg.to_dict()}})

    while step < cfg.max_steps:
        if deadline is not None and time.monotonic() >= deadline:
            stopped_by = "max_minutes"
            break
        lr = _lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        xs, ys, vs = sampler.batch(cfg.batch_size)
        x, y, v = (torch.from_numpy(a).to(device) for a in (xs, ys, vs))
        loss, parts, _, _ = _loss(nets, cfg, weights, x, y, v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        report_step(step / max(cfg.max_steps, 1), f"step {step}/{cfg.max_steps}")
        running.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running[-1]:.3f}")
        if callback is not None:
            callback(step, cfg.max_steps, {"loss": running[-1], "lr": lr, **parts})
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            recalibrate_bn(nets, sampler, cfg.bn_recalibrate_batches, 2 * cfg.batch_size, device, cfg.seed + step)
            metrics = evaluate(nets, val, cfg, device) if val else {"loss": float(np.mean(running))}
            row = {"epoch": len(history) + 1, "step": step, "train_loss": float(np.mean(running)), "lr": lr,
                   "seconds": round(elapsed_before + time.monotonic() - t0, 1), **{f"val_{k}": metrics[k] for k in
                   ("loss", "rmse", "psnr", "ssim") if k in metrics}}
            history.append(row)
            running = []
            checkpoint(metrics)
            log(f"epoch {row['epoch']}: step {step} train_loss {row['train_loss']:.4f} "
                + " ".join(f"{k} {row[k]:.4f}" for k in ("val_loss", "val_rmse", "val_psnr", "val_ssim") if k in row)
                + f" ({row['seconds']:.0f} s)")
    if bar is not None:
        bar.close()
    if running or not history or history[-1]["step"] != step:
        recalibrate_bn(nets, sampler, cfg.bn_recalibrate_batches, 2 * cfg.batch_size, device, cfg.seed + step)
        metrics = evaluate(nets, val, cfg, device) if val else {"loss": float(np.mean(running or [math.inf]))}
        row = {"epoch": len(history) + 1, "step": step, "train_loss": float(np.mean(running)) if running else None,
               "lr": _lr_at(max(0, step - 1), cfg), "seconds": round(elapsed_before + time.monotonic() - t0, 1),
               **{f"val_{k}": metrics[k] for k in ("loss", "rmse", "psnr", "ssim") if k in metrics}}
        history.append(row)
        checkpoint(metrics)
        log(f"epoch {row['epoch']}: step {step} (final) " + " ".join(
            f"{k} {row[k]:.4f}" for k in ("val_loss", "val_rmse", "val_psnr", "val_ssim") if k in row))
    seconds = elapsed_before + time.monotonic() - t0
    result = SharedTrainResult(step, round(seconds, 1), best_step, best_val, best_metrics, baseline, str(device),
                               stopped_by, history, str(out))
    summary = {k: v for k, v in asdict(result).items() if k != "history"}
    summary["config"] = cfg.to_dict()
    summary["data"] = data_info or {}
    summary["threads"] = torch.get_num_threads()
    (out / "history.json").write_text(json.dumps({"config": cfg.to_dict(), "history": history}, indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return result
