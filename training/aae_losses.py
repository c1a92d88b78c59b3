"""Losses of the semi-supervised dual adversarial autoencoder (Hughes & Schmitt 2019, eqs. 1-8).

* reconstruction (eq. 1), for all data, paired and unpaired: mean squared error between each
  standardised input and its reconstruction (the paper writes an L2 norm; the mean is used so the
  value does not grow with the patch size);
* contrastive matching loss (eq. 4) on labelled pairs, on L2-normalised codes:
  ``y d^2 + (1 - y) max(0, m - d^2)`` with ``d = ||z_o - z_s||`` (``d^2`` in [0, 4]);
* Wasserstein critic shared by both encoders (eqs. 7, 8): three fully connected layers of
  decreasing size with LeakyReLU 0.2 (the paper's sigmoid of the GAN version is dropped: a
  Wasserstein critic outputs an unbounded score); the prior is ``N(0, 5)`` (5 read as the
  standard deviation, like the paper's ``N(0.5, 0.2)`` intensity statistics); weights clipped
  to [-0.1, 0.1] after every critic step; five critic steps per encoder step.

Deviation (issue 17): with ``on_sphere`` the critic sees the L2-normalised codes and a prior uniform on
the unit sphere. On the raw codes a weight-clipped critic is close to linear, so its gradient is
nearly the same vector for every input; the encoders follow it without bound and every descriptor
collapses onto one direction (measured: cosine between different patches 0.80 -> 1.00 in 120 steps).

Means over the batch replace the paper's sums. The margin is not given in the paper (default 1.0,
i.e. non-matching descriptors pushed to a cosine similarity of at most 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Critic",
    "clip_weights",
    "contrastive_loss",
    "critic_input",
    "critic_loss",
    "encoder_adversarial_loss",
    "reconstruction_loss",
    "sample_prior",
    "update_critic",
]

#: Defaults of the paper (margin: not given there).
PRIOR_STD = 5.0
CLIP = 0.1
CRITIC_STEPS = 5
MARGIN = 1.0


def reconstruction_loss(target: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``(N, 1, P, P)`` standardised inputs and their reconstructions (scalar)."""
    return F.mse_loss(reconstruction, target)


def contrastive_loss(z_opt: torch.Tensor, z_sar: torch.Tensor, y: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
    """Contrastive matching loss of eq. 4 on L2-normalised codes.

    Args:
        z_opt: ``(N, D)`` optical codes (normalised here).
        z_sar: ``(N, D)`` SAR codes (normalised here).
        y: ``(N,)`` labels, 1 = corresponding, 0 = not.
        margin: ``m``, on the squared distance (in [0, 4] for unit vectors).

    Returns:
        The batch mean (scalar).
    """
    d2 = (F.normalize(z_opt, dim=1, eps=1e-8) - F.normalize(z_sar, dim=1, eps=1e-8)).pow(2).sum(dim=1)
    y = y.to(d2.dtype)
    return (y * d2 + (1.0 - y) * F.relu(margin - d2)).mean()


class Critic(nn.Module):
    """Wasserstein critic on latent codes: ``(N, D)`` -> ``(N,)`` scores.

    Args:
        latent_dim: ``D``.
        hidden: Sizes of the two hidden layers (decreasing; default ``D / 2`` and ``D / 4``).
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int] | None = None) -> None:
        super().__init__()
        h1, h2 = hidden if hidden is not None else (max(1, latent_dim // 2), max(1, latent_dim // 4))
        self.net = nn.Sequential(
            nn.Linear(latent_dim, h1), nn.LeakyReLU(0.2),
            nn.Linear(h1, h2), nn.LeakyReLU(0.2),
            nn.Linear(h2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Critic scores ``(N,)`` (higher = more like the prior)."""
        return self.net(z).squeeze(1)


def sample_prior(n: int, dim: int, std: float = PRIOR_STD, *, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, on_sphere: bool = False) -> torch.Tensor:
    """``(n, dim)`` samples of the prior ``N(0, std^2)``, or (``on_sphere``) uniform on the unit sphere."""
    z = torch.randn(n, dim, device=device, generator=generator) * std
    return F.normalize(z, dim=1) if on_sphere else z


def critic_input(z: torch.Tensor, on_sphere: bool) -> torch.Tensor:
    """What the critic sees of ``(N, D)`` codes: the codes, or (``on_sphere``) their L2-normalised directions.

    On the sphere the critic judges the descriptors the matcher compares (cosine similarity), and its
    gradient cannot push the codes' norm without bound (the collapse measured in issue 17).
    """
    return F.normalize(z, dim=1) if on_sphere else z


def critic_loss(critic: Critic, z_sar: torch.Tensor, z_opt: torch.Tensor, z_prior: torch.Tensor) -> torch.Tensor:
    """Eq. 7 (batch means): ``D(z_s) + D(z_o) - 2 D(z_p)``; the critic minimises it."""
    return critic(z_sar).mean() + critic(z_opt).mean() - 2.0 * critic(z_prior).mean()


def encoder_adversarial_loss(critic: Critic, z_sar: torch.Tensor, z_opt: torch.Tensor) -> torch.Tensor:
    """The adversarial part of eq. 8: ``-(D(z_s) + D(z_o))``; the encoders minimise it."""
    return -(critic(z_sar).mean() + critic(z_opt).mean())


@torch.no_grad()
def clip_weights(module: nn.Module, clip: float = CLIP) -> None:
    """Clamp every parameter of ``module`` to ``[-clip, clip]`` in place."""
    for p in module.parameters():
        p.clamp_(-clip, clip)


def update_critic(
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    z_sar: torch.Tensor,
    z_opt: torch.Tensor,
    *,
    steps: int = CRITIC_STEPS,
    prior_std: float = PRIOR_STD,
    clip: float = CLIP,
    generator: torch.Generator | None = None,
    on_sphere: bool = False,
) -> list[float]:
    """The critic's update for one encoder step: ``steps`` optimiser steps, each with fresh prior samples.

    The codes of the current batch are detached (the encoders are not touched). After every step
    the critic's weights are clipped to ``[-clip, clip]``.

    Args:
        critic: The shared critic.
        optimizer: Its optimiser (SGD 4e-3 in the paper).
        z_sar: ``(N, D)`` SAR codes of the batch.
        z_opt: ``(M, D)`` optical codes of the batch.
        steps: Critic steps (5 in the paper).
        prior_std: Standard deviation of the prior.
        clip: Weight clipping bound.
        generator: Random generator for the prior samples.
        on_sphere: Critic on the L2-normalised codes against a prior uniform on the unit sphere
            (:func:`critic_input`) instead of the raw codes against ``N(0, prior_std^2)``.

    Returns:
        The critic loss of each step.
    """
    zs, zo = critic_input(z_sar.detach(), on_sphere), critic_input(z_opt.detach(), on_sphere)
    n = max(zs.shape[0], zo.shape[0])
    losses = []
    for _ in range(int(steps)):
        zp = sample_prior(n, zs.shape[1], prior_std, device=zs.device, generator=generator, on_sphere=on_sphere)
        loss = critic_loss(critic, zs, zo, zp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clip_weights(critic, clip)
        losses.append(float(loss.detach()))
    return losses
