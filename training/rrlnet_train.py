"""Training loop of RRL-Net (the public code's recipe, with a wall-clock budget for CPU runs).

Recipe: Nadam (lr 2e-4, momentum decay 4e-3, eps 1e-7: Keras' Nadam defaults), batch 64, each
step draws 64 distinct random training pairs, the :mod:`~sarcoreg.training.augment`
augmentations, ``floor(N / 64)`` steps per epoch (or ``steps_per_epoch``), FPR95 and AUC of the
main head on the validation pairs after every epoch, the checkpoint with the lowest FPR95 kept.
Before each validation the BatchNorm running statistics are re-estimated on a few training
batches (:func:`recalibrate_batchnorm`; ``bn_recalibrate_batches=0`` turns it off), because short
CPU runs end long before the Keras momentum of 0.99 has settled them.

``bf16=True`` runs the forward pass under ``torch.autocast(dtype=torch.bfloat16)`` (the losses,
the weights and the optimiser stay float32; validation runs in float32): on this project's
AVX-512-bf16 CPU a batch-64 step took 3.1 s instead of 5.5 s on one thread with the same loss
curve (``bench/README.md``, "Why training stalled (issue 16)").

The log and the history also give the FPR95 of plain NCC on the same validation pairs
(``val_ncc_fpr95``): FPR95 depends much more on the patch set than on the method (on held-out
VIS-NIR ``country`` pairs NCC has 93 %, on the eight test subsets 35 %), so a network is judged
against this number, never against one measured on other patches.

Files written to ``out_dir``: ``last.pt`` (everything needed to resume), ``best.pt`` (full
network at the best epoch), ``best_inference.pt`` (pruned state dict), ``history.json`` and,
on request, ``best.onnx``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarcoreg.models.patch_model import torch_device
from sarcoreg.models.rrlnet import RRLNet, RRLNetOutputs, export_onnx
from sarcoreg.models.safe_load import load_torch_weights, plain_data
from sarcoreg.training.augment import augment_pairs
from sarcoreg.training.metrics import auc, fpr95
from sarcoreg.training.patches import PatchSet
from sarcoreg.training.rrlnet_losses import RRLNetLoss, make_perceptual

from .step_hook import report_epoch_step

__all__ = ["TrainConfig", "TrainResult", "load_initial_weights", "ncc_scores", "recalibrate_batchnorm",
           "score_patchset", "train_rrlnet"]


@dataclass
class TrainConfig:
    """Options of :func:`train_rrlnet` (defaults = the paper's recipe)."""

    epochs: int = 40
    steps_per_epoch: int | None = None
    batch_size: int = 64
    lr: float = 2e-4
    perceptual: str = "gradient"
    vgg19_weights: str | None = None
    alpha: float = 1.0
    beta: float = 0.1
    augment: bool = True
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    seed: int = 100
    val_batch: int = 128
    export_onnx: bool = True
    bn_recalibrate_batches: int = 4
    bf16: bool = False


@dataclass
class TrainResult:
    """Outcome of a training run."""

    best_fpr95: float
    best_auc: float
    best_epoch: int
    epochs_run: int
    steps: int
    seconds: float
    stopped_by_budget: bool
    out_dir: str
    history: list[dict[str, Any]] = field(default_factory=list)


def _to_tensors(images: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32) / 255.0
    return x[:, 0:1], x[:, 1:2]


def ncc_scores(images: np.ndarray) -> np.ndarray:
    """Zero-mean normalised cross-correlation of the two patches of each pair.

    Args:
        images: ``(N, 2, P, P)`` patch pairs (any numeric dtype).

    Returns:
        ``(N,)`` float64 NCC in [-1, 1] (0 where a patch is constant); higher = more similar.
    """
    out = np.zeros(len(images))
    for i in range(0, len(images), 4096):  # chunks: bounded memory for 10^5-pair sets
        x = np.asarray(images[i : i + 4096], np.float64).reshape(-1, 2, images.shape[-1] * images.shape[-2])
        x = x - x.mean(axis=2, keepdims=True)
        norm = np.sqrt((x**2).sum(axis=2))
        den = norm[:, 0] * norm[:, 1]
        num = (x[:, 0] * x[:, 1]).sum(axis=1)
        out[i : i + len(x)] = np.divide(num, den, out=np.zeros(len(x)), where=den > 0)
    return out


def _float_outputs(out: RRLNetOutputs) -> RRLNetOutputs:
    """The outputs in float32 (after a bf16 autocast forward), so the losses are computed in float32."""
    return RRLNetOutputs(
        [lg.float() for lg in out.logits],
        None if out.recon_a is None else out.recon_a.float(),
        None if out.recon_b is None else out.recon_b.float(),
    )


@torch.no_grad()
def score_patchset(net: RRLNet, data: PatchSet, device: torch.device, batch: int = 128) -> np.ndarray:
    """Main-head match probabilities ``(N,)`` of ``net`` (eval mode) on a patch set."""
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, len(data), batch):
        a, b = _to_tensors(data.images[i : i + batch], device)
        out.append(torch.sigmoid(net(a, b, main_only=True).main).float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out)


@torch.no_grad()
def recalibrate_batchnorm(net: RRLNet, data: PatchSet, device: torch.device, batches: int, batch_size: int,
                          rng: np.random.Generator) -> None:
    """Re-estimate every BatchNorm's running mean / variance on ``batches`` training batches.

    With the Keras momentum (0.99 per step) the running statistics need a few hundred steps to
    forget their initial values (mean 0, variance 1); a short CPU run never gets there, and the
    eval-mode network (validation, the exported model) then sees wrong statistics. This replaces
    them with the cumulative average over fresh, un-augmented batches. Weights are untouched.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = net.training
    net.train()
    for _ in range(batches):
        idx = np.sort(rng.choice(len(data), size=min(batch_size, len(data)), replace=False))
        a, b = _to_tensors(data.images[idx], device)
        net(a, b)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    net.train(was_training)


def load_initial_weights(net: RRLNet, path: str | Path) -> None:
    """Load the full (unpruned) network weights of ``path`` into ``net``, as float32.

    ``path`` holds a checkpoint dict with ``"model"`` (``best.pt`` / ``last.pt``) or a plain state
    dict; fp16 tensors (a small warm-start file) are cast to the parameter's dtype.

    Raises:
        ValueError: the file's tensors do not fit the network (the message names the file).
    """
    state = load_torch_weights(path, "initial weights")
    weights = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(weights, dict):
        raise ValueError(f"initial weights {path}: expected a state dict or a checkpoint with 'model'")
    own = net.state_dict()
    try:
        net.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in weights.items()})
    except RuntimeError as exc:
        raise ValueError(f"initial weights {path} do not fit the unpruned RRL-Net: {str(exc)[:300]}") from None


def train_rrlnet(
    train: PatchSet,
    val: PatchSet,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    init: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train RRL-Net on patch pairs.

    Args:
        train: Training pairs ``(N, 2, 64, 64)`` uint8 + labels.
        val: Validation pairs (both classes present).
        out_dir: Folder for checkpoints and the history.
        config: Options; default the paper's recipe.
        resume: A ``last.pt`` written by an earlier run: continue from it.
        init: Network weights to start from (a ``best.pt`` / ``last.pt`` or a plain state dict,
            fp16 or fp32; see :func:`load_initial_weights`); the optimiser, step count and history
            start afresh. Ignored with ``resume``.
        progress: Show a tqdm progress bar per epoch.
        log: Where one line per epoch goes.

    Returns:
        The best validation FPR95 / AUC, where it was reached, steps and time.
    """
    cfg = config or TrainConfig()
    if train.images.shape[2:] != (64, 64):
        raise ValueError(f"RRL-Net trains on 64 x 64 patches, got {train.images.shape[2:]}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch_device(cfg.device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = RRLNet().to(device)
    loss_fn = RRLNetLoss(make_perceptual(cfg.perceptual, cfg.vgg19_weights), cfg.alpha, cfg.beta).to(device)
    opt = torch.optim.NAdam(net.parameters(), lr=cfg.lr, momentum_decay=4e-3, eps=1e-7)
    start_epoch, step = 0, 0
    best = {"fpr95": math.inf, "auc": 0.0, "epoch": -1}
    history: list[dict[str, Any]] = []
    spent = 0.0
    if init is not None and resume is None:
        load_initial_weights(net, init)
        log(f"network weights from {init}")
    if resume is not None:
        state = load_torch_weights(resume, "checkpoint")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, step, best, history = state["epoch"] + 1, state["step"], state["best"], state["history"]
        spent = float(state.get("seconds", 0.0))
        rng.bit_generator.state = state["rng"]
        log(f"resumed from {resume}: epoch {start_epoch}, step {step}, best FPR95 {best['fpr95']:.4f}")
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(train) // cfg.batch_size)
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else math.inf
    ncc_f95 = fpr95(val.labels, ncc_scores(val.images))
    log(f"validation pairs {len(val)}: plain NCC FPR95 {ncc_f95 * 100:.2f} % (the baseline on these patches)")
    t0 = time.monotonic() - spent
    stopped = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        bar: Any = range(steps_per_epoch)
        if progress:
            from tqdm import tqdm

            bar = tqdm(bar, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        losses = []
        for i_step in bar:
            idx = rng.choice(len(train), size=min(cfg.batch_size, len(train)), replace=False)
            imgs = train.images[np.sort(idx)]
            if cfg.augment:
                imgs = augment_pairs(imgs, rng)
            a, b = _to_tensors(imgs, device)
            y = torch.from_numpy(train.labels[np.sort(idx)].astype(np.float32)).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                outputs = net(a, b)
            loss, parts = loss_fn(_float_outputs(outputs), a, b, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            report_epoch_step(epoch, cfg.epochs, i_step, steps_per_epoch)
            losses.append(float(loss.detach()))
            if progress:
                bar.set_postfix(loss=f"{losses[-1]:.3f}", bce=f"{parts['bce']:.3f}", rec=f"{parts['rec']:.4f}")
            if time.monotonic() - t0 > budget:
                stopped = True
                break
        if cfg.bn_recalibrate_batches > 0:
            recalibrate_batchnorm(net, train, device, cfg.bn_recalibrate_batches, cfg.batch_size, rng)
        scores = score_patchset(net, val, device, cfg.val_batch)
        f95, area = fpr95(val.labels, scores), auc(val.labels, scores)
        row = {
            "epoch": epoch + 1,
            "step": step,
            "loss": float(np.mean(losses)) if losses else math.nan,
            "val_fpr95": f95,
            "val_auc": area,
            "val_ncc_fpr95": ncc_f95,
            "seconds": round(time.monotonic() - t0, 1),
        }
        history.append(row)
        improved = f95 < best["fpr95"]
        if improved:
            best = {"fpr95": f95, "auc": area, "epoch": epoch + 1}
            torch.save({"model": net.state_dict(), "epoch": epoch + 1, "metrics": plain_data(row)}, out / "best.pt")
            torch.save(net.inference_state_dict(), out / "best_inference.pt")
        log(
            f"epoch {epoch + 1}: loss {row['loss']:.4f}  val FPR95 {f95 * 100:.2f} % (NCC {ncc_f95 * 100:.1f} %)"
            f"  AUC {area:.4f}"
            f"{'  (best)' if improved else ''}  [{row['seconds']:.0f} s, step {step}]"
        )
        torch.save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "step": step,
                "best": plain_data(best),
                "history": plain_data(history),
                "rng": plain_data(rng.bit_generator.state),
                "seconds": time.monotonic() - t0,
                "config": plain_data(asdict(cfg)),
            },
            out / "last.pt",
        )
        (out / "history.json").write_text(json.dumps({"config": asdict(cfg), "history": history}, indent=1))
        if stopped:
            log(f"stopped: time budget of {cfg.max_minutes} min used")
            break
    if cfg.export_onnx and (out / "best.pt").is_file():
        best_net = RRLNet()
        best_net.load_state_dict(load_torch_weights(out / "best.pt", "checkpoint")["model"])
        export_onnx(best_net, out / "best.onnx")
    return TrainResult(
        best_fpr95=float(best["fpr95"]),
        best_auc=float(best["auc"]),
        best_epoch=int(best["epoch"]),
        epochs_run=epoch + 1,
        steps=step,
        seconds=round(time.monotonic() - t0, 1),
        stopped_by_budget=stopped,
        out_dir=str(out),
        history=history,
    )
