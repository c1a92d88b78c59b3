"""The BNN in dense search: distance maps of an optical template over SAR search windows.

Registration uses the BNN as a matcher: an optical template (``T x T``) is compared with every
``T x T`` window of a SAR search region and the window with the smallest distance ``h`` gives the
shift. This module reuses :func:`sarcoreg.core.correspondence.correspondence_maps` (batched
window embedding, the template embedded once), :func:`~sarcoreg.core.correspondence.find_peaks`
(sub-pixel peak) and :func:`~sarcoreg.core.correspondence.make_cases` (cases with a known shift)
through :class:`BNNDescriptors`, which writes the BNN's Euclidean distance as an inner product:
with ``za = g(a)``, ``zb = f(b)`` and ``n`` the space dimension,

``[2 za / n, -|za|^2 / n, 1] . [zb, 1, -|zb|^2 / n] = -|za - zb|^2 / n = -h^2``,

so the correspondence map holds ``-h^2`` (highest = best match; same argmax as ``-h``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sarcoreg.models.bnn import BNN

__all__ = ["BNNDescriptors", "DenseResult", "dense_matching"]


class BNNDescriptors:
    """A :class:`~sarcoreg.models.bnn.BNN` as a descriptor model whose inner product is ``-h^2``.

    Args:
        net: The network (put in eval mode here).
        device: Where to run it.
        batch_size: Patches per forward.
    """

    def __init__(self, net: BNN, device: torch.device | str = "cpu", batch_size: int = 256) -> None:
        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.patch_size = int(net.patch_size)

    @torch.no_grad()
    def _embed(self, x: np.ndarray, optical: bool) -> np.ndarray:
        """``(N, P, P)`` float in [0, 1] -> ``(N, n)`` float32 embeddings of one tower."""
        tower = self.net.embed_optical if optical else self.net.embed_sar
        out = []
        for i in range(0, len(x), self.batch_size):
            t = torch.from_numpy(np.ascontiguousarray(x[i : i + self.batch_size], np.float32))[:, None]
            out.append(tower(t.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.dim), np.float32)

    def embed_optical(self, x: np.ndarray) -> np.ndarray:
        """Optical templates ``(N, P, P)`` -> ``(N, n + 2)`` ``[2 za / n, -|za|^2 / n, 1]``."""
        z = self._embed(np.nan_to_num(np.asarray(x, np.float32)), optical=True)
        n = float(self.net.dim)
        return np.concatenate([2.0 * z / n, -(z**2).sum(1, keepdims=True) / n, np.ones((len(z), 1), np.float32)], 1)

    def embed_sar(self, x: np.ndarray) -> np.ndarray:
        """SAR windows ``(N, P, P)`` -> ``(N, n + 2)`` ``[zb, 1, -|zb|^2 / n]``."""
        z = self._embed(np.nan_to_num(np.asarray(x, np.float32)), optical=False)
        n = float(self.net.dim)
        return np.concatenate([z, np.ones((len(z), 1), np.float32), -(z**2).sum(1, keepdims=True) / n], 1)


@dataclass(frozen=True)
class DenseResult:
    """Template matching with a known shift.

    Attributes:
        errors: ``(K,)`` Euclidean error of the sub-pixel shift, px.
        within: Share of cases with error <= 1, 2, 3 px (keys ``"1"``, ``"2"``, ``"3"``).
        median_error: Median of ``errors``.
        on_border: Share of peaks on the map border.
        cases: ``K``.
    """

    errors: np.ndarray
    within: dict[str, float]
    median_error: float
    on_border: float
    cases: int


def dense_matching(net: BNN, pairs: Sequence[tuple[np.ndarray, np.ndarray]], template: int = 64, search: int = 96,
                   per_pair: int = 20, max_shift: int | None = None, seed: int = 0,
                   device: torch.device | str = "cpu", batch_size: int = 256) -> DenseResult:
    """Optical templates against SAR search windows with a known shift: share within 1 / 2 / 3 px.

    Args:
        net: The BNN (its patch size should be ``template``; otherwise both are resampled).
        pairs: ``(optical, sar)`` ``(H, W)`` float images in [0, 1] on one grid.
        template: Template side ``T``.
        search: Search window side ``S`` (``S - T`` even); the map is ``(S - T + 1)^2``.
        per_pair: Cases per image pair.
        max_shift: Largest true shift per axis (default ``(S - T) / 2 - 2``).
        seed: Case positions and shifts.
        device: Where the network runs.
        batch_size: Windows per forward.

    Returns:
        The errors and the shares.
    """
    from sarcoreg.core.correspondence import correspondence_maps, find_peaks, make_cases, matching_errors

    temps, searches, true_shift = make_cases(pairs, template, search, per_pair=per_pair, max_shift=max_shift,
                                             seed=seed)
    maps = correspondence_maps(BNNDescriptors(net, device, batch_size), temps, searches, batch_size=batch_size)
    peaks = find_peaks(maps)
    err = matching_errors(peaks.shift, true_shift)
    return DenseResult(err, {str(k): float((err <= k).mean()) for k in (1, 2, 3)}, float(np.median(err)),
                       float(peaks.on_border.mean()), int(len(err)))
