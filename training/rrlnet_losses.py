"""Losses of RRL-Net: six BCE terms and two reconstruction terms (paper eq. 6-7, public code).

``L = sum_{k=1..6} BCE(logit_k, y) + alpha * (L_r(x_a_hat, x_a) + L_r(x_b_hat, x_b))`` with
``L_r = perceptual(x_hat, x) + beta * MSE(x_hat, x)``, ``alpha = 1``, ``beta = 0.1``.

The perceptual term of the paper is the MSE of ImageNet-VGG19 ``block5_conv4`` features (after
ReLU; gray replicated to 3 channels, no ImageNet normalisation). Those weights cannot be
downloaded here, so :func:`make_perceptual` offers:

* ``"vgg19"``: the real term, from a user-given torchvision VGG19 state dict (``.pth``);
* ``"gradient"`` (the documented substitute, default without weights): multi-scale gradient
  loss, the MSE of Sobel gradients of prediction and target at scales 1, 1/2 and 1/4 (average
  pooling). Like the VGG term it rewards edges and structure rather than exact intensities, but
  it has no learned features, costs almost nothing, and needs no download;
* ``"none"``: pixel MSE only.

What the substitute costs, measured on 2 CPU threads (2026-11, this project's machine):

* time: the two VGG19 ``block5_conv4`` terms take about 32 s per batch of 64 (forward through
  both images, backward through the prediction), more than the rest of the RRL-Net training
  step (about 3 s unloaded); the gradient substitute takes 0.15 s;
* accuracy: an A/B run on VIS-NIR "country" (same seed, data order and augmentations; 75 steps
  of batch 64, 1 thread each, run side by side) gave validation FPR95 79.4 % / AUC 0.661 with
  the gradient term and 82.5 % / 0.655 with pixel MSE only: no measurable difference this early
  in training. The paper's gain from the VGG term (Table V, FPR95 0.83 -> 0.76 with the whole
  reconstruction branch) could not be checked here: it needs ImageNet weights and a full run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from sarcoreg.models.rrlnet import RRLNetOutputs
from torch import Tensor, nn

__all__ = ["PERCEPTUAL_KINDS", "GradientPerceptual", "RRLNetLoss", "VGG19Perceptual", "make_perceptual"]

PERCEPTUAL_KINDS = ("vgg19", "gradient", "none")


class GradientPerceptual(nn.Module):
    """Multi-scale gradient loss: mean over scales 1, 1/2, 1/4 of MSE(Sobel(x_hat), Sobel(x))."""

    def __init__(self, scales: int = 3) -> None:
        super().__init__()
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        self.register_buffer("kernel", torch.stack([kx, kx.t()]).unsqueeze(1))  # (2, 1, 3, 3)
        self.scales = scales

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss (scalar) for images (N, 1, H, W)."""
        total = pred.new_zeros(())
        x, y = pred, target
        for s in range(self.scales):
            if s:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            k: Tensor = self.kernel  # type: ignore[assignment]
            total = total + F.mse_loss(F.conv2d(x, k, padding=1), F.conv2d(y, k, padding=1))
        return total / self.scales


class VGG19Perceptual(nn.Module):
    """MSE of frozen VGG19 ``block5_conv4`` (post-ReLU) features, as in the public RRL-Net code.

    Args:
        weights: A torchvision ``vgg19`` state dict file (``torch.save(model.state_dict())``,
            e.g. ``vgg19-dcbb9e9d.pth``); only the ``features.*`` entries are used.
    """

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from torchvision.models import vgg19

        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights file not found: {path}")
        net = vgg19(weights=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = net.load_state_dict(state, strict=False).missing_keys
        if any(k.startswith("features.") for k in missing):
            raise ValueError(f"{path} is not a torchvision VGG19 state dict (missing {missing[:3]} ...)")
        self.features = net.features[:36].eval()  # up to conv5_4 + its ReLU
        for p in self.features.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> VGG19Perceptual:
        """Keep the VGG in eval mode always (it is frozen)."""
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Loss (scalar) for gray images (N, 1, H, W) in [0, 1]."""
        fp = self.features(pred.expand(-1, 3, -1, -1))
        with torch.no_grad():
            ft = self.features(target.expand(-1, 3, -1, -1))
        return F.mse_loss(fp, ft)


def make_perceptual(kind: str, vgg19_weights: str | Path | None = None) -> nn.Module | None:
    """The perceptual term ``kind`` (one of :data:`PERCEPTUAL_KINDS`); None for ``"none"``.

    Raises:
        ValueError: Unknown kind, or ``"vgg19"`` without a weights file.
    """
    if kind == "vgg19":
        if vgg19_weights is None:
            raise ValueError("perceptual 'vgg19' needs --vgg19-weights (a torchvision VGG19 state dict)")
        return VGG19Perceptual(vgg19_weights)
    if kind == "gradient":
        return GradientPerceptual()
    if kind == "none":
        return None
    raise ValueError(f"unknown perceptual loss '{kind}'; choose one of {PERCEPTUAL_KINDS}")


class RRLNetLoss(nn.Module):
    """The RRL-Net training loss.

    Args:
        perceptual: Perceptual term (from :func:`make_perceptual`) or None (pixel MSE only).
        alpha: Weight of the two reconstruction terms (paper: 1).
        beta: Weight of the pixel MSE inside each reconstruction term (paper: 0.1).
    """

    def __init__(self, perceptual: nn.Module | None, alpha: float = 1.0, beta: float = 0.1) -> None:
        super().__init__()
        self.perceptual = perceptual
        self.alpha = alpha
        self.beta = beta

    def reconstruction(self, pred: Tensor, target: Tensor) -> Tensor:
        """``perceptual(pred, target) + beta * MSE(pred, target)`` for (N, 1, H, W) images."""
        loss = self.beta * F.mse_loss(pred, target)
        if self.perceptual is not None:
            loss = loss + self.perceptual(pred, target)
        return loss

    def forward(self, out: RRLNetOutputs, a: Tensor, b: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Total loss and its parts.

        Args:
            out: Network outputs (six logits and two reconstructions, or fewer when pruned).
            a: Reference patches (N, 1, 64, 64).
            b: Target patches (N, 1, 64, 64).
            labels: (N,) float 0/1.

        Returns:
            ``(loss, parts)`` with ``parts`` holding ``bce`` (sum of the BCE terms) and ``rec``.
        """
        bce = sum((F.binary_cross_entropy_with_logits(lg, labels) for lg in out.logits), labels.new_zeros(()))
        rec = labels.new_zeros(())
        if out.recon_a is not None and out.recon_b is not None:
            rec = self.reconstruction(out.recon_a, a) + self.reconstruction(out.recon_b, b)
        total = bce + self.alpha * rec
        return total, {"bce": float(bce.detach()), "rec": float(rec.detach())}


LossFn = Callable[[RRLNetOutputs, Tensor, Tensor, Tensor], tuple[Tensor, dict[str, float]]]
