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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from sarcoreg.models.shared_modality import SharedConfig, make_nets
from sarcoreg.training.shared_data import CropSampler, ScenePair, pad_to_multiple
from sarcoreg.training.shared_losses import LossWeights, image_metrics, shared_loss_v1, shared_loss_v2
from torch import nn
from typing_extensions import override

from .loop import LoopConfig, TrainContext, TrainMethod, legacy_best, legacy_checkpoint, run_training

__all__ = ["ProgressFn", "SharedMethod", "SharedTrainConfig", "SharedTrainResult", "evaluate", "recalibrate_bn",
           "train_shared"]

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


def _gray(optical: torch.Tensor, rgb: Sequence[int]) -> torch.Tensor:
    sel = optical[:, list(rgb)] if rgb else optical
    return sel.mean(dim=1, keepdim=True)


class _TrainingForward(nn.Module):
    """The networks' training forward, inverse networks included: ``(x, y)`` -> ``(s, o, x_rec, y_rec)``.

    One ``forward`` for everything the loss uses, because DistributedDataParallel syncs the
    gradients of what runs inside ``forward`` only (``x_rec`` / ``y_rec`` are None for criterion v2).
    """

    def __init__(self, nets: nn.Module, criterion: str) -> None:
        super().__init__()
        self.nets, self.criterion = nets, criterion

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        """SAR ``x (N, C_X, H, W)``, optical ``y (N, C_Y, H, W)`` -> shared images and (v1) reconstructions."""
        s, o = self.nets(x, y)
        if self.criterion == "v2":
            return s, o, None, None
        return s, o, cast(nn.Module, self.nets.sar_inverse)(s), cast(nn.Module, self.nets.optical_inverse)(o)


def _loss(forward: nn.Module, cfg: SharedTrainConfig, weights: LossWeights, x: torch.Tensor, y: torch.Tensor,
          valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    """Loss, its parts and the shared images of a :class:`_TrainingForward` (or its DDP wrapper)."""
    s, o, x_rec, y_rec = forward(x, y)
    if cfg.model.criterion == "v2":
        loss, parts = shared_loss_v2(s, o, _gray(y, cfg.model.rgb), weights, valid)
    else:
        loss, parts = shared_loss_v1(x, y, s, o, x_rec, y_rec, weights, valid)
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
    forward = _TrainingForward(nets, cfg.model.criterion)
    rows, base_rows, losses = [], [], []
    for sc in scenes:
        sar, opt, valid = pad_to_multiple(sc)
        x = torch.from_numpy(sar[None]).to(device)
        y = torch.from_numpy(opt[None]).to(device)
        v = torch.from_numpy(valid[None, None].astype(np.float32)).to(device)
        loss, _, s, o = _loss(forward, cfg, weights, x, y, v)
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
            cast(nn.Module, nets.sar_inverse)(s)
            cast(nn.Module, nets.optical_inverse)(o)
    sampler.set_state(keep)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    nets.train(was)


def _lr_at(step: int, cfg: SharedTrainConfig) -> float:
    if step >= cfg.warmup_steps:
        return cfg.lr
    return cfg.warmup_start + (cfg.lr - cfg.warmup_start) * step / max(1, cfg.warmup_steps)


class SharedMethod(TrainMethod):
    """The shared-modality networks on :func:`~sarcoreg.training.loop.run_training` (a step-counted run).

    Args:
        ctx: The loop's context.
        train: Training scenes.
        val: Held-out scenes.
        cfg: Options.
        callback: ``callback(step, max_steps, info)`` after every step.
    """

    name = "shared"

    def __init__(self, ctx: TrainContext, train: Sequence[ScenePair], val: Sequence[ScenePair],
                 cfg: SharedTrainConfig, callback: ProgressFn | None = None) -> None:
        self.ctx, self.val, self.cfg, self.callback = ctx, val, cfg, callback
        self.label = f"shared {cfg.model.criterion}"
        self.net = make_nets(cfg.model).to(ctx.device)
        self.opt = torch.optim.NAdam(self.net.parameters(), lr=cfg.warmup_start, weight_decay=cfg.weight_decay)
        self.sampler = CropSampler(train, cfg.crop, cfg.min_valid, seed=cfg.seed)
        self.weights = LossWeights.paper(cfg.model.criterion, cfg.window)
        # the smp encoders hold layers the U-Nets never use: DDP must look for them
        self.trained = ctx.wrap(_TrainingForward(self.net, cfg.model.criterion), find_unused_parameters=True)
        self.baseline: dict[str, Any] = {}
        self.best_metrics: dict[str, Any] = {}
        self.last_metrics: dict[str, Any] = {}
        self.lr, self.steps_done = cfg.warmup_start, 0


    @override
    def config_dict(self) -> dict[str, Any]:
        return {"model": self.cfg.model.to_dict(), "train": self.cfg.to_dict()}

    @override
    def before_training(self, resumed: bool) -> None:
        if not self.baseline and self.val and self.ctx.is_main:  # only rank 0 writes the summary
            self.baseline = b = evaluate(self.net, self.val, self.cfg, self.ctx.device, baseline=True)["baseline"]
            self.ctx.log(f"no transform (held-out pairs): RMSE {b['rmse']:.4f} PSNR {b['psnr']:.2f} "
                         f"SSIM {b['ssim']:.4f}")
        self.net.train()

    @override
    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.cfg
        self.lr = _lr_at(step, cfg)
        for g in self.opt.param_groups:
            g["lr"] = self.lr
        xs, ys, vs = (ctx.shard(a) for a in self.sampler.batch(cfg.batch_size))
        x, y, v = (torch.from_numpy(a).to(ctx.device) for a in (xs, ys, vs))
        loss, parts, _, _ = _loss(self.trained, cfg, self.weights, x, y, v)
        ctx.optimise(loss, self.opt)
        self.steps_done = step + 1
        row = {"loss": float(loss.detach()), **parts}
        if self.callback is not None:
            self.callback(step + 1, cfg.max_steps, {**row, "lr": self.lr})
        return row

    @override
    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        cfg, dev, step = self.cfg, self.ctx.device, self.steps_done
        recalibrate_bn(self.net, self.sampler, cfg.bn_recalibrate_batches, 2 * cfg.batch_size, dev, cfg.seed + step)
        train_loss = float(np.mean([s["loss"] for s in steps])) if steps else None
        self.last_metrics = (evaluate(self.net, self.val, cfg, dev) if self.val
                             else {"loss": math.inf if train_loss is None else train_loss})
        m = self.last_metrics
        return {"train_loss": train_loss, "lr": self.lr,
                **{f"val_{k}": m[k] for k in ("loss", "rmse", "psnr", "ssim") if k in m}}

    @override
    def score(self, row: dict[str, Any]) -> float:
        return float(row["val_loss"])

    @override
    def on_best(self, row: dict[str, Any], out: Path | None) -> None:
        self.best_metrics = self.last_metrics

    @override
    def best_payload(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"config": self.config_dict()}

    @override
    def epoch_line(self, row: dict[str, Any], improved: bool) -> str:
        vals = " ".join(f"{k} {row[k]:.4f}" for k in ("val_loss", "val_rmse", "val_psnr", "val_ssim") if k in row)
        train = f" train_loss {row['train_loss']:.4f}" if row.get("train_loss") is not None else ""
        return f"epoch {row['epoch']}: step {row['step']}{train} {vals} ({row['seconds']:.0f} s)"

    @override
    def method_state(self) -> dict[str, Any]:
        return {"sampler_state": self.sampler.state(), "baseline": self.baseline, "best_metrics": self.best_metrics}

    @override
    def load_method_state(self, state: dict[str, Any]) -> None:
        if "sampler_state" in state:
            self.sampler.set_state(state["sampler_state"])
        self.baseline = dict(state.get("baseline") or {})
        self.best_metrics = dict(state.get("best_metrics") or {})

    @override
    def history_extra(self) -> dict[str, Any]:
        return {"config": self.cfg.to_dict()}

    @override
    def legacy_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """``last.pt`` of the hand-written shared loop (``elapsed``, ``best_val`` / ``best_step``, sampler state)."""
        history = list(state.get("history", []))
        best_step = int(state.get("best_step", -1))
        epoch = next((int(r["epoch"]) for r in history if int(r.get("step", -2)) == best_step), -1)
        best = legacy_best(history, epoch, float(state.get("best_val", math.inf)))
        return legacy_checkpoint(
            state, self.name, epochs_done=len(history), seconds=float(state.get("elapsed", 0.0)), best=best,
            method_state={"sampler_state": state.get("sampler_state"), "baseline": state.get("baseline", {}),
                          "best_metrics": state.get("best_metrics", {})})


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
    """Train the shared-modality networks (one process, or one of ``torchrun``'s processes).

    Args:
        train: Training scenes (normalised, see :mod:`sarcoreg.training.shared_data`).
        val: Held-out scenes for the validation loss and Table-1 metrics.
        out: Run folder (created).
        cfg: Options.
        resume: ``last.pt`` of an earlier run: networks, optimiser, step, sampler state, history
            and elapsed time are restored (``cfg.max_steps`` / ``max_minutes`` of this call apply;
            the time budget counts from this call).
        progress: Show a tqdm bar.
        log: Where the ``epoch K: ...`` lines go.
        callback: ``callback(step, max_steps, info)`` after every step (``info``: loss, lr).
        data_info: Description of the data, stored in ``summary.json``.

    Returns:
        The :class:`SharedTrainResult` (also written as ``summary.json``).
    """
    out = Path(out)
    loop = LoopConfig.from_options(cfg, cfg.eval_every, progress, epochs=None, budget_includes_resumed=False)
    methods: list[SharedMethod] = []

    def make(ctx: TrainContext) -> SharedMethod:
        methods.append(SharedMethod(ctx, train, val, cfg, callback))
        return methods[0]

    res = run_training(make, out, loop, resume=resume, log=log)
    method = methods[0]
    result = SharedTrainResult(res.steps, res.seconds, int(res.best["step"]), float(res.best["score"]),
                               method.best_metrics, method.baseline, str(method.ctx.device), res.stopped_by,
                               res.history, str(out))
    if res.rank == 0:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        summary["config"] = cfg.to_dict()
        summary["data"] = data_info or {}
        summary["threads"] = torch.get_num_threads()
        summary["processes"] = res.world_size
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return result
