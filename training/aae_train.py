"""Training loop of the semi-supervised dual adversarial autoencoder (Hughes & Schmitt 2019).

Recipe (the paper's, all configurable):

* data: search patches ``S x S`` (256) cut around keypoints of co-registered optical / SAR image
  pairs; a *positive* pair is the centre ``P x P`` crop (128) of both, a *negative* pair the
  optical centre crop with an off-centre SAR crop of the same patch (at least
  ``min_negative_offset`` pixels away per axis in the larger axis: harder than random pairs);
* supervision ratio ``r`` (1.0 / 0.75 / 0.5 / 0.25 / 0.05): a share ``r`` of the training
  patches is labelled, the rest unlabelled; batches alternate labelled / unlabelled (labelled
  batches are drawn with replacement from the smaller pool: oversampling); labelled batches get
  the contrastive loss, all batches the reconstruction and adversarial losses; unlabelled
  batches use independent random crops and augmentations per modality (unpaired);
* augmentation: horizontal and vertical flips (p 0.5 each), Gaussian noise (sigma 0.02) on the
  optical patch, intensity scaling by U[0.95, 1.05] with p 0.2; flips and scaling are shared by
  the two patches of a labelled pair and independent for unlabelled ones;
* optimisers: Adam (betas 0.9 / 0.99, weight decay 1e-4) for the autoencoders with a one-cycle
  schedule from ``lr_low`` to ``lr_high`` (5e-5 .. 5e-4 in the paper; ``find_lr`` runs the range
  test first and uses its suggestion); the shared critic: SGD (lr 4e-3, momentum 0.9, weight
  decay 3e-4), five steps per autoencoder step, weights clipped to [-0.1, 0.1]; batch 32,
  100 epochs;
* validation after every epoch: FPR95 / AUC of the descriptor cosine similarity on centre
  (positive) and off-centre (negative) pairs of held-out patches, and optionally the mean
  matching error of ``val_maps`` correspondence maps; the checkpoint with the lowest FPR95 is kept.

Files in ``out_dir``: ``last.pt`` (resume), ``best.pt`` (network, config, metrics),
``history.json``, ``lr_range.png`` (with ``find_lr``) and ``best.onnx`` with
``best-optical-encoder.onnx`` / ``best-sar-encoder.onnx``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from sarcoreg.models.aae import AAEConfig, AAEInference, DualAAE, export_encoders_onnx, export_onnx
from sarcoreg.training.aae_losses import (
    Critic,
    contrastive_loss,
    critic_input,
    encoder_adversarial_loss,
    reconstruction_loss,
    update_critic,
)
from sarcoreg.training.lr_range import LRRangeResult, lr_range_test, plot_lr_range
from sarcoreg.training.metrics import auc, fpr95
from sarcoreg.training.patches import AlignedPair, keypoints
from torch import nn
from typing_extensions import override

from .loop import LoopConfig, RunOptions, TrainContext, TrainMethod, load_best, run_training

__all__ = [
    "AAEBatcher",
    "AAEMethod",
    "AAETrainConfig",
    "AAETrainResult",
    "SearchPatches",
    "cut_search_patches",
    "run_lr_range_test",
    "split_supervision",
    "train_aae",
    "validation_scores",
]


@dataclass
class SearchPatches:
    """Co-registered search patches.

    Attributes:
        images: ``(N, 2, S, S)`` uint8; ``[:, 0]`` optical, ``[:, 1]`` SAR.
    """

    images: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 2 or self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"search patches must be (N, 2, S, S), got {self.images.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        """Side ``S``."""
        return int(self.images.shape[2])


def cut_search_patches(pairs: Sequence[AlignedPair], search_size: int = 256, per_image: int = 16,
                       seed: int = 0) -> tuple[SearchPatches, list[str]]:
    """Cut ``S x S`` patch pairs around keypoints (SIFT, topped up at random) of aligned image pairs.

    Args:
        pairs: Aligned optical (``a``) / SAR (``b``) images in [0, 1].
        search_size: ``S``.
        per_image: Patches per image pair (fewer distinct ones where the image is small).
        seed: Random seed.

    Returns:
        ``(patches, skipped)``: the patches and the names of image pairs smaller than ``S``.
    """
    rng = np.random.default_rng(seed)
    half = search_size // 2
    out, skipped = [], []
    for pair in pairs:
        if min(pair.a.shape) < search_size:
            skipped.append(pair.name)
            continue
        a = np.clip(np.rint(np.nan_to_num(pair.a) * 255), 0, 255).astype(np.uint8)
        b = np.clip(np.rint(np.nan_to_num(pair.b) * 255), 0, 255).astype(np.uint8)
        for c, r in keypoints(pair.a, half, per_image, rng):
            r0, c0 = min(r - half, a.shape[0] - search_size), min(c - half, a.shape[1] - search_size)
            out.append(np.stack([a[r0 : r0 + search_size, c0 : c0 + search_size],
                                 b[r0 : r0 + search_size, c0 : c0 + search_size]]))
    if not out:
        raise ValueError(f"no image pair is at least {search_size} px on each side; lower --search-size")
    return SearchPatches(np.asarray(out, np.uint8)), skipped


def split_supervision(n: int, ratio: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` patch indices into labelled (share ``ratio``, at least one) and unlabelled pools."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"supervision ratio must be in (0, 1], got {ratio}")
    perm = rng.permutation(n)
    k = max(1, int(round(ratio * n)))
    return np.sort(perm[:k]), np.sort(perm[k:])


@dataclass
class AAETrainConfig(RunOptions):
    """Options of :func:`train_aae` (defaults = the paper's recipe)."""

    patch_size: int = 128
    width: int = 64
    latent_dim: int = 256
    supervision: float = 1.0
    epochs: int = 100
    steps_per_epoch: int | None = None
    batch_size: int = 32
    lr_low: float = 5e-5
    lr_high: float = 5e-4
    find_lr: bool = False
    lr_test_steps: int = 100
    weight_decay: float = 1e-4
    critic_lr: float = 4e-3
    critic_momentum: float = 0.9
    critic_weight_decay: float = 3e-4
    critic_steps: int = 5
    clip: float = 0.1
    prior_std: float = 5.0
    margin: float = 1.0
    adversarial_weight: float = 1.0
    critic_on_sphere: bool = False
    bf16: bool = False
    channels_last: bool = False
    min_negative_offset: int = 16
    easy_negatives: float = 0.0
    augment: bool = True
    val_batch: int = 128
    val_maps: int = 0
    val_map_stride: int = 4
    export_onnx: bool = True


@dataclass
class AAETrainResult:
    """Outcome of a training run."""

    best_fpr95: float
    best_auc: float
    best_epoch: int
    epochs_run: int
    steps: int
    seconds: float
    seconds_per_step: float
    stopped_by_budget: bool
    lr_range: tuple[float, float]
    out_dir: str
    history: list[dict[str, Any]] = field(default_factory=list)


class AAEBatcher:
    """Builds labelled and unlabelled training batches from search patches.

    Args:
        patches: The training patches ``(N, 2, S, S)``.
        patch_size: ``P`` of the crops.
        min_negative_offset: Smallest off-centre offset (larger axis, pixels) of a negative crop.
        augment: Apply the paper's augmentations.
        rng: Random generator.
    """

    def __init__(self, patches: SearchPatches, patch_size: int, min_negative_offset: int, augment: bool,
                 rng: np.random.Generator, easy_negatives: float = 0.0) -> None:
        s, p = patches.size, int(patch_size)
        if s < p:
            raise ValueError(f"search patches ({s}) are smaller than the patch size ({p})")
        if not 0.0 <= easy_negatives <= 1.0:
            raise ValueError(f"easy_negatives must be in [0, 1], got {easy_negatives}")
        self.patches, self.p, self.rng, self.augment = patches, p, rng, augment
        self.easy_negatives = float(easy_negatives)
        self.r = (s - p) // 2
        self.min_offset = min(int(min_negative_offset), self.r)
        if self.r < 1:
            raise ValueError(f"search size {s} leaves no room for off-centre negatives of {p} px crops")

    def _crop(self, idx: np.ndarray, modality: int, corners: np.ndarray) -> np.ndarray:
        p = self.p
        imgs = self.patches.images
        return np.stack([imgs[i, modality, y : y + p, x : x + p] for i, (x, y) in zip(idx, corners, strict=True)])

    def _negative_corners(self, n: int) -> np.ndarray:
        """Corners ``(n, 2)`` of off-centre crops: the larger axis offset is at least ``min_offset``."""
        r, m = self.r, max(1, self.min_offset)
        off = self.rng.integers(-r, r + 1, (n, 2))
        big = np.argmax(np.abs(off), axis=1)
        rows = np.arange(n)
        small = np.abs(off[rows, big]) < m
        sign = np.where(self.rng.random(n) < 0.5, -1, 1)
        off[rows[small], big[small]] = sign[small] * self.rng.integers(m, r + 1, int(small.sum()))
        return off + r

    def _augment(self, opt: np.ndarray, sar: np.ndarray, joint: bool) -> tuple[np.ndarray, np.ndarray]:
        """The paper's augmentations on float ``(B, P, P)`` batches in [0, 1]."""
        rng, n = self.rng, opt.shape[0]
        flips = rng.random((n, 2)) < 0.5
        scale = np.where(rng.random(n) < 0.2, rng.uniform(0.95, 1.05, n), 1.0)
        flips_s = flips if joint else rng.random((n, 2)) < 0.5
        scale_s = scale if joint else np.where(rng.random(n) < 0.2, rng.uniform(0.95, 1.05, n), 1.0)
        for x, f, sc in ((opt, flips, scale), (sar, flips_s, scale_s)):
            x[f[:, 0]] = x[f[:, 0], :, ::-1]
            x[f[:, 1]] = x[f[:, 1], ::-1, :]
            x *= sc[:, None, None].astype(np.float32)
        opt += rng.normal(0.0, 0.02, opt.shape).astype(np.float32)
        return np.clip(opt, 0.0, 1.0), np.clip(sar, 0.0, 1.0)

    def labelled(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A labelled batch: half positives (centre / centre), half negatives (centre / off-centre).

        With ``easy_negatives`` a share of the negatives pairs the optical centre crop with the SAR
        centre crop of *another* search patch instead (the hard off-centre negatives alone let a
        small CPU-trained model collapse to one descriptor).

        Returns:
            ``(optical (B, P, P), sar (B, P, P), labels (B,))`` float32.
        """
        n = len(idx)
        y = (np.arange(n) % 2 == 0).astype(np.float32)
        centre = np.full((n, 2), self.r)
        sar_corners = np.where(y[:, None] > 0, centre, self._negative_corners(n))
        sar_idx = np.array(idx, copy=True)
        if self.easy_negatives > 0 and len(self.patches) > 1:  # centre crops of another search patch
            easy = (y == 0) & (self.rng.random(n) < self.easy_negatives)
            other = self.rng.integers(0, len(self.patches) - 1, int(easy.sum()))
            sar_idx[easy] = other + (other >= sar_idx[easy])
            sar_corners[easy] = self.r
        opt = self._crop(idx, 0, centre).astype(np.float32) / 255.0
        sar = self._crop(sar_idx, 1, sar_corners).astype(np.float32) / 255.0
        if self.augment:
            opt, sar = self._augment(opt, sar, joint=True)
        return opt, sar, y

    def unlabelled(self, idx_opt: np.ndarray, idx_sar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An unlabelled batch: independent random crops of optical and SAR patches (unpaired)."""
        r = self.r
        opt = self._crop(idx_opt, 0, self.rng.integers(0, 2 * r + 1, (len(idx_opt), 2))).astype(np.float32) / 255.0
        sar = self._crop(idx_sar, 1, self.rng.integers(0, 2 * r + 1, (len(idx_sar), 2))).astype(np.float32) / 255.0
        if self.augment:
            opt, sar = self._augment(opt, sar, joint=False)
        return opt, sar


def _t(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=torch.float32).unsqueeze(1)


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there are none, e.g. critic losses of a run without a critic)."""
    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


class _Stepper:
    """One training step (critic steps, then the autoencoder step) on alternating batches."""

    def __init__(self, net: DualAAE, critic: Critic, opt_ae: torch.optim.Optimizer, opt_critic: torch.optim.Optimizer,
                 batcher: AAEBatcher, sup: np.ndarray, unsup: np.ndarray, cfg: AAETrainConfig,
                 device: torch.device, ctx: TrainContext | None = None) -> None:
        self.net, self.critic, self.opt_ae, self.opt_critic = net, critic, opt_ae, opt_critic
        self.batcher, self.sup, self.unsup, self.cfg, self.device = batcher, sup, unsup, cfg, device
        self.critic_steps_taken = 0
        # under DDP: train through the wrapped modules and keep this process's slice of each batch
        self.trained_net: nn.Module = ctx.wrap(net) if ctx is not None else net
        self.trained_critic: nn.Module = ctx.wrap(critic) if ctx is not None else critic
        self.shard: Callable[[np.ndarray], np.ndarray] = ctx.shard if ctx is not None else (lambda x: x)
        self.autocast: Callable[[], AbstractContextManager[Any]] = ctx.autocast if ctx is not None else nullcontext

    def is_supervised(self, step: int) -> bool:
        """Labelled batch at even steps (every step when there is no unlabelled data)."""
        return len(self.unsup) == 0 or step % 2 == 0

    def __call__(self, step: int) -> dict[str, float]:
        cfg, rng, b = self.cfg, self.batcher.rng, self.cfg.batch_size
        supervised = self.is_supervised(step)
        if supervised:
            idx = rng.choice(self.sup, size=b, replace=len(self.sup) < b)
            opt, sar, y = self.batcher.labelled(idx)
        else:
            pool = self.unsup
            io = rng.choice(pool, size=b, replace=len(pool) < b)
            is_ = rng.choice(pool, size=b, replace=len(pool) < b)
            opt, sar = self.batcher.unlabelled(io, is_)
            y = np.zeros(len(opt), np.float32)
        opt, sar, y = self.shard(opt), self.shard(sar), self.shard(y)
        with self.autocast():
            out = {k: v.float() for k, v in self.trained_net(_t(opt, self.device), _t(sar, self.device)).items()}
        rec = reconstruction_loss(out["target_opt"], out["rec_opt"]) + reconstruction_loss(out["target_sar"],
                                                                                          out["rec_sar"])
        loss = rec
        critic_losses: list[float] = []
        adv = torch.zeros((), device=self.device)
        if cfg.adversarial_weight > 0:  # weight 0: no critic at all (and none of its cost)
            critic = cast(Critic, self.trained_critic)
            sphere = cfg.critic_on_sphere
            critic_losses = update_critic(critic, self.opt_critic, out["z_sar"], out["z_opt"],
                                          steps=cfg.critic_steps, prior_std=cfg.prior_std, clip=cfg.clip,
                                          on_sphere=sphere)
            self.critic_steps_taken += len(critic_losses)
            adv = encoder_adversarial_loss(critic, critic_input(out["z_sar"], sphere),
                                           critic_input(out["z_opt"], sphere))
            loss = loss + cfg.adversarial_weight * adv
        match = torch.zeros((), device=self.device)
        if supervised:
            match = contrastive_loss(out["z_opt"], out["z_sar"], torch.from_numpy(y).to(self.device), cfg.margin)
            loss = loss + match
        TrainContext.optimise(loss, self.opt_ae)
        return {"loss": float(loss.detach()), "rec": float(rec.detach()), "match": float(match.detach()),
                "adv": float(adv.detach()), "critic": float(np.mean(critic_losses)) if critic_losses else math.nan,
                "supervised": float(supervised)}


@torch.no_grad()
def validation_scores(net: DualAAE, val: SearchPatches, patch_size: int, min_negative_offset: int,
                      device: torch.device, batch: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of centre (positive) and off-centre (negative) pairs of held-out patches.

    Returns:
        ``(labels (2 N,), scores (2 N,))``: the first N positives, the next N negatives.
    """
    batcher = AAEBatcher(val, patch_size, min_negative_offset, augment=False, rng=np.random.default_rng(seed))
    inf = AAEInference(net)  # shares the encoders and puts them in eval mode
    labels, scores = [], []
    for i in range(0, len(val), batch):
        idx = np.arange(i, min(i + batch, len(val)))
        both = np.repeat(idx, 2)
        opt, sar, y = batcher.labelled(both)
        s = inf(_t(opt, device), _t(sar, device))
        labels.append(y)
        scores.append(s.float().cpu().numpy())
    net.train()
    return np.concatenate(labels), np.concatenate(scores)


def _matching_error(net: DualAAE, val: SearchPatches, cfg: AAETrainConfig, device: torch.device) -> float:
    """Mean matching error (px) of ``cfg.val_maps`` correspondence maps on held-out patches."""
    from sarcoreg.core.correspondence import correspondence_maps, find_peaks
    from sarcoreg.models.descriptor_model import TorchDescriptorModel

    k = min(cfg.val_maps, len(val))
    p, s = cfg.patch_size, val.size
    r = (s - p) // 2
    opt = val.images[:k, 0, r : r + p, r : r + p].astype(np.float32) / 255.0
    sar = val.images[:k, 1].astype(np.float32) / 255.0
    model = TorchDescriptorModel(AAEInference(net), p, "val", device=str(device), batch_size=cfg.val_batch)
    maps = correspondence_maps(model, opt, sar, stride=cfg.val_map_stride, batch_size=cfg.val_batch)
    net.train()
    return float(np.mean(np.hypot(*find_peaks(maps).shift.T)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def run_lr_range_test(net: DualAAE, critic: Critic, batcher: AAEBatcher, sup: np.ndarray, unsup: np.ndarray,
                      cfg: AAETrainConfig, device: torch.device, plot: str | Path | None = None) -> LRRangeResult:
    """The learning-rate range test on the training batches; the networks are restored afterwards.

    The curve is the reconstruction + matching loss of each step (all terms are trained as usual):
    the encoders' adversarial term is a min-max value that first *grows* while the critic learns,
    whatever the learning rate, and on a CPU-sized run it dominated the total loss and pushed the
    suggestion down to 1e-7 .. 1e-6, where nothing is learnt.

    Args:
        net: The autoencoders.
        critic: The critic.
        batcher: Batch builder.
        sup: Labelled patch indices.
        unsup: Unlabelled patch indices.
        cfg: Options (``lr_test_steps`` steps from 1e-7 to 1).
        device: Where to run.
        plot: Optional PNG path of the curve.

    Returns:
        The test's curves and suggested range.
    """
    saved = copy.deepcopy(net.state_dict()), copy.deepcopy(critic.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=1e-7, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    opt_c = torch.optim.SGD(critic.parameters(), lr=cfg.critic_lr, momentum=cfg.critic_momentum,
                            weight_decay=cfg.critic_weight_decay)
    stepper = _Stepper(net, critic, opt, opt_c, batcher, sup, unsup, cfg, device)
    counter = iter(range(10**9))
    net.train()
    def objective() -> float:
        parts = stepper(next(counter))
        return parts["rec"] + parts["match"]

    res = lr_range_test(objective, lambda lr: _set_lr(opt, lr), num_steps=cfg.lr_test_steps)
    net.load_state_dict(saved[0])
    critic.load_state_dict(saved[1])
    if plot is not None:
        plot_lr_range(res, plot, title="AAE learning-rate range test")
    return res


class AAEMethod(TrainMethod):
    """The dual AAE on :func:`~sarcoreg.training.loop.run_training`: critic + autoencoder steps, one-cycle lr.

    Args:
        ctx: The loop's context.
        train: Training search patches.
        val: Held-out search patches.
        cfg: Options.
        out: The run folder (for ``lr_range.png``).
        find_lr: Run the learning-rate range test first (``cfg.find_lr``, not when resuming).
    """

    name = "aae"
    net: DualAAE
    legacy_best_key = "fpr95"

    def __init__(self, ctx: TrainContext, train: SearchPatches, val: SearchPatches, cfg: AAETrainConfig, out: Path,
                 find_lr: bool) -> None:
        self.ctx, self.val, self.cfg = ctx, val, cfg
        dev = ctx.device
        self.net = cast(DualAAE, ctx.place(DualAAE(AAEConfig(cfg.patch_size, cfg.width, cfg.latent_dim))))
        self.critic = Critic(cfg.latent_dim).to(dev)
        sup, unsup = split_supervision(len(train), cfg.supervision, ctx.rng)
        batcher = AAEBatcher(train, cfg.patch_size, cfg.min_negative_offset, cfg.augment, ctx.rng, cfg.easy_negatives)
        self.lr_range = (cfg.lr_low, cfg.lr_high)
        if find_lr:
            res = run_lr_range_test(self.net, self.critic, batcher, sup, unsup, cfg, dev,
                                    plot=out / "lr_range.png" if ctx.is_main else None)
            self.lr_range = res.suggested
            ctx.log(f"learning-rate range test: suggested {res.suggested[0]:.2e} .. {res.suggested[1]:.2e} "
                    f"(steepest {res.steepest:.2e})")
        lr_low, lr_high = self.lr_range
        self.total = max(2, cfg.epochs * (cfg.steps_per_epoch or max(1, len(train) // cfg.batch_size)))
        self.opt_ae = torch.optim.Adam(self.net.parameters(), lr=lr_low, betas=(0.9, 0.99),
                                       weight_decay=cfg.weight_decay)
        self.opt_c = torch.optim.SGD(self.critic.parameters(), lr=cfg.critic_lr, momentum=cfg.critic_momentum,
                                     weight_decay=cfg.critic_weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt_ae, max_lr=lr_high, total_steps=self.total,
                                                         div_factor=max(1.0, lr_high / lr_low), cycle_momentum=False)
        self.stepper = _Stepper(self.net, self.critic, self.opt_ae, self.opt_c, batcher, sup, unsup, cfg, dev, ctx)
        self.train_seconds, self.steps_done = 0.0, 0

    @override
    def state_objects(self) -> dict[str, Any]:
        return {"model": self.net, "critic": self.critic, "optimizer": self.opt_ae, "critic_optimizer": self.opt_c,
                "scheduler": self.sched}


    @override
    def start_epoch(self, epoch: int) -> None:
        self.net.train()
        self.critic.train()

    @override
    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        ts = time.monotonic()
        parts = self.stepper(step)
        if step < self.total - 1:
            self.sched.step()
        self.train_seconds += time.monotonic() - ts
        self.steps_done = step + 1
        return parts

    @override
    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{parts['loss']:.3f}", "rec": f"{parts['rec']:.3f}", "match": f"{parts['match']:.3f}"}

    @override
    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        cfg, dev = self.cfg, self.ctx.device
        labels, scores = validation_scores(self.net, self.val, cfg.patch_size, cfg.min_negative_offset, dev,
                                           cfg.val_batch)
        row: dict[str, Any] = {
            **{k: _finite_mean([p[k] for p in steps]) for k in ("loss", "rec", "match", "adv", "critic")},
            "lr": float(self.opt_ae.param_groups[0]["lr"]),
            "val_fpr95": fpr95(labels, scores),
            "val_auc": auc(labels, scores),
            "seconds_per_step": self.train_seconds / max(1, self.steps_done),
        }
        if cfg.val_maps > 0:
            row["val_matching_error_px"] = _matching_error(self.net, self.val, cfg, dev)
        return row

    @override
    def score(self, row: dict[str, Any]) -> float:
        return float(row["val_fpr95"])

    @override
    def best_payload(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"config": self.net.config_dict()}

    @override
    def epoch_line(self, row: dict[str, Any], improved: bool) -> str:
        return (f"epoch {row['epoch']}: loss {row['loss']:.4f} (rec {row['rec']:.4f}, match {row['match']:.4f}, "
                f"adv {row['adv']:.3f})  val FPR95 {row['val_fpr95'] * 100:.2f} %  AUC {row['val_auc']:.4f}"
                f"{'  (best)' if improved else ''}  [{row['seconds']:.0f} s, step {row['step']}]")

    @override
    def method_state(self) -> dict[str, Any]:
        return {"lr_range": list(self.lr_range), "train_seconds": self.train_seconds}

    @override
    def load_method_state(self, state: dict[str, Any]) -> None:
        if "lr_range" in state:
            lo, hi = state["lr_range"]
            self.lr_range = (float(lo), float(hi))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.sched.total_steps = self.total  # more epochs than before: the one-cycle schedule is stretched

    @override
    def history_extra(self) -> dict[str, Any]:
        return {"lr_range": list(self.lr_range)}


    @override
    def legacy_method_state(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"lr_range": list(state.get("lr_range", self.lr_range)),
                "train_seconds": float(state.get("train_seconds", 0.0))}

    @override
    def export(self, out: Path) -> None:
        if self.cfg.export_onnx:
            cfg = self.cfg
            best_net = load_best(DualAAE(AAEConfig(cfg.patch_size, cfg.width, cfg.latent_dim)), out)
            export_onnx(best_net, out / "best.onnx")
            export_encoders_onnx(best_net, out / "best.onnx")


def train_aae(
    train: SearchPatches,
    val: SearchPatches,
    out_dir: str | Path,
    config: AAETrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> AAETrainResult:
    """Train the dual adversarial autoencoder (one process, or one of ``torchrun``'s processes).

    Args:
        train: Training search patches ``(N, 2, S, S)``.
        val: Held-out search patches (same ``S``).
        out_dir: Folder for checkpoints, history and exports.
        config: Options; default the paper's recipe.
        resume: A ``last.pt`` of an earlier run with the same data and options: continue from it
            (a larger ``epochs`` stretches the one-cycle schedule from where it is).
        progress: Show a tqdm bar per epoch.
        log: Where one line per epoch goes.

    Returns:
        Best validation FPR95 / AUC, where it was reached, steps, time and seconds per step.
    """
    cfg = config or AAETrainConfig()
    out = Path(out_dir)
    loop = LoopConfig.from_options(cfg, cfg.steps_per_epoch or max(1, len(train) // cfg.batch_size), progress)
    methods: list[AAEMethod] = []

    def make(ctx: TrainContext) -> AAEMethod:
        methods.append(AAEMethod(ctx, train, val, cfg, out, cfg.find_lr and resume is None))
        return methods[0]

    res = run_training(make, out, loop, resume=resume, log=log)
    method = methods[0]
    return AAETrainResult(
        best_fpr95=res.best_value("val_fpr95", math.inf),
        best_auc=res.best_value("val_auc", 0.0),
        best_epoch=int(res.best["epoch"]),
        epochs_run=res.epochs_run,
        steps=res.steps,
        seconds=res.seconds,
        seconds_per_step=method.train_seconds / max(1, res.steps),
        stopped_by_budget=res.stopped_by_budget,
        lr_range=(float(method.lr_range[0]), float(method.lr_range[1])),
        out_dir=res.out_dir,
        history=res.history,
    )
