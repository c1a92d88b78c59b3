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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarcoreg.models.rrlnet import RRLNet, RRLNetOutputs, export_onnx
from sarcoreg.models.safe_load import load_torch_weights
from sarcoreg.training.augment import augment_pairs
from sarcoreg.training.metrics import auc, fpr95
from sarcoreg.training.patches import PatchSet
from sarcoreg.training.rrlnet_losses import RRLNetLoss, make_perceptual
from typing_extensions import override

from .loop import LoopConfig, RunOptions, TrainContext, TrainMethod, load_best, run_training, save_atomic

__all__ = ["TrainConfig", "TrainResult", "RRLNetMethod", "load_initial_weights", "ncc_scores", "recalibrate_batchnorm",
           "score_patchset", "train_rrlnet"]


@dataclass
class TrainConfig(RunOptions):
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


class RRLNetMethod(TrainMethod):
    """RRL-Net on :func:`~sarcoreg.training.loop.run_training`: Nadam, random pairs, FPR95 validation.

    Args:
        ctx: The loop's context (device, generator, DDP).
        train: Training pairs.
        val: Validation pairs.
        cfg: Options.
        init: Network weights to start from (see :func:`load_initial_weights`), or None.
    """

    name = "rrlnet"
    net: RRLNet
    legacy_best_key = "fpr95"

    def __init__(self, ctx: TrainContext, train: PatchSet, val: PatchSet, cfg: TrainConfig,
                 init: str | Path | None = None) -> None:
        self.ctx, self.train, self.val, self.cfg = ctx, train, val, cfg
        self.net = RRLNet().to(ctx.device)
        perceptual = make_perceptual(cfg.perceptual, cfg.vgg19_weights)
        self.loss_fn = RRLNetLoss(perceptual, cfg.alpha, cfg.beta).to(ctx.device)
        self.opt = torch.optim.NAdam(self.net.parameters(), lr=cfg.lr, momentum_decay=4e-3, eps=1e-7)
        if init is not None:
            load_initial_weights(self.net, init)
            ctx.log(f"network weights from {init}")
        self.trained = ctx.wrap(self.net)
        self.ncc_f95 = math.nan



    @override
    def before_training(self, resumed: bool) -> None:
        self.ncc_f95 = fpr95(self.val.labels, ncc_scores(self.val.images))
        self.ctx.log(f"validation pairs {len(self.val)}: plain NCC FPR95 {self.ncc_f95 * 100:.2f} % "
                     "(the baseline on these patches)")


    @override
    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        ctx, cfg, train = self.ctx, self.cfg, self.train
        idx = np.sort(ctx.rng.choice(len(train), size=min(cfg.batch_size, len(train)), replace=False))
        imgs = train.images[idx]
        if cfg.augment:
            imgs = augment_pairs(imgs, ctx.rng)
        a, b = _to_tensors(ctx.shard(imgs), ctx.device)
        y = torch.from_numpy(ctx.shard(train.labels[idx]).astype(np.float32)).to(ctx.device)
        with ctx.autocast():
            outputs = self.trained(a, b)
        loss, parts = self.loss_fn(_float_outputs(outputs), a, b, y)
        ctx.optimise(loss, self.opt)
        return {"loss": float(loss.detach()), **parts}

    @override
    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{parts['loss']:.3f}", "bce": f"{parts['bce']:.3f}", "rec": f"{parts['rec']:.4f}"}

    @override
    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.bn_recalibrate_batches > 0:
            recalibrate_batchnorm(self.net, self.train, self.ctx.device, cfg.bn_recalibrate_batches, cfg.batch_size,
                                  self.ctx.rng)
        scores = score_patchset(self.net, self.val, self.ctx.device, cfg.val_batch)
        return {"loss": float(np.mean([s["loss"] for s in steps])) if steps else math.nan,
                "val_fpr95": fpr95(self.val.labels, scores), "val_auc": auc(self.val.labels, scores),
                "val_ncc_fpr95": self.ncc_f95}

    @override
    def score(self, row: dict[str, Any]) -> float:
        return float(row["val_fpr95"])

    @override
    def on_best(self, row: dict[str, Any], out: Path | None) -> None:
        if out is not None:
            save_atomic(self.net.inference_state_dict(), out / "best_inference.pt")

    @override
    def epoch_line(self, row: dict[str, Any], improved: bool) -> str:
        return (f"epoch {row['epoch']}: loss {row['loss']:.4f}  val FPR95 {row['val_fpr95'] * 100:.2f} % "
                f"(NCC {row['val_ncc_fpr95'] * 100:.1f} %)  AUC {row['val_auc']:.4f}"
                f"{'  (best)' if improved else ''}  [{row['seconds']:.0f} s, step {row['step']}]")


    @override
    def export(self, out: Path) -> None:
        if self.cfg.export_onnx:
            export_onnx(load_best(RRLNet(), out), out / "best.onnx")


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
    """Train RRL-Net on patch pairs (one process, or one of ``torchrun``'s processes).

    Args:
        train: Training pairs ``(N, 2, 64, 64)`` uint8 + labels.
        val: Validation pairs (both classes present).
        out_dir: Folder for checkpoints and the history.
        config: Options; default the paper's recipe.
        resume: A ``last.pt`` written by an earlier run (this loop's or the hand-written one's):
            continue from it.
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
    loop = LoopConfig.from_options(cfg, cfg.steps_per_epoch or max(1, len(train) // cfg.batch_size), progress)
    res = run_training(lambda ctx: RRLNetMethod(ctx, train, val, cfg, None if resume is not None else init),
                       out_dir, loop, resume=resume, log=log)
    return TrainResult(
        best_fpr95=res.best_value("val_fpr95", math.inf),
        best_auc=res.best_value("val_auc", 0.0),
        best_epoch=int(res.best["epoch"]),
        epochs_run=res.epochs_run,
        steps=res.steps,
        seconds=res.seconds,
        stopped_by_budget=res.stopped_by_budget,
        out_dir=res.out_dir,
        history=res.history,
    )
