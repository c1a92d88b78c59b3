"""MoCo (v2-style) pre-training of one BNN tower's backbone per modality (Qian et al. 2022, sec. 2.1).

A query encoder (backbone + projection) is trained by back-propagation on the InfoNCE loss of
eq. (1)-(2): cosine similarity / ``tau`` of a query against its positive key (another augmented
view of the same patch) and against a queue of ``K`` keys of earlier batches. The key encoder is
a momentum copy, ``theta_k <- m theta_k + (1 - m) theta_q`` (eq. 3), ``m = 0.999``, ``tau = 0.07``.
One SAR and one optical encoder are pre-trained separately; :func:`transfer_to_bnn` copies their
backbones into the BNN towers (the 50-d projection of BNN is trained from scratch).

Shuffled BN on one device: MoCo shuffles the key batch across GPUs so that a query and its key
never share BatchNorm statistics. Here the batch is cut into ``shuffle_groups`` sub-batches that
are forwarded separately (each BatchNorm sees only its sub-batch, as on one GPU of several); the
queries go in their natural order, the keys in a random permutation that is undone afterwards.
This is what multi-GPU shuffled BN computes, on a single device.

Augmentations (the paper: "random grayscale, random color jittering, and random horizontal
flip", following [15, 19]; MoCo's pipeline starts with a random resized crop): random resized crop
(scale 0.2-1, aspect 3/4-4/3), horizontal flip (p 0.5), brightness and contrast jitter 0.4
(p 0.8). Grayscale conversion is a no-op on our one-channel patches; saturation and hue do not
exist for them. Optimiser defaults: SGD, batch 20, momentum 0.9, weight decay 1e-3, lr 0.05
(SARptical 300 epochs, SEN1-2 70 epochs; QXS-SAROPT: lr 0.001 for 250 epochs then 0.0005 for 250).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sarcoreg.models.bnn import BNN, DEFAULT_WIDTH, Tower, make_backbone, standardise
from sarcoreg.models.safe_load import load_torch_weights
from torch import Tensor, nn
from typing_extensions import override

from .loop import LoopConfig, RunOptions, TrainContext, TrainMethod, run_training, save_atomic

__all__ = [
    "MoCo",
    "MoCoConfig",
    "MoCoEncoder",
    "MoCoMethod",
    "MoCoResult",
    "load_pretrained_backbone",
    "moco_augment",
    "pretrain_moco",
    "transfer_to_bnn",
]


class MoCoEncoder(nn.Module):
    """Backbone + projection (an MLP for MoCo v2, a linear layer for v1), L2-normalised output.

    Args:
        backbone: One of :data:`sarcoreg.models.bnn.BACKBONES`.
        dim: Output dimension (MoCo's 128).
        mlp: MoCo v2's two-layer MLP head.
        width: First-stage width of the backbone (:func:`sarcoreg.models.bnn.make_backbone`).
    """

    def __init__(self, backbone: str = "vgg11", dim: int = 128, mlp: bool = True, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.width = int(width)
        self.backbone = make_backbone(backbone, width)
        f = int(self.backbone.out_features)
        self.head: nn.Module = (
            nn.Sequential(nn.Linear(f, f), nn.ReLU(inplace=True), nn.Linear(f, dim)) if mlp else nn.Linear(f, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, P, P)`` in [0, 1] -> unit vectors ``(N, dim)``."""
        return F.normalize(self.head(self.backbone(standardise(x))), dim=1)


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and the queue of negative keys.

    Args:
        backbone: Backbone name.
        dim: Embedding dimension.
        queue_size: ``K`` keys kept as negatives.
        m: Momentum of the key encoder.
        tau: Softmax temperature.
        mlp: MLP projection head (MoCo v2).
        shuffle_groups: Sub-batches of the single-device shuffled BN (1 = plain BN).
        width: First-stage width of the backbone.
    """

    queue: Tensor
    queue_ptr: Tensor

    def __init__(
        self,
        backbone: str = "vgg11",
        dim: int = 128,
        queue_size: int = 4096,
        m: float = 0.999,
        tau: float = 0.07,
        mlp: bool = True,
        shuffle_groups: int = 4,
        width: int = DEFAULT_WIDTH,
    ) -> None:
        super().__init__()
        if not 0.0 <= m < 1.0:
            raise ValueError(f"momentum m must be in [0, 1), got {m}")
        self.m, self.tau, self.groups = float(m), float(tau), max(1, int(shuffle_groups))
        self.encoder_q = MoCoEncoder(backbone, dim, mlp, width)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``theta_k <- m theta_k + (1 - m) theta_q`` for every parameter (BN statistics stay the key encoder's own)."""
        for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            pk.mul_(self.m).add_(pq.detach(), alpha=1.0 - self.m)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Replace the oldest ``N`` queue entries by ``keys`` ``(N, dim)`` (wraps around)."""
        k = self.queue.shape[1]
        n = keys.shape[0]
        if n > k:
            raise ValueError(f"batch ({n}) larger than the queue ({k}); raise queue_size")
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(n, device=keys.device)) % k
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % k

    def _grouped(self, enc: nn.Module, x: Tensor) -> Tensor:
        """Forward ``x`` in ``groups`` sub-batches (each BatchNorm sees one sub-batch only)."""
        chunks = torch.tensor_split(x, min(self.groups, x.shape[0]))
        return torch.cat([enc(c) for c in chunks if c.shape[0] > 0])

    def forward(self, im_q: Tensor, im_k: Tensor) -> tuple[Tensor, Tensor]:
        """InfoNCE logits of one batch; updates the key encoder and the queue.

        Args:
            im_q: Query views ``(N, 1, P, P)``.
            im_k: Key views of the same patches ``(N, 1, P, P)``.

        Returns:
            ``(logits, labels)``: ``(N, 1 + K)`` (column 0 = the positive) divided by ``tau``, and
            ``(N,)`` zeros for the cross-entropy.
        """
        q = self._grouped(self.encoder_q, im_q)
        with torch.no_grad():
            self.momentum_update()
            perm = torch.randperm(im_k.shape[0], device=im_k.device)
            k_shuffled = self._grouped(self.encoder_k, im_k[perm])
            k = torch.empty_like(k_shuffled)
            k[perm] = k_shuffled
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        logits = torch.cat([l_pos, l_neg], dim=1) / self.tau
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self.enqueue(k)
        return logits, labels


def moco_augment(x: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """One random view of each patch (see the module docstring).

    Args:
        x: ``(N, 1, P, P)`` float in [0, 1].
        gen: Random generator on ``x``'s device (None: torch's global one).

    Returns:
        ``(N, 1, P, P)`` float in [0, 1].
    """
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=dev)

    area = u(0.2, 1.0)
    ratio = torch.exp(u(math.log(3 / 4), math.log(4 / 3)))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1.0 - sx) * u(-1.0, 1.0)
    ty = (1.0 - sy) * u(-1.0, 1.0)
    flip = torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    jitter = (torch.rand(n, generator=gen, device=dev) < 0.8).float().view(n, 1, 1, 1)
    bright = 1.0 + jitter * u(-0.4, 0.4).view(n, 1, 1, 1)
    contrast = 1.0 + jitter * u(-0.4, 0.4).view(n, 1, 1, 1)
    y = y * bright
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return ((y - mean) * contrast + mean).clamp(0.0, 1.0)


@dataclass
class MoCoConfig(RunOptions):
    """Options of :func:`pretrain_moco` (defaults: the paper's SGD settings, SEN1-2 schedule)."""

    backbone: str = "vgg11"
    width: int = DEFAULT_WIDTH
    dim: int = 128
    queue_size: int = 4096
    m: float = 0.999
    tau: float = 0.07
    mlp: bool = True
    shuffle_groups: int = 4
    epochs: int = 70
    steps_per_epoch: int | None = None
    batch_size: int = 20
    lr: float = 0.05
    lr_drop_epoch: int | None = None
    lr_drop_factor: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-3
    max_steps: int | None = None


@dataclass
class MoCoResult:
    """Outcome of a pre-training run."""

    encoder_path: str
    modality: str
    epochs_run: int
    steps: int
    seconds: float
    final_loss: float
    stopped_by_budget: bool
    history: list[dict[str, Any]] = field(default_factory=list)


class MoCoMethod(TrainMethod):
    """MoCo pre-training of one modality's encoder on :func:`~sarcoreg.training.loop.run_training`.

    No validation: an epoch's row is its learning rate, mean InfoNCE loss and top-1 hit rate; the
    encoder of the last step is exported.

    Args:
        ctx: The loop's context.
        images: ``(M, P, P)`` uint8 patches of one modality.
        modality: ``sar`` or ``opt``.
        cfg: Options.
    """

    name = "bnn-moco"
    net: MoCo

    def __init__(self, ctx: TrainContext, images: np.ndarray, modality: str, cfg: MoCoConfig) -> None:
        self.ctx, self.images, self.modality, self.cfg = ctx, images, modality, cfg
        self.label = f"moco {modality}"
        self.gen = torch.Generator(device=ctx.device)
        self.gen.manual_seed(cfg.seed)
        self.net = MoCo(cfg.backbone, cfg.dim, cfg.queue_size, cfg.m, cfg.tau, cfg.mlp, cfg.shuffle_groups,
                          cfg.width).to(ctx.device)
        self.opt = torch.optim.SGD(self.net.encoder_q.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.trained = ctx.wrap(self.net)
        self.batch = min(cfg.batch_size, len(images))
        self.ce = nn.CrossEntropyLoss()
        self.lr = cfg.lr



    @override
    def start_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        dropped = cfg.lr_drop_epoch is not None and epoch >= cfg.lr_drop_epoch
        self.lr = cfg.lr * (cfg.lr_drop_factor if dropped else 1.0)
        for g in self.opt.param_groups:
            g["lr"] = self.lr
        self.net.train()

    @override
    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        ctx = self.ctx
        idx = ctx.shard(np.sort(ctx.rng.choice(len(self.images), size=self.batch, replace=False)))
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).to(ctx.device, torch.float32)[:, None] / 255.0
        logits, labels = self.trained(moco_augment(x, self.gen), moco_augment(x, self.gen))
        loss = self.ce(logits, labels)
        ctx.optimise(loss, self.opt)
        return {"loss": float(loss.detach()), "top1": float((logits.argmax(dim=1) == 0).float().mean())}

    @override
    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        return {"lr": self.lr, "loss": float(np.mean([s["loss"] for s in steps])),
                "top1": float(np.mean([s["top1"] for s in steps]))}

    @override
    def epoch_line(self, row: dict[str, Any], improved: bool) -> str:
        return (f"moco {self.modality} epoch {row['epoch']}: loss {row['loss']:.4f} top-1 {row['top1']:.3f} "
                f"[{row['seconds']} s]")

    @override
    def method_state(self) -> dict[str, Any]:
        return {"modality": self.modality, "augment_generator": self.gen.get_state()}

    @override
    def load_method_state(self, state: dict[str, Any]) -> None:
        if state.get("modality", self.modality) != self.modality:
            raise ValueError(f"the checkpoint pre-trains the {state['modality']} encoder, not the {self.modality} one")
        if "augment_generator" in state:
            self.gen.set_state(state["augment_generator"])


    @override
    def legacy_method_state(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"modality": state.get("modality", self.modality)}

    def save_encoder(self, out: Path, steps: int) -> Path:
        """Write ``encoder_<modality>.pt`` (the query backbone, what :func:`transfer_to_bnn` reads)."""
        path = out / f"encoder_{self.modality}.pt"
        save_atomic({"backbone": self.cfg.backbone, "width": self.cfg.width, "modality": self.modality,
                     "steps": steps, "state": self.net.encoder_q.backbone.state_dict()}, path)
        return path


def pretrain_moco(
    images: np.ndarray,
    out_dir: str | Path,
    modality: str,
    config: MoCoConfig | None = None,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> MoCoResult:
    """Pre-train one modality's encoder with MoCo (one process, or one of ``torchrun``'s processes).

    Args:
        images: ``(M, P, P)`` uint8 patches of one modality (``M >= batch_size``).
        out_dir: Folder for ``last.pt`` (resumable), ``encoder_<modality>.pt`` and the history
            (``history_<modality>.json``).
        modality: ``sar`` or ``opt`` (names the output file).
        config: Options.
        resume: A ``last.pt`` of an earlier run with the same options.
        progress: tqdm bar per epoch.
        log: One line per epoch.

    Returns:
        Where the encoder went and how the run went.
    """
    cfg = config or MoCoConfig()
    if modality not in ("sar", "opt"):
        raise ValueError(f"modality must be 'sar' or 'opt', got {modality!r}")
    if images.ndim != 3 or len(images) < 2:
        raise ValueError(f"MoCo wants (M, P, P) patches with M >= 2, got {images.shape}")
    batch = min(cfg.batch_size, len(images))
    loop = LoopConfig.from_options(cfg, cfg.steps_per_epoch or max(1, len(images) // batch), progress,
                                   history_name=f"history_{modality}.json")
    methods: list[MoCoMethod] = []

    def make(ctx: TrainContext) -> MoCoMethod:
        methods.append(MoCoMethod(ctx, images, modality, cfg))
        return methods[0]

    res = run_training(make, out_dir, loop, resume=resume, log=log)
    out = Path(out_dir)
    enc_path = methods[0].save_encoder(out, res.steps) if res.rank == 0 else out / f"encoder_{modality}.pt"
    return MoCoResult(str(enc_path), modality, res.epochs_run, res.steps, res.seconds,
                      float(res.last_step.get("loss", math.nan)), res.stopped_by != "epochs", res.history)


def load_pretrained_backbone(tower: Tower, path: str | Path, backbone: str | None = None) -> dict[str, Any]:
    """Copy a pre-trained backbone (``encoder_<modality>.pt``) into a BNN tower.

    Args:
        tower: The tower whose backbone is replaced in place.
        path: File written by :func:`pretrain_moco`.
        backbone: The tower's backbone name, checked against the file's.

    Returns:
        The file's metadata (backbone, modality, steps).

    Raises:
        ValueError: Backbones or widths differ.
    """
    st = load_torch_weights(path, "pre-trained backbone file")
    if backbone is not None and st["backbone"] != backbone:
        raise ValueError(f"{path}: pre-trained backbone is {st['backbone']}, the BNN uses {backbone}")
    try:
        tower.backbone.load_state_dict(st["state"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: the pre-trained backbone (width {st.get('width', DEFAULT_WIDTH)}) does not fit the "
                         f"BNN tower; pre-train with the BNN's --width") from exc
    return {k: v for k, v in st.items() if k != "state"}


def transfer_to_bnn(net: BNN, sar_encoder: str | Path, opt_encoder: str | Path) -> dict[str, Any]:
    """Initialise both BNN towers from MoCo encoders (the paper's MoCo-BNN).

    Raises:
        ValueError: A file's backbone or modality does not fit.
    """
    meta_s = load_pretrained_backbone(net.sar_tower, sar_encoder, net.backbone_name)
    meta_o = load_pretrained_backbone(net.opt_tower, opt_encoder, net.backbone_name)
    if meta_s.get("modality") != "sar" or meta_o.get("modality") != "opt":
        raise ValueError(
            f"expected a SAR and an optical encoder, got {meta_s.get('modality')} ({sar_encoder}) and "
            f"{meta_o.get('modality')} ({opt_encoder})"
        )
    return {"sar": meta_s, "opt": meta_o}
