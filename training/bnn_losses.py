"""The BNN loss (Qian et al. 2022, eqs. 5-7) and balanced mini-batches.

``l_p = mean over positives of h^2``, ``l_n = mean over negatives of (h - 1)^2`` and
``l_BNN = (l_p + alpha * l_n) / (1 + alpha)`` with ``alpha = 1``. Every mini-batch holds as many
positives as negatives (the paper: "to prevent the model from mode collapse").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["balanced_indices", "bnn_loss", "to_tensor"]


def bnn_loss(h: Tensor, labels: Tensor, alpha: float = 1.0) -> tuple[Tensor, dict[str, float]]:
    """BNN regression loss.

    Args:
        h: Distances ``(N,)`` (:meth:`sarcoreg.models.bnn.BNN.distance`).
        labels: ``(N,)`` 1 = matching pair (regress to 0), 0 = non-matching (regress to 1).
        alpha: Weight of the negative term.

    Returns:
        ``(loss, parts)``; ``parts`` has the floats ``l_p`` and ``l_n`` (0 for an absent class).

    Raises:
        ValueError: Shapes differ.
    """
    if h.shape != labels.shape or h.ndim != 1:
        raise ValueError(f"bnn_loss wants (N,) distances and labels, got {tuple(h.shape)} and {tuple(labels.shape)}")
    pos = labels > 0.5
    zero = h.sum() * 0.0
    l_p = (h[pos] ** 2).mean() if bool(pos.any()) else zero
    l_n = ((h[~pos] - 1.0) ** 2).mean() if bool((~pos).any()) else zero
    loss = (l_p + alpha * l_n) / (1.0 + alpha)
    return loss, {"l_p": float(l_p.detach()), "l_n": float(l_n.detach())}


def balanced_indices(
    n: int, batch_size: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a balanced mini-batch over ``n`` aligned SAR / optical patches.

    Half the batch are positives ``(x_s^i, x_o^i)``, half negatives ``(x_s^i, x_o^j)`` with
    ``j != i`` (and, when ``groups`` is given, ``groups[j] != groups[i]``: patches cut from one
    scene overlap and must not serve as each other's negatives).

    Args:
        n: Number of aligned patch pairs in the pool.
        batch_size: Pairs per batch (even; an odd size gets one more negative).
        rng: Random generator.
        groups: ``(n,)`` source ids or None.

    Returns:
        ``(sar_index, opt_index, labels)``, each ``(batch_size,)``; labels 1 = positive.

    Raises:
        ValueError: Fewer than two pairs, or all pairs in one group.
    """
    if n < 2:
        raise ValueError(f"need at least two aligned patch pairs for negatives, got {n}")
    if groups is not None and len(np.unique(groups)) < 2:
        raise ValueError("all patches come from one source image: negatives need a second one")
    n_pos = batch_size // 2
    n_neg = batch_size - n_pos
    pos = rng.choice(n, size=n_pos, replace=n_pos > n)
    s_neg = rng.choice(n, size=n_neg, replace=n_neg > n)
    o_neg = (s_neg + rng.integers(1, n, size=n_neg)) % n
    if groups is not None:
        for k in range(n_neg):
            while groups[o_neg[k]] == groups[s_neg[k]]:
                o_neg[k] = rng.integers(0, n)
    sar = np.r_[pos, s_neg].astype(np.int64)
    opt = np.r_[pos, o_neg].astype(np.int64)
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(np.float32)
    return sar, opt, labels


def to_tensor(images: np.ndarray, device: torch.device) -> Tensor:
    """uint8 patches ``(N, P, P)`` -> float ``(N, 1, P, P)`` in [0, 1] on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32) / 255.0
    return x[:, None]
