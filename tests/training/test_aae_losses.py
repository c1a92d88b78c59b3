"""AAE losses on hand-made inputs: contrastive margin, critic loss, clipping, five critic steps."""

from __future__ import annotations

import math

import pytest
import torch
from sarcoreg.training.aae_losses import (
    Critic,
    clip_weights,
    contrastive_loss,
    critic_loss,
    encoder_adversarial_loss,
    reconstruction_loss,
    sample_prior,
    update_critic,
)


class CountingSGD(torch.optim.SGD):
    """Plain SGD that counts its steps."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.steps = 0

    def step(self, closure=None):  # type: ignore[no-untyped-def]
        self.steps += 1
        return super().step(closure)


def test_contrastive_loss_hand_made() -> None:
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    one, zero = torch.ones(1), torch.zeros(1)
    # Positives: the squared distance of the unit codes.
    assert float(contrastive_loss(e1, e1, one)) == pytest.approx(0.0)
    assert float(contrastive_loss(e1, e2, one)) == pytest.approx(2.0)
    assert float(contrastive_loss(e1, -e1, one)) == pytest.approx(4.0)
    # Negatives: max(0, m - d^2).
    assert float(contrastive_loss(e1, e1, zero, margin=1.0)) == pytest.approx(1.0)
    assert float(contrastive_loss(e1, e2, zero, margin=1.0)) == pytest.approx(0.0)  # d^2 = 2 > m
    assert float(contrastive_loss(e1, e2, zero, margin=3.0)) == pytest.approx(1.0)
    # Codes are L2-normalised first: the scale does not matter.
    assert float(contrastive_loss(7.0 * e1, 0.1 * e2, one)) == pytest.approx(2.0)
    # Batch mean of the four cases above (0, 2, 1, 0).
    za = torch.cat([e1, e1, e1, e1])
    zb = torch.cat([e1, e2, e1, e2])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert float(contrastive_loss(za, zb, y, margin=1.0)) == pytest.approx(0.75)


def test_reconstruction_loss_is_mse() -> None:
    x = torch.zeros(2, 1, 4, 4)
    assert float(reconstruction_loss(x, x + 0.5)) == pytest.approx(0.25)


def test_critic_shape_and_wasserstein_losses() -> None:
    torch.manual_seed(0)
    critic = Critic(16)
    linears = [m for m in critic.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [8, 4, 1]  # three FC layers of decreasing size
    assert all(m.negative_slope == 0.2 for m in critic.net if isinstance(m, torch.nn.LeakyReLU))
    zs, zo, zp = torch.randn(5, 16), torch.randn(3, 16), torch.randn(4, 16)
    with torch.no_grad():
        expect = critic(zs).mean() + critic(zo).mean() - 2 * critic(zp).mean()
        assert float(critic_loss(critic, zs, zo, zp)) == pytest.approx(float(expect), rel=1e-6)
        assert float(encoder_adversarial_loss(critic, zs, zo)) == pytest.approx(
            -float(critic(zs).mean() + critic(zo).mean()), rel=1e-6)


def test_prior_is_normal_with_std_5() -> None:
    z = sample_prior(20000, 8, generator=torch.Generator().manual_seed(0))
    assert abs(float(z.mean())) < 0.1
    assert float(z.std()) == pytest.approx(5.0, rel=0.02)


def test_clip_weights() -> None:
    critic = Critic(8)
    with torch.no_grad():
        for p in critic.parameters():
            p.fill_(3.0)
        next(critic.parameters())[0, 0] = -2.0
    clip_weights(critic, 0.1)
    vals = torch.cat([p.detach().flatten() for p in critic.parameters()])
    assert float(vals.max()) == pytest.approx(0.1) and float(vals.min()) == pytest.approx(-0.1)


def test_update_critic_takes_five_clipped_steps_and_leaves_encoders_alone() -> None:
    torch.manual_seed(1)
    critic = Critic(16)
    with torch.no_grad():  # start far outside the clip range
        for p in critic.parameters():
            p.mul_(10.0)
    opt = CountingSGD(critic.parameters(), lr=4e-3, momentum=0.9)
    enc = torch.nn.Linear(4, 16)
    x = torch.randn(6, 4)
    z_s, z_o = enc(x), enc(x + 1)
    losses = update_critic(critic, opt, z_s, z_o, generator=torch.Generator().manual_seed(0))
    assert len(losses) == 5 and opt.steps == 5
    assert all(math.isfinite(v) for v in losses)
    vals = torch.cat([p.detach().flatten() for p in critic.parameters()])
    assert float(vals.abs().max()) <= 0.1 + 1e-7
    assert enc.weight.grad is None  # the codes were detached
    # The critic learns to separate the prior (std 5) from codes near 0: its loss goes down.
    zp = sample_prior(64, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        before = float(critic_loss(critic, z_s, z_o, zp))
    update_critic(critic, opt, z_s, z_o, steps=40, generator=torch.Generator().manual_seed(1))
    assert opt.steps == 45
    with torch.no_grad():
        after = float(critic_loss(critic, z_s, z_o, zp))
    assert after < before
