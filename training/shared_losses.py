r"""Losses of the shared-modality transform (Borisov et al. 2026, eqs. 1-4) and the SSIM they use.

Notation: ``x`` SAR input ``(B, C_X, H, W)``, ``y`` optical input ``(B, C_Y, H, W)`` (both in
[0, 1]), ``s = f_X(x)`` and ``o = f_Y(y)`` the shared images ``(B, K, H, W)`` in (0, 1),
``x_hat = f_X^{-1}(s)`` and ``y_hat = f_Y^{-1}(o)`` the reconstructions (criterion v1). Every term
takes an optional validity mask ``(B, 1, H, W)`` (1 = usable pixel): MSE is averaged over valid
pixels, SSIM over the windows that lie wholly on valid pixels.

**SSIM window.** The paper (section 3.2.2) says a ``w x w`` window with ``w = 5``; the public code
calls torchmetrics with ``kernel_size=5`` but a Gaussian kernel, where torchmetrics ignores the
size and uses sigma 1.5, 11 x 11. Both are available (``window="gaussian11"`` / ``"uniform5"`` or
``"uniformW"`` for a W x W box). The default is **gaussian11**: it is what produced the paper's
published numbers and checkpoints, its local statistics (effective support about 2 sigma = 3 px
each side) are less noisy on speckled 10 m SAR than those of a 5 x 5 box, and the Gaussian
weighting still favours the centre pixel, so small details are not washed out. SSIM is computed
on the "valid" part only (no padding), like torchmetrics after it crops its reflect padding.
Constants ``k1 = 0.01``, ``k2 = 0.03`` (the standard ones, Wang et al. 2004; the paper gives
none; the public code uses 10x smaller ones for the shared images), ``data_range = 1``, inputs
not clamped (the v1 reconstructions are unbounded). DiSSIM = 1 - SSIM (not halved), multi-channel
inputs: mean over channels.

**v1** (eq. 1-3), paper weights alpha = 1, beta = 3, gamma = 16, eta = 1::

    alpha * [L_D(x, x_hat) + eta * L_D(y, y_hat)] + beta * MSE(s, o) + gamma * DiSSIM(s, o),
    L_D(a, b) = MSE(a, b) + DiSSIM(a, b)

**v2** (eq. 1, 2, 4), paper weights alpha = 16, beta = 1::

    beta * MSE(s, o) + gamma * DiSSIM(sg(s), o) + alpha * DiSSIM(mean_c(s), gray(y_rgb))

``gray(y_rgb)`` is the mean of the RGB (or highest-resolution) bands of the normalised optical
input. The paper gives no gamma for v2; we use the public code's **gamma = 3 with a
stop-gradient ``sg`` on the SAR output** in the shared-image SSIM term (``v2_stop_gradient``).
Reason: in v2 the SAR network's structure is set by the gray-image term alone (the paper's own
argument in 3.2.3: ``f_X`` learns what of the optical structure SAR can show, ``f_Y`` learns to
drop what it cannot); letting the shared-image SSIM also pull the SAR output towards the
optical output would feed the optical network's details back into the SAR network, the very
effect the paper observed to hurt when it tried ``lambda_2 > 0``. The MSE term still trains both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "LossWeights",
    "dissim",
    "image_metrics",
    "masked_mse",
    "shared_loss_v1",
    "shared_loss_v2",
    "ssim",
    "ssim_window",
]

WINDOWS = ("gaussian11", "uniform5")


def ssim_window(window: str, device: torch.device | None = None) -> torch.Tensor:
    """The normalised 2-D SSIM window ``(w, w)``.

    Args:
        window: ``"gaussian11"`` (sigma 1.5, 11 x 11, torchmetrics / the public code) or
            ``"uniformW"`` (a W x W box, e.g. ``"uniform5"``, the paper's text).
        device: Where to put it (default CPU).
    """
    if window == "gaussian11":
        r = torch.arange(11, dtype=torch.float32) - 5.0
        g = torch.exp(-(r**2) / (2 * 1.5**2))
        k = torch.outer(g, g)
    elif window.startswith("uniform") and window[7:].isdigit() and int(window[7:]) >= 1:
        w = int(window[7:])
        k = torch.ones(w, w)
    else:
        raise ValueError(f"unknown SSIM window {window!r}; use gaussian11 or uniformW (e.g. uniform5)")
    k = k / k.sum()
    return k.to(device) if device is not None else k


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    window: str = "gaussian11",
    valid: torch.Tensor | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean SSIM of two image batches over windows and channels.

    Args:
        a: ``(B, C, H, W)``.
        b: ``(B, C, H, W)`` (same shape as ``a``).
        window: See :func:`ssim_window`.
        valid: Optional ``(B, 1, H, W)`` mask; only windows wholly on valid pixels count.
        k1: Luminance constant factor (``c1 = (k1 * data_range)^2``).
        k2: Contrast constant factor (``c2 = (k2 * data_range)^2``).
        data_range: Value range of the images.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (one value per image, ``(B,)``).

    Returns:
        SSIM in [-1, 1]: a scalar, or ``(B,)`` with ``reduction="none"``. A batch (or image) with
        no valid window gives 1 (nothing to penalise).
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    kern = ssim_window(window, a.device).to(a.dtype)
    w = kern.shape[-1]
    if a.shape[-1] < w or a.shape[-2] < w:
        raise ValueError(f"images {tuple(a.shape[-2:])} are smaller than the {w} x {w} SSIM window")
    c = a.shape[1]
    weight = kern.expand(c, 1, w, w).contiguous()

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, weight, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    smap = smap.mean(dim=1, keepdim=True)  # (B, 1, H - w + 1, W - w + 1)
    if valid is None:
        per = smap.flatten(1).mean(1)
        return per.mean() if reduction == "mean" else per
    full = F.conv2d(valid.to(a.dtype), kern.view(1, 1, w, w))
    m = (full > 1.0 - 1e-4).to(a.dtype)
    if reduction == "mean":
        n = m.sum()
        return (smap * m).sum() / n if n > 0 else torch.ones((), dtype=a.dtype, device=a.device)
    n = m.flatten(1).sum(1)
    s = (smap * m).flatten(1).sum(1)
    return torch.where(n > 0, s / n.clamp_min(1.0), torch.ones_like(s))


def dissim(
    a: torch.Tensor, b: torch.Tensor, *, window: str = "gaussian11", valid: torch.Tensor | None = None
) -> torch.Tensor:
    """``1 - SSIM(a, b)`` (scalar; 0 for identical images, up to 2)."""
    return 1.0 - ssim(a, b, window=window, valid=valid)


def masked_mse(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over valid pixels (all channels); 0 when nothing is valid."""
    d = (a - b) ** 2
    if valid is None:
        return d.mean()
    m = valid.to(d.dtype).expand_as(d)
    n = m.sum()
    return (d * m).sum() / n if n > 0 else d.sum() * 0.0


@dataclass(frozen=True)
class LossWeights:
    """Weights of the two criteria (defaults: the paper's, plus the public code's v2 gamma).

    Attributes:
        alpha: Degeneracy weight (v1: 1, v2: 16).
        beta: MSE(s, o) weight (v1: 3, v2: 1).
        gamma: DiSSIM(s, o) weight (v1: 16; v2: 3, not in the paper, from the public code).
        eta: Weight of the optical reconstruction term (v1).
        v2_stop_gradient: Stop the gradient into the SAR output in v2's DiSSIM(s, o).
        window: SSIM window (see :func:`ssim_window`).
    """

    alpha: float
    beta: float
    gamma: float
    eta: float = 1.0
    v2_stop_gradient: bool = True
    window: str = "gaussian11"

    @classmethod
    def paper(cls, criterion: str, window: str = "gaussian11") -> LossWeights:
        """The default weights of ``criterion`` (``"v1"`` or ``"v2"``)."""
        if criterion == "v1":
            return cls(alpha=1.0, beta=3.0, gamma=16.0, eta=1.0, window=window)
        if criterion == "v2":
            return cls(alpha=16.0, beta=1.0, gamma=3.0, window=window)
        raise ValueError(f"criterion must be 'v1' or 'v2', got {criterion!r}")


def _finite(t: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(t).all():
        raise FloatingPointError("non-finite loss")
    return t


def shared_loss_v2(
    s: torch.Tensor,
    o: torch.Tensor,
    optical_gray: torch.Tensor,
    weights: LossWeights | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Criterion v2 (eq. 4).

    Args:
        s: SAR shared image ``(B, K, H, W)``.
        o: Optical shared image ``(B, K, H, W)``.
        optical_gray: ``(B, 1, H, W)``: mean of the normalised optical RGB bands.
        weights: Default :meth:`LossWeights.paper` ``("v2")``.
        valid: Optional ``(B, 1, H, W)`` mask.

    Returns:
        ``(loss, parts)``: the scalar loss and its terms as floats (``mse``, ``dissim_so``,
        ``dissim_gray``).
    """
    wt = weights or LossWeights.paper("v2")
    mse = masked_mse(s, o, valid)
    s_for_ssim = s.detach() if wt.v2_stop_gradient else s
    d_so = dissim(s_for_ssim, o, window=wt.window, valid=valid)
    d_gray = dissim(s.mean(dim=1, keepdim=True), optical_gray, window=wt.window, valid=valid)
    loss = wt.beta * mse + wt.gamma * d_so + wt.alpha * d_gray
    parts = {"mse": float(mse.detach()), "dissim_so": float(d_so.detach()), "dissim_gray": float(d_gray.detach())}
    return _finite(loss), parts


def shared_loss_v1(
    x: torch.Tensor,
    y: torch.Tensor,
    s: torch.Tensor,
    o: torch.Tensor,
    x_hat: torch.Tensor,
    y_hat: torch.Tensor,
    weights: LossWeights | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Criterion v1 (eq. 3): reconstruction of both inputs plus similarity of the shared images.

    Args:
        x: SAR input ``(B, C_X, H, W)``.
        y: Optical input ``(B, C_Y, H, W)``.
        s: ``f_X(x)`` ``(B, K, H, W)``.
        o: ``f_Y(y)`` ``(B, K, H, W)``.
        x_hat: ``f_X^{-1}(s)`` ``(B, C_X, H, W)``.
        y_hat: ``f_Y^{-1}(o)`` ``(B, C_Y, H, W)``.
        weights: Default :meth:`LossWeights.paper` ``("v1")``.
        valid: Optional ``(B, 1, H, W)`` mask.

    Returns:
        ``(loss, parts)`` with ``mse``, ``dissim_so``, ``rec_sar``, ``rec_opt`` (the two L_D).
    """
    wt = weights or LossWeights.paper("v1")
    rec_x = masked_mse(x, x_hat, valid) + dissim(x, x_hat, window=wt.window, valid=valid)
    rec_y = masked_mse(y, y_hat, valid) + dissim(y, y_hat, window=wt.window, valid=valid)
    mse = masked_mse(s, o, valid)
    d_so = dissim(s, o, window=wt.window, valid=valid)
    loss = wt.alpha * (rec_x + wt.eta * rec_y) + wt.beta * mse + wt.gamma * d_so
    parts = {"mse": float(mse.detach()), "dissim_so": float(d_so.detach()), "rec_sar": float(rec_x.detach()),
             "rec_opt": float(rec_y.detach())}
    return _finite(loss), parts


def image_metrics(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """The paper's Table-1 similarity of two images ``(1, K, H, W)`` in [0, 1]: RMSE, PSNR, SSIM.

    SSIM here is always the standard one (Gaussian 11 x 11, sigma 1.5, k1 0.01, k2 0.03),
    whatever window the training used. PSNR uses MAX = 1 (capped at 100 dB for identical images).
    """
    mse = float(masked_mse(a, b, valid))
    return {
        "rmse": math.sqrt(mse),
        "psnr": 100.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse),
        "ssim": float(ssim(a, b, window="gaussian11", valid=valid)),
    }
