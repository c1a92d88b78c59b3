"""RRL-Net in PyTorch, re-implemented from the paper and a description of the public Keras code.

Paper: Yu et al. 2024, "Relational Representation Learning Network for Cross-Spectral Image
Patch Matching". The network compares two single-channel 64 x 64 patches ``a`` (reference / optical / VIS) and
``b`` (target / SAR / NIR), each ``(N, 1, 64, 64)`` float in [0, 1], and returns the probability
that they show the same place.

Parts (names as in the paper):

* two ALFE towers (same architecture, *not* shared weights): per stage one 3 x 3 conv -> BN ->
  LeakyReLU(0.1) -> max-pool (from stage 2 on) -> MGLA; channels 16-32-64-128-256, sizes
  64-32-16-8-4;
* MGLA: three attention-pooled 1-D gates (channel, row, column), each a 1-D conv + sigmoid;
* FIL at every stage: feature branch ``LReLU(BN(conv1x1))`` and gate branch
  ``sigmoid(BN(conv1x1))`` per tower; shared ``s1 = a1 * g2``, ``s2 = a2 * g1``; private
  ``p1 = |s1 - a1|``, ``p2 = |s2 - a2|``;
* the aggregation branch: per stage 2 x (3 x 3 conv -> BN -> LReLU) on ``concat(previous, p1, p2)``;
* metric heads: global average pool -> 512 ReLU -> 256 ReLU -> 1.

Training-only parts (the paper's multi-loss post-pruning, MLPP): one reconstruction decoder per
tower, stage heads on aggregation stages 3 and 4 (``b = 3`` with the main head on stage 5) and
sub-metric heads on the shared features ``s1 + s2`` of stages 3-5 (``a = 3``).
:meth:`RRLNet.prune_for_inference` drops them; :class:`RRLNetInference` is the pruned network
with a sigmoid output, the module exported to ONNX.

Keras defaults of the public code are kept: BatchNorm momentum 0.99 (PyTorch 0.01) and eps 1e-3,
truncated he-normal conv init, Glorot-uniform dense and 1-D conv init.

Parameter count of the pruned network: 9,394,105 trainable parameters; adding the BatchNorm
running means and variances (which Keras counts as non-trainable parameters) gives 9,404,025,
the number in the paper's Tables I-V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PAPER_PARAMETERS",
    "RRLNet",
    "RRLNetInference",
    "RRLNetOutputs",
    "count_parameters",
    "eca_kernel",
    "export_onnx",
]

#: Parameter count of the pruned (inference) RRL-Net reported in the paper (Keras count).
PAPER_PARAMETERS = 9_404_025
#: Patch side length the network is built for.
PATCH_SIZE = 64
ENCODER_CHANNELS = (16, 32, 64, 128, 256)
AGGREGATION_CHANNELS = (32, 64, 128, 256, 512)
_BN_MOMENTUM = 0.01  # Keras momentum 0.99
_BN_EPS = 1e-3
_SLOPE = 0.1


def eca_kernel(n: int) -> int:
    """Odd 1-D kernel size for a dimension of length ``n`` (the ECA rule used by MGLA).

    ``t = int(|(log2 n + 1) / 2|)``; ``k = t`` if ``t`` is odd, else ``t + 1``.
    """
    t = int(abs((math.log2(n) + 1.0) / 2.0))
    return t if t % 2 else t + 1


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _ConvBNAct(nn.Sequential):
    """3 x 3 conv ('same') -> BatchNorm -> LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
            _bn(cout),
            nn.LeakyReLU(_SLOPE),
        )


class MGLA(nn.Module):
    """Multi-dimensional global-to-local attention: ``out = x * g_C * g_H * g_W``.

    Each gate pools ``x`` (N, C, H, W) to a 1-D vector along its dimension by attention pooling
    (softmax over the other two dimensions of the mean over its own dimension), runs a 1-D conv
    (one filter, kernel from :func:`eca_kernel`, with bias) over it and applies a sigmoid.
    Each gate adds ``k + 1`` parameters.

    Args:
        channels: ``C``.
        size: ``H`` (= ``W``; patches are square).
    """

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        kc, khw = eca_kernel(channels), eca_kernel(size)
        self.conv_c = nn.Conv1d(1, 1, kc, padding=kc // 2)
        self.conv_h = nn.Conv1d(1, 1, khw, padding=khw // 2)
        self.conv_w = nn.Conv1d(1, 1, khw, padding=khw // 2)

    @staticmethod
    def _gate(conv: nn.Conv1d, v: Tensor) -> Tensor:
        """``sigmoid(conv(v))`` for ``v`` (N, L) -> (N, L)."""
        return torch.sigmoid(conv(v.unsqueeze(1)).squeeze(1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the three gates to ``x`` (N, C, H, W); same shape out."""
        n, c, h, w = x.shape
        # Channel gate: weights over the H*W positions from the channel mean.
        p = torch.softmax(x.mean(dim=1).reshape(n, h * w), dim=1).reshape(n, 1, h, w)
        g_c = self._gate(self.conv_c, (x * p).sum(dim=(2, 3)))  # (N, C)
        # Row gate: weights over the C*W entries from the mean over H.
        p = torch.softmax(x.mean(dim=2).reshape(n, c * w), dim=1).reshape(n, c, 1, w)
        g_h = self._gate(self.conv_h, (x * p).sum(dim=(1, 3)))  # (N, H)
        # Column gate: weights over the C*H entries from the mean over W.
        p = torch.softmax(x.mean(dim=3).reshape(n, c * h), dim=1).reshape(n, c, h, 1)
        g_w = self._gate(self.conv_w, (x * p).sum(dim=(1, 2)))  # (N, W)
        return x * g_c[:, :, None, None] * g_h[:, None, :, None] * g_w[:, None, None, :]


class ALFE(nn.Module):
    """One attention-based lightweight feature-extraction tower (5 stages, one conv each)."""

    def __init__(self) -> None:
        super().__init__()
        stages = []
        cin, size = 1, PATCH_SIZE
        for k, c in enumerate(ENCODER_CHANNELS):
            layers: list[nn.Module] = [_ConvBNAct(cin, c)]
            if k > 0:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers.append(MGLA(c, size))
            stages.append(nn.Sequential(*layers))
            cin = c
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Stage outputs ``f1..f5`` for ``x`` (N, 1, 64, 64): (N, 16, 64, 64) ... (N, 256, 4, 4)."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class FIL(nn.Module):
    """Feature interaction learning between the two towers at one stage (``c`` channels)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.feat1 = nn.Sequential(nn.Conv2d(c, c, 1), _bn(c), nn.LeakyReLU(_SLOPE))
        self.feat2 = nn.Sequential(nn.Conv2d(c, c, 1), _bn(c), nn.LeakyReLU(_SLOPE))
        self.gate1 = nn.Sequential(nn.Conv2d(c, c, 1), _bn(c), nn.Sigmoid())
        self.gate2 = nn.Sequential(nn.Conv2d(c, c, 1), _bn(c), nn.Sigmoid())

    def forward(self, f1: Tensor, f2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Private features ``p1``, ``p2`` and the shared sum ``s1 + s2``, each (N, c, H, W)."""
        a1, a2 = self.feat1(f1), self.feat2(f2)
        s1 = a1 * self.gate2(f2)
        s2 = a2 * self.gate1(f1)
        return torch.abs(s1 - a1), torch.abs(s2 - a2), s1 + s2


class MetricHead(nn.Module):
    """Global average pool -> Dense 512 ReLU -> Dense 256 ReLU -> Dense 1 (a logit)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(c, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N,) for features ``x`` (N, c, H, W)."""
        return self.mlp(x.mean(dim=(2, 3))).squeeze(1)


class SubMetricHead(nn.Module):
    """Training-only head on the shared features: 2 x (3 x 3 conv -> BN -> LReLU) + metric head."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_ConvBNAct(c, c), _ConvBNAct(c, c))
        self.head = MetricHead(c)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N,) for shared features ``x`` (N, c, H, W)."""
        return self.head(self.convs(x))


class Decoder(nn.Module):
    """Training-only reconstruction decoder: (N, 256, 4, 4) -> (N, 1, 64, 64) in [0, 1].

    Four steps of 3 x 3 conv -> BN -> LReLU -> bilinear x2 upsampling -> MGLA (128, 64, 32, 16
    channels), then a 3 x 3 conv to one channel and a sigmoid. No skip connections.
    """

    def __init__(self) -> None:
        super().__init__()
        convs, attn = [], []
        cin, size = ENCODER_CHANNELS[-1], PATCH_SIZE // 16
        for c in (128, 64, 32, 16):
            size *= 2
            convs.append(_ConvBNAct(cin, c))
            attn.append(MGLA(c, size))
            cin = c
        self.convs = nn.ModuleList(convs)
        self.attn = nn.ModuleList(attn)
        self.out = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction (N, 1, 64, 64) of the tower input from its last stage ``x``."""
        for conv, attn in zip(self.convs, self.attn, strict=True):
            x = F.interpolate(conv(x), scale_factor=2.0, mode="bilinear", align_corners=False)
            x = attn(x)
        return torch.sigmoid(self.out(x))


@dataclass
class RRLNetOutputs:
    """Everything the training network produces for a batch of N pairs.

    Attributes:
        logits: The matching logits present, each (N,); unpruned there are six, each (N,): main (stage 5), stage 4,
            stage 3, sub-metric 5, sub-metric 4, sub-metric 3 (the order of the public code).
        recon_a: Reconstruction of ``a`` (N, 1, 64, 64), or None when pruned.
        recon_b: Reconstruction of ``b`` (N, 1, 64, 64), or None when pruned.
    """

    logits: list[Tensor]
    recon_a: Tensor | None
    recon_b: Tensor | None

    @property
    def main(self) -> Tensor:
        """Main logit (N,) (stage-5 head)."""
        return self.logits[0]


class RRLNet(nn.Module):
    """The full RRL-Net (training form; call :meth:`prune_for_inference` for deployment)."""

    def __init__(self) -> None:
        super().__init__()
        self.tower_a = ALFE()
        self.tower_b = ALFE()
        self.fil = nn.ModuleList(FIL(c) for c in ENCODER_CHANNELS)
        agg = []
        prev = 0
        for c_enc, c_out in zip(ENCODER_CHANNELS, AGGREGATION_CHANNELS, strict=True):
            agg.append(nn.Sequential(_ConvBNAct(prev + 2 * c_enc, c_out), _ConvBNAct(c_out, c_out)))
            prev = c_out
        self.aggregation = nn.ModuleList(agg)
        self.head = MetricHead(AGGREGATION_CHANNELS[-1])
        # Training-only (MLPP) branches.
        self.decoder_a: Decoder | None = Decoder()
        self.decoder_b: Decoder | None = Decoder()
        self.stage_heads: nn.ModuleList | None = nn.ModuleList(
            MetricHead(AGGREGATION_CHANNELS[k]) for k in (3, 2)
        )
        self.sub_heads: nn.ModuleList | None = nn.ModuleList(
            SubMetricHead(ENCODER_CHANNELS[k]) for k in (4, 3, 2)
        )
        self.reset_parameters()

    @property
    def pruned(self) -> bool:
        """True once the training-only branches were removed."""
        return self.decoder_a is None

    def reset_parameters(self) -> None:
        """Keras-style init: truncated he-normal convs, Glorot-uniform dense / 1-D convs, zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, 0.0, std, -2.0 * std, 2.0 * std)
            elif isinstance(m, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(m.weight)
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, a: Tensor, b: Tensor, main_only: bool = False) -> RRLNetOutputs:
        """Run the network on patch pairs.

        Args:
            a: Reference patches (N, 1, 64, 64) in [0, 1].
            b: Target patches (N, 1, 64, 64) in [0, 1].
            main_only: Skip the training-only branches even when present (for validation).

        Returns:
            Logits of every head present and the reconstructions (None once pruned).
        """
        fa, fb = self.tower_a(a), self.tower_b(b)
        x: Tensor | None = None
        agg_out: list[Tensor] = []
        shared: list[Tensor] = []
        for k in range(len(ENCODER_CHANNELS)):
            p1, p2, s = self.fil[k](fa[k], fb[k])
            shared.append(s)
            inp = torch.cat([p1, p2] if x is None else [x, p1, p2], dim=1)
            y = self.aggregation[k](inp)
            agg_out.append(y)
            x = F.max_pool2d(y, 2) if k < len(ENCODER_CHANNELS) - 1 else y
        logits = [self.head(agg_out[4])]
        if main_only:
            return RRLNetOutputs(logits, None, None)
        if self.stage_heads is not None:
            logits += [self.stage_heads[0](agg_out[3]), self.stage_heads[1](agg_out[2])]
        if self.sub_heads is not None:
            logits += [head(shared[k]) for head, k in zip(self.sub_heads, (4, 3, 2), strict=True)]
        ra = self.decoder_a(fa[4]) if self.decoder_a is not None else None
        rb = self.decoder_b(fb[4]) if self.decoder_b is not None else None
        return RRLNetOutputs(logits, ra, rb)

    def prune_for_inference(self) -> RRLNet:
        """Drop the decoders, stage heads and sub-metric heads (MLPP post-pruning), in place.

        The main output does not depend on them, so it is unchanged. Returns ``self``.
        """
        self.decoder_a = None
        self.decoder_b = None
        self.stage_heads = None
        self.sub_heads = None
        return self

    def inference_state_dict(self) -> dict[str, Tensor]:
        """The state dict of the pruned network (training-only entries left out)."""
        drop = ("decoder_a.", "decoder_b.", "stage_heads.", "sub_heads.")
        return {k: v for k, v in self.state_dict().items() if not k.startswith(drop)}


class RRLNetInference(nn.Module):
    """The pruned RRL-Net with a sigmoid output: the module that is exported to ONNX.

    Args:
        net: A trained :class:`RRLNet` (it is pruned in place) or None for a fresh pruned one.
    """

    def __init__(self, net: RRLNet | None = None) -> None:
        super().__init__()
        self.net = (net if net is not None else RRLNet()).prune_for_inference()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Match probabilities (N,) in [0, 1] for patches ``a``, ``b`` (N, 1, 64, 64) in [0, 1]."""
        return torch.sigmoid(self.net(a, b).main)


def export_onnx(net: RRLNet, path: str | Path, opset: int = 17) -> Path:
    """Export the pruned network with a sigmoid output to ONNX (dynamic batch size).

    The graph has inputs ``a`` and ``b``, float32 (N, 1, 64, 64), and output ``score`` (N,),
    the match probability. ``net`` is copied, so the original stays unpruned.

    Args:
        net: A trained :class:`RRLNet` (pruned or not).
        path: Output ``.onnx`` file.
        opset: ONNX opset version.

    Returns:
        The path written.
    """
    import copy
    import warnings

    module = RRLNetInference(copy.deepcopy(net).cpu()).eval()
    x = torch.rand(2, 1, PATCH_SIZE, PATCH_SIZE)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter needs neither the onnx nor the onnxscript package.
        torch.onnx.export(
            module,
            (x, x),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=["a", "b"],
            output_names=["score"],
            dynamic_axes={"a": {0: "n"}, "b": {0: "n"}, "score": {0: "n"}},
        )
    return out


def count_parameters(module: nn.Module, *, keras: bool = False) -> int:
    """Number of parameters of ``module``.

    Args:
        module: The network.
        keras: Also count the BatchNorm running means and variances, as Keras' ``count_params``
            does (it lists them as non-trainable parameters); the paper's numbers are Keras counts.

    Returns:
        The count.
    """
    n = sum(p.numel() for p in module.parameters())
    if keras:
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                n += m.running_mean.numel() + m.running_var.numel()
    return int(n)
