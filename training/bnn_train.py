"""Training loop of the BNN, from scratch (NP-BNN) or from MoCo encoders (MoCo-BNN).

Recipe (Qian et al. 2022, sec. 3.2): SGD with momentum 0.9 and weight decay 1e-3 (the paper gives
these for MoCo; we use them for BNN too), lr 0.05 for 10 epochs when fine-tuning MoCo encoders on
QXS-SAROPT / SEN1-2 (SARptical: lr 0.1, 100 epochs). Every mini-batch is balanced (half positives
``(x_s^i, x_o^i)``, half negatives ``(x_s^i, x_o^j)``, :func:`~sarcoreg.training.bnn_losses.balanced_indices`),
loss :func:`~sarcoreg.training.bnn_losses.bnn_loss` with ``alpha = 1``. The batch size is not in
the paper: default 32. An epoch shows every training pair once as a positive.

After each epoch the validation pool is scored on a fixed balanced pair set
(:func:`~sarcoreg.training.pair_datasets.eval_pairs`); the decision threshold on ``h`` is the one
with the best validation accuracy, and accuracy, precision, recall (the paper's tables), FPR95 and
AUC (score = ``-h``) are logged. The checkpoint with the best validation accuracy is kept.

Files in ``out_dir``: ``last.pt`` (resume), ``best.pt``, ``best_inference.pt`` (state dict with
its ``bnn_config``, loadable by :func:`sarcoreg.models.load`), ``best.onnx``, ``roc_val.png``,
``history.json``.
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
from sarcoreg.models.bnn import BNN, export_onnx
from sarcoreg.models.patch_model import torch_device
from sarcoreg.models.safe_load import load_torch_weights, plain_data
from sarcoreg.training.bnn_losses import balanced_indices, bnn_loss, to_tensor
from sarcoreg.training.metrics import auc, fpr95, roc_curve
from sarcoreg.training.pair_datasets import AlignedPatches, eval_pairs

from .step_hook import report_epoch_step

__all__ = [
    "BNNTrainConfig",
    "BNNTrainResult",
    "best_threshold",
    "classification_metrics",
    "distances",
    "evaluate",
    "roc_png",
    "train_bnn",
]


@dataclass
class BNNTrainConfig:
    """Options of :func:`train_bnn` (defaults: the paper's MoCo-BNN fine-tuning)."""

    backbone: str = "vgg11"
    width: int = 64
    init: str = "np"
    moco_sar: str | None = None
    moco_opt: str | None = None
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-3
    alpha: float = 1.0
    augment: bool = False
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    max_steps: int | None = None
    seed: int = 100
    val_batch: int = 128
    export_onnx: bool = True


@dataclass
class BNNTrainResult:
    """Outcome of a training run (validation metrics of the best epoch)."""

    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    steps: int
    seconds: float
    stopped_by_budget: bool
    out_dir: str
    history: list[dict[str, Any]] = field(default_factory=list)


@torch.no_grad()
def distances(net: BNN, pool: AlignedPatches, sar_idx: np.ndarray, opt_idx: np.ndarray, device: torch.device,
              batch: int = 128) -> np.ndarray:
    """``h`` ``(K,)`` of the pairs ``(pool.sar[sar_idx[k]], pool.opt[opt_idx[k]])`` (eval mode)."""
    was = net.training
    net.eval()
    out = []
    for i in range(0, len(sar_idx), batch):
        b = to_tensor(pool.sar[sar_idx[i : i + batch]], device)
        a = to_tensor(pool.opt[opt_idx[i : i + batch]], device)
        out.append(net.distance(a, b).float().cpu().numpy())
    net.train(was)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def classification_metrics(labels: np.ndarray, h: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision and recall of "match when ``h < threshold``".

    Args:
        labels: ``(N,)`` 1 = matching pair.
        h: ``(N,)`` distances.
        threshold: Decision threshold on ``h``.
    """
    y = np.asarray(labels) > 0.5
    pred = np.asarray(h) < threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    return {
        "accuracy": float((pred == y).mean()),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
    }


def best_threshold(labels: np.ndarray, h: np.ndarray) -> float:
    """The threshold on ``h`` with the highest accuracy (midpoints between sorted distances)."""
    s = np.sort(np.unique(np.asarray(h, np.float64)))
    cands = np.r_[s[0] - 1e-6, (s[1:] + s[:-1]) / 2.0, s[-1] + 1e-6] if len(s) else np.array([0.5])
    y = np.asarray(labels) > 0.5
    acc = [float(((np.asarray(h) < t) == y).mean()) for t in cands]
    return float(cands[int(np.argmax(acc))])


def evaluate(net: BNN, pool: AlignedPatches, device: torch.device, threshold: float | None = None,
             seed: int = 0, batch: int = 128) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Metrics on the fixed balanced pair set of ``pool``.

    Args:
        net: The network.
        pool: Evaluation patches (at least two groups).
        device: Where to run.
        threshold: Decision threshold on ``h``; None: chosen here (best accuracy).
        seed: Negative partners.
        batch: Pairs per forward.

    Returns:
        ``(metrics, labels, h)``: metrics has threshold, accuracy, precision, recall, fpr95, auc,
        mean h of positives / negatives.
    """
    s_idx, o_idx, labels = eval_pairs(pool, seed)
    h = distances(net, pool, s_idx, o_idx, device, batch)
    t = best_threshold(labels, h) if threshold is None else float(threshold)
    m = {"threshold": t, **classification_metrics(labels, h, t), "fpr95": fpr95(labels, -h), "auc": auc(labels, -h),
         "h_pos": float(h[labels > 0.5].mean()), "h_neg": float(h[labels < 0.5].mean())}
    return m, labels, h


def roc_png(labels: np.ndarray, h: np.ndarray, path: str | Path, title: str = "BNN ROC") -> Path:
    """ROC curve (score ``-h``) with its AUC and FPR95 as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_curve(labels, -np.asarray(h))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC {auc(labels, -h):.3f}, FPR95 {100 * fpr95(labels, -h):.1f} %")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def _augment(sar: np.ndarray, opt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from sarcoreg.training.augment import augment_pairs

    pairs = augment_pairs(np.stack([opt, sar], axis=1), rng)
    return pairs[:, 1], pairs[:, 0]


def train_bnn(
    train: AlignedPatches,
    val: AlignedPatches,
    out_dir: str | Path,
    config: BNNTrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> BNNTrainResult:
    """Train a BNN on aligned patch pools.

    Args:
        train: Training pool (at least two groups).
        val: Validation pool (at least two groups).
        out_dir: Output folder (see the module docstring).
        config: Options; ``init="moco"`` needs ``moco_sar`` and ``moco_opt`` encoder files.
        resume: ``last.pt`` of an earlier run: continue it.
        progress: tqdm bar per epoch.
        log: One line per epoch.

    Returns:
        Best epoch, its validation metrics, steps and time.

    Raises:
        ValueError: Bad ``init`` or missing encoder files, patch sizes of the pools differ.
    """
    cfg = config or BNNTrainConfig()
    if train.patch_size != val.patch_size:
        raise ValueError(f"training ({train.patch_size}) and validation ({val.patch_size}) patch sizes differ")
    if cfg.init not in ("np", "moco"):
        raise ValueError(f"init must be 'np' (from scratch) or 'moco', got {cfg.init!r}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch_device(cfg.device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = BNN(cfg.backbone, patch_size=train.patch_size, width=cfg.width)
    if cfg.init == "moco" and resume is None:
        if not cfg.moco_sar or not cfg.moco_opt:
            raise ValueError("init='moco' needs moco_sar and moco_opt (encoder_*.pt of sarcoreg-train bnn-moco)")
        from sarcoreg.training.moco import transfer_to_bnn

        transfer_to_bnn(net, cfg.moco_sar, cfg.moco_opt)
        log(f"towers initialised from {cfg.moco_sar} and {cfg.moco_opt}")
    net.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start_epoch, step, spent = 0, 0, 0.0
    best: dict[str, Any] = {"accuracy": -1.0, "epoch": -1, "metrics": {}}
    history: list[dict[str, Any]] = []
    if resume is not None:
        st = load_torch_weights(resume, "checkpoint")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        start_epoch, step, best, history = st["epoch"] + 1, st["step"], st["best"], st["history"]
        spent = float(st["seconds"])
        rng.bit_generator.state = st["rng"]
        log(f"resumed from {resume}: epoch {start_epoch}, step {step}")
    steps_per_epoch = cfg.steps_per_epoch or max(1, math.ceil(len(train) / max(1, cfg.batch_size // 2)))
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else math.inf
    t0 = time.monotonic() - spent
    stopped, epoch = False, start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        bar: Any = range(steps_per_epoch)
        if progress:
            from tqdm import tqdm

            bar = tqdm(bar, desc=f"bnn {epoch + 1}/{cfg.epochs}", leave=False)
        losses = []
        for i_step in bar:
            s_idx, o_idx, y = balanced_indices(len(train), cfg.batch_size, rng, train.groups)
            sar, optical = train.sar[s_idx], train.opt[o_idx]
            if cfg.augment:
                sar, optical = _augment(sar, optical, rng)
            h = net.distance(to_tensor(optical, device), to_tensor(sar, device))
            loss, parts = bnn_loss(h, torch.from_numpy(y).to(device), cfg.alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            report_epoch_step(epoch, cfg.epochs, i_step, steps_per_epoch)
            losses.append(float(loss.detach()))
            if progress:
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lp=f"{parts['l_p']:.3f}", ln=f"{parts['l_n']:.3f}")
            if time.monotonic() - t0 > budget or (cfg.max_steps is not None and step >= cfg.max_steps):
                stopped = True
                break
        metrics, labels, h_val = evaluate(net, val, device, seed=cfg.seed, batch=cfg.val_batch)
        row = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)) if losses else math.nan,
               **{f"val_{k}": v for k, v in metrics.items()}, "seconds": round(time.monotonic() - t0, 1)}
        history.append(row)
        improved = metrics["accuracy"] > best["accuracy"]
        if improved:
            best = {"accuracy": metrics["accuracy"], "epoch": epoch + 1, "metrics": metrics}
            torch.save({"model": net.state_dict(), "epoch": epoch + 1, "metrics": plain_data(metrics)}, out / "best.pt")
            torch.save(net.state_dict(), out / "best_inference.pt")
            roc_png(labels, h_val, out / "roc_val.png", f"BNN {cfg.backbone} ({cfg.init}), epoch {epoch + 1}")
        log(f"epoch {epoch + 1}: loss {row['loss']:.4f}  val acc {metrics['accuracy']:.3f} prec "
            f"{metrics['precision']:.3f} rec {metrics['recall']:.3f} FPR95 {100 * metrics['fpr95']:.1f} % "
            f"(h < {metrics['threshold']:.3f}){'  (best)' if improved else ''}  [{row['seconds']:.0f} s]")
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
                    "best": plain_data(best), "history": plain_data(history),
                    "rng": plain_data(rng.bit_generator.state), "seconds": time.monotonic() - t0,
                    "config": plain_data(asdict(cfg))}, out / "last.pt")
        (out / "history.json").write_text(json.dumps({"config": asdict(cfg), "history": history}, indent=1))
        if stopped:
            log("stopped: time / step budget used")
            break
    if cfg.export_onnx and (out / "best.pt").is_file():
        best_net = BNN(cfg.backbone, patch_size=train.patch_size, width=cfg.width)
        best_net.load_state_dict(load_torch_weights(out / "best.pt", "checkpoint")["model"])
        export_onnx(best_net, out / "best.onnx")
    return BNNTrainResult(int(best["epoch"]), dict(best["metrics"]), epoch + 1, step,
                          round(time.monotonic() - t0, 1), stopped, str(out), history)
