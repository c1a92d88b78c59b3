"""Training loop of the BNN, from scratch (NP-BNN) or from MoCo encoders (MoCo-BNN).

Recipe (Qian et al. 2022, sec. 3.2): SGD with momentum 0.9 and weight decay 1e-3 (the paper gives
these for MoCo; we use them for BNN too), lr 0.05 for 10 epochs when fine-tuning MoCo encoders on
QXS-SAROPT / SEN1-2 (SARptical: lr 0.1, 100 epochs). Every mini-batch is balanced (half positives
``(x_s^i, x_o^i)``, half negatives ``(x_s^i, x_o^j)``, :func:`~sarcoreg.training.bnn_losses.balanced_indices`),
loss :func:`~sarcoreg.training.bnn_losses.bnn_loss` with ``alpha = 1``. The batch size is not in
the paper: default 32. An epoch shows every training pair once as a positive.

Hard negatives (not in the paper; for dense registration search, issue 17): with
``hard_negatives = F > 0`` a share ``F`` of each batch's negatives is the SAR patch against the
optical crop of the *same place* moved by an offset whose larger axis lies in
``[min_shift, max_shift]`` px (:func:`make_batch`); the pools must keep a margin of at least
``max_shift`` px around each patch (:class:`~sarcoreg.training.pair_datasets.AlignedPatches`).
``F = 0`` draws exactly the batches of earlier versions. When the validation pool keeps a margin,
validation also scores every pair against a fixed near-shifted optical crop (``near_auc``,
``near_fpr95``, ``mixed_auc``: positives against far and near negatives together); with ``F > 0``
the best epoch is the one with the highest ``mixed_auc`` instead of the best accuracy.

After each epoch the validation pool is scored on a fixed balanced pair set
(:func:`~sarcoreg.training.pair_datasets.eval_pairs`); the decision threshold on ``h`` is the one
with the best validation accuracy, and accuracy, precision, recall (the paper's tables), FPR95 and
AUC (score = ``-h``) are logged. The checkpoint with the best validation accuracy is kept.

Files in ``out_dir``: ``last.pt`` (resume), ``best.pt``, ``best_inference.pt`` (state dict with
its ``bnn_config``, loadable by :func:`sarcoreg.models.load`), ``best.onnx``, ``roc_val.png``,
``history.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarcoreg.models.bnn import BNN, export_onnx
from sarcoreg.training.bnn_losses import balanced_indices, bnn_loss, to_tensor
from sarcoreg.training.metrics import auc, fpr95, roc_curve
from sarcoreg.training.pair_datasets import AlignedPatches, eval_pairs, eval_pairs_near, shift_offsets
from torch import nn
from typing_extensions import override

from .loop import LoopConfig, RunOptions, TrainContext, TrainMethod, load_best, run_training, save_atomic

__all__ = [
    "BNNMethod",
    "BNNTrainConfig",
    "BNNTrainResult",
    "best_threshold",
    "classification_metrics",
    "distances",
    "evaluate",
    "make_batch",
    "pair_distances",
    "roc_png",
    "train_bnn",
]


@dataclass
class BNNTrainConfig(RunOptions):
    """Options of :func:`train_bnn` (defaults: the paper's MoCo-BNN fine-tuning).

    ``hard_negatives``: share of each batch's negatives that are near-shifted crops of the same
    place (offset larger axis in ``[min_shift, max_shift]`` px); needs pools with a margin of at
    least ``max_shift``. 0: the paper's negatives from other scenes only. ``hard_warmup_steps``:
    far negatives only for that many first steps (hard negatives from step 0 keep the network on
    the ``h = 0.5`` plateau, see ``bench/README.md``).
    """

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
    max_steps: int | None = None
    val_batch: int = 128
    export_onnx: bool = True
    bf16: bool = False
    channels_last: bool = False
    hard_negatives: float = 0.0
    min_shift: int = 2
    max_shift: int = 8
    hard_warmup_steps: int = 0


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
def pair_distances(net: BNN, sar: np.ndarray, opt: np.ndarray, device: torch.device, batch: int = 128) -> np.ndarray:
    """``h`` ``(K,)`` of uint8 SAR / optical patches ``(K, P, P)`` (eval mode)."""
    was = net.training
    net.eval()
    out = []
    for i in range(0, len(sar), batch):
        b = to_tensor(sar[i : i + batch], device)
        a = to_tensor(opt[i : i + batch], device)
        out.append(net.distance(a, b).float().cpu().numpy())
    net.train(was)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def distances(net: BNN, pool: AlignedPatches, sar_idx: np.ndarray, opt_idx: np.ndarray, device: torch.device,
              batch: int = 128) -> np.ndarray:
    """``h`` ``(K,)`` of the centre-crop pairs ``(pool.sar[sar_idx[k]], pool.opt[opt_idx[k]])`` (eval mode)."""
    c = pool.centre()
    return pair_distances(net, c.sar[np.asarray(sar_idx)], c.opt[np.asarray(opt_idx)], device, batch)


def make_batch(pool: AlignedPatches, batch_size: int, rng: np.random.Generator, hard_negatives: float = 0.0,
               min_shift: int = 2, max_shift: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A balanced training batch with a share of near-shifted (hard) negatives.

    Half the batch are positives (centre crops of one pair). Of the ``n`` negatives,
    ``round(hard_negatives * n)`` pair a SAR centre crop with the optical crop of the same pair
    moved by :func:`~sarcoreg.training.pair_datasets.shift_offsets`; the others pair it with an
    optical patch of another group (:func:`~sarcoreg.training.bnn_losses.balanced_indices`, the
    very same draws as before when ``hard_negatives = 0``). With ``hard_negatives = 1`` no second
    group is needed.

    Args:
        pool: Training pool; margin >= ``max_shift`` when ``hard_negatives > 0``.
        batch_size: Pairs per batch.
        rng: Random generator.
        hard_negatives: Share of the negatives that are near-shifted, in [0, 1].
        min_shift: Smallest larger-axis offset of a hard negative, px.
        max_shift: Largest larger-axis offset, px.

    Returns:
        ``(sar, opt, labels, shift)``: ``(B, P, P)`` uint8 patches, ``(B,)`` float32 labels
        (1 = positive), ``(B, 2)`` int64 optical offsets ``(dx, dy)`` (zero except for hard negatives).

    Raises:
        ValueError: ``hard_negatives`` outside [0, 1] or a margin smaller than ``max_shift``.
    """
    if not 0.0 <= hard_negatives <= 1.0:
        raise ValueError(f"hard_negatives must be in [0, 1], got {hard_negatives}")
    n_pos = batch_size // 2
    n_neg = batch_size - n_pos
    n_hard = int(round(hard_negatives * n_neg))
    if n_hard and pool.margin < max_shift:
        raise ValueError(f"hard negatives shifted up to {max_shift} px need a pool margin >= {max_shift}, "
                         f"got {pool.margin}")
    if n_hard < n_neg:
        s_idx, o_idx, labels = balanced_indices(len(pool), batch_size, rng, pool.groups)
    else:
        pos = rng.choice(len(pool), size=n_pos, replace=n_pos > len(pool))
        neg = rng.choice(len(pool), size=n_neg, replace=n_neg > len(pool))
        s_idx = o_idx = np.r_[pos, neg].astype(np.int64)
        labels = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(np.float32)
    c = pool.centre()
    sar, opt = c.sar[s_idx], c.opt[o_idx]
    shift = np.zeros((batch_size, 2), np.int64)
    if n_hard:
        rows = np.arange(batch_size - n_hard, batch_size)
        shift[rows] = shift_offsets(n_hard, rng, min_shift, max_shift)
        opt[rows] = pool.crops(s_idx[rows], shift[rows])[1]
    return sar, opt, labels, shift


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
             seed: int = 0, batch: int = 128, near: tuple[int, int] | None = None,
             ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Metrics on the fixed balanced pair set of ``pool`` (centre crops).

    Args:
        net: The network.
        pool: Evaluation patches (at least two groups).
        device: Where to run.
        threshold: Decision threshold on ``h``; None: chosen here (best accuracy).
        seed: Negative partners.
        batch: Pairs per forward.
        near: ``(min_shift, max_shift)``: also score each pair against a fixed near-shifted optical
            crop (:func:`~sarcoreg.training.pair_datasets.eval_pairs_near`; pool margin >= max_shift).

    Returns:
        ``(metrics, labels, h)``: metrics has threshold, accuracy, precision, recall, fpr95, auc,
        mean h of positives / negatives, and with ``near`` also ``near_auc``, ``near_fpr95``
        (positives vs near negatives), ``mixed_auc``, ``mixed_fpr95`` (vs far and near negatives)
        and ``h_near``. ``labels`` / ``h`` are those of the far set.
    """
    s_idx, o_idx, labels = eval_pairs(pool, seed)
    h = distances(net, pool, s_idx, o_idx, device, batch)
    t = best_threshold(labels, h) if threshold is None else float(threshold)
    m = {"threshold": t, **classification_metrics(labels, h, t), "fpr95": fpr95(labels, -h), "auc": auc(labels, -h),
         "h_pos": float(h[labels > 0.5].mean()), "h_neg": float(h[labels < 0.5].mean())}
    if near is not None:
        sar, opt, _ = eval_pairs_near(pool, seed, *near)
        h_near = pair_distances(net, sar, opt, device, batch)
        h_pos = h[labels > 0.5]
        y_near = np.r_[np.ones(len(h_pos)), np.zeros(len(h_near))]
        y_mixed = np.r_[labels, np.zeros(len(h_near))]
        m.update({"near_auc": auc(y_near, -np.r_[h_pos, h_near]), "near_fpr95": fpr95(y_near, -np.r_[h_pos, h_near]),
                  "mixed_auc": auc(y_mixed, -np.r_[h, h_near]), "mixed_fpr95": fpr95(y_mixed, -np.r_[h, h_near]),
                  "h_near": float(h_near.mean())})
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


def _augment(sar: np.ndarray, opt: np.ndarray, rng: np.random.Generator,
             independent_geometry: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RRL-Net augmentation of ``(B, P, P)`` SAR / optical batches (no independent shifts with hard negatives)."""
    from sarcoreg.training.augment import augment_pairs

    pairs = augment_pairs(np.stack([opt, sar], axis=1), rng, independent_geometry)
    return pairs[:, 1], pairs[:, 0]


class _Distance(nn.Module):
    """``h`` of a BNN as a ``forward`` (DistributedDataParallel syncs gradients of ``forward`` calls only)."""

    def __init__(self, net: BNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Optical ``a`` and SAR ``b`` ``(N, 1, P, P)`` -> ``h`` ``(N,)``."""
        return self.net.distance(a, b)


class BNNMethod(TrainMethod):
    """The BNN on :func:`~sarcoreg.training.loop.run_training`: balanced batches, accuracy-picked best epoch.

    Args:
        ctx: The loop's context.
        train: Training pool.
        val: Validation pool.
        cfg: Options.
        load_moco: Initialise the towers from the MoCo encoders of ``cfg`` (``init="moco"``, not resuming).
    """

    name = "bnn"
    net: BNN
    legacy_best_key = "accuracy"
    legacy_higher_is_better = True
    label = "bnn"

    def __init__(self, ctx: TrainContext, train: AlignedPatches, val: AlignedPatches, cfg: BNNTrainConfig,
                 load_moco: bool) -> None:
        self.ctx, self.train, self.val, self.cfg = ctx, train, val, cfg
        self.net = BNN(cfg.backbone, patch_size=train.patch_size, width=cfg.width)
        if load_moco:
            if not cfg.moco_sar or not cfg.moco_opt:
                raise ValueError("init='moco' needs moco_sar and moco_opt (encoder_*.pt of sarcoreg-train bnn-moco)")
            from sarcoreg.training.moco import transfer_to_bnn

            transfer_to_bnn(self.net, cfg.moco_sar, cfg.moco_opt)
            ctx.log(f"towers initialised from {cfg.moco_sar} and {cfg.moco_opt}")
        ctx.place(self.net)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.trained = ctx.wrap(_Distance(self.net))
        self._roc: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))




    @override
    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        ctx, cfg = self.ctx, self.cfg
        share = cfg.hard_negatives if step >= cfg.hard_warmup_steps else 0.0
        sar, optical, y, _ = make_batch(self.train, cfg.batch_size, ctx.rng, share, cfg.min_shift, cfg.max_shift)
        if cfg.augment:
            sar, optical = _augment(sar, optical, ctx.rng, independent_geometry=cfg.hard_negatives == 0)
        with ctx.autocast():
            h = self.trained(to_tensor(ctx.shard(optical), ctx.device), to_tensor(ctx.shard(sar), ctx.device))
        loss, parts = bnn_loss(h.float(), torch.from_numpy(ctx.shard(y)).to(ctx.device), cfg.alpha)
        ctx.optimise(loss, self.opt)
        return {"loss": float(loss.detach()), **parts}

    @override
    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{parts['loss']:.3f}", "lp": f"{parts['l_p']:.3f}", "ln": f"{parts['l_n']:.3f}"}

    @override
    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        cfg = self.cfg
        near = (cfg.min_shift, cfg.max_shift) if self.val.margin >= cfg.max_shift else None
        metrics, labels, h = evaluate(self.net, self.val, self.ctx.device, seed=cfg.seed, batch=cfg.val_batch,
                                      near=near)
        self._roc = (labels, h)
        return {"loss": float(np.mean([s["loss"] for s in steps])) if steps else math.nan,
                **{f"val_{k}": v for k, v in metrics.items()}}

    @override
    def score(self, row: dict[str, Any]) -> float:
        return -float(row["val_mixed_auc"] if self.cfg.hard_negatives > 0 else row["val_accuracy"])

    @override
    def on_best(self, row: dict[str, Any], out: Path | None) -> None:
        if out is not None:
            save_atomic(self.net.state_dict(), out / "best_inference.pt")
            roc_png(*self._roc, out / "roc_val.png", f"BNN {self.cfg.backbone} ({self.cfg.init}), epoch {row['epoch']}")

    @override
    def epoch_line(self, row: dict[str, Any], improved: bool) -> str:
        return (f"epoch {row['epoch']}: loss {row['loss']:.4f}  val acc {row['val_accuracy']:.3f} prec "
                f"{row['val_precision']:.3f} rec {row['val_recall']:.3f} FPR95 {100 * row['val_fpr95']:.1f} % "
                f"(h < {row['val_threshold']:.3f})"
                + (f" near AUC {row['val_near_auc']:.3f} FPR95 {100 * row['val_near_fpr95']:.1f} %"
                   f" mixed AUC {row['val_mixed_auc']:.3f}" if "val_near_auc" in row else "")
                + f"{'  (best)' if improved else ''}  [{row['seconds']:.0f} s]")

    @override
    def export(self, out: Path) -> None:
        if self.cfg.export_onnx:
            best_net = BNN(self.cfg.backbone, patch_size=self.train.patch_size, width=self.cfg.width)
            export_onnx(load_best(best_net, out), out / "best.onnx")


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
    """Train a BNN on aligned patch pools (one process, or one of ``torchrun``'s processes).

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
    if cfg.hard_negatives > 0 and train.margin < cfg.max_shift:
        raise ValueError(f"hard negatives shifted up to {cfg.max_shift} px need a training pool margin >= "
                         f"{cfg.max_shift} (load it with margin), got {train.margin}")
    spe = cfg.steps_per_epoch or max(1, math.ceil(len(train) / max(1, cfg.batch_size // 2)))
    loop = LoopConfig.from_options(cfg, spe, progress)
    res = run_training(lambda ctx: BNNMethod(ctx, train, val, cfg, cfg.init == "moco" and resume is None),
                       out_dir, loop, resume=resume, log=log)
    if res.stopped_by == "max_steps":
        log("stopped: step budget used")
    metrics = {k[4:]: v for k, v in res.best["metrics"].items() if k.startswith("val_")}
    return BNNTrainResult(int(res.best["epoch"]), metrics, res.epochs_run, res.steps, res.seconds,
                          res.stopped_by != "epochs", res.out_dir, res.history)
