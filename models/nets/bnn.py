"""Bridge Neural Network (BNN) for SAR-optical patch matching (Xu, Xiang & Huang, AAAI 2019).

As used by MoCo-BNN (Qian et al., Remote Sens. 2022, 14(12):2749): two towers *without shared
weights*, ``f`` for SAR and ``g`` for optical patches, each a backbone (VGG11, ResNet50 or
Darknet53) followed by a linear projection into an ``n = 50``-dimensional common space. The
distance of a pair is ``h(x_s, x_o) = ||f(x_s) - g(x_o)||_2 / sqrt(n)``; training regresses it to
0 for matching pairs and to 1 for non-matching ones (:mod:`sarcoreg.training.bnn_losses`).

Adaptations (no public code exists; these are our choices):

* Inputs are one-channel patches in [0, 1], ``(N, 1, P, P)`` (``P = 64`` by default; any ``P`` that
  survives five stride-2 stages works because each backbone ends in global average pooling).
  The paper normalises images "w.r.t. mean and variance"; here every patch is standardised on
  its own (zero mean, unit variance) inside the network, so the ONNX graph needs no statistics.
* The backbones are built here without downloaded weights: VGG11 with BatchNorm (the classifier
  replaced by global average pooling), torchvision's ResNet50 with a one-channel stem and no fc,
  and Darknet53 (YOLOv3's backbone, LeakyReLU 0.1) without its classifier.
* Contract score (:class:`BNN.forward`): ``score = 1 / (1 + h)`` in (0, 1], higher = more likely
  the same place (1 for identical embeddings, 0.5 at the negatives' target ``h = 1``). It is
  strictly decreasing in ``h`` and never saturates, so dense similarity maps keep their shape
  far from the peak; a decision threshold ``t`` on ``h`` is ``1 / (1 + t)`` on the score
  (:func:`score_of_distance`). ``h`` itself is :meth:`BNN.distance`.
* ``forward(a, b)`` broadcasts over the batch: ``a`` ``(1, 1, P, P)`` against ``b`` ``(K, 1, P, P)``
  gives ``K`` scores; dense search uses this to embed the template once per call.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

__all__ = [
    "BACKBONES",
    "BNN",
    "DEFAULT_WIDTH",
    "EMBED_DIM",
    "PATCH_SIZE",
    "Tower",
    "count_parameters",
    "export_onnx",
    "make_backbone",
    "module_from_state",
    "score_of_distance",
]

#: Dimension ``n`` of the common space (the paper's 50).
EMBED_DIM = 50
#: Default patch side.
PATCH_SIZE = 64
#: Selectable backbones and their ids (stored in the weights as a buffer).
BACKBONES = ("vgg11", "resnet50", "darknet53")
#: First-stage width of the published backbones (VGG11's 64 channels).
DEFAULT_WIDTH = 64


def _conv_bn(cin: int, cout: int, k: int, stride: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), act)


class VGG11Backbone(nn.Module):
    """VGG11 (configuration "A") with BatchNorm, one input channel, global average pooling.

    Maps ``(N, 1, P, P)`` to ``(N, 8 w)``: ``(N, 512)`` for VGG11's first width ``w = 64``.

    Args:
        width: Channels of the first stage (64 in VGG11); the stages have ``w, 2w, 4w, 4w, 8w x 4``.
            Small widths make CPU-sized models (the shipped CPU-trained model uses 8).
    """

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = int(width)
        self.out_features = 8 * w
        cfg: list[int | str] = [w, "M", 2 * w, "M", 4 * w, 4 * w, "M", 8 * w, 8 * w, "M", 8 * w, 8 * w, "M"]
        layers: list[nn.Module] = []
        cin = 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(_conv_bn(cin, int(v), 3, 1, nn.ReLU(inplace=True)))
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, P, P)`` -> ``(N, 512)``."""
        return torch.flatten(self.pool(self.features(x)), 1)


class _DarkResidual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _conv_bn(c, c // 2, 1, 1, nn.LeakyReLU(0.1, inplace=True)),
            _conv_bn(c // 2, c, 3, 1, nn.LeakyReLU(0.1, inplace=True)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class Darknet53Backbone(nn.Module):
    """Darknet53 (Redmon & Farhadi 2018): 52 conv layers, residual stages of 1, 2, 8, 8, 4 blocks.

    Maps ``(N, 1, P, P)`` to ``(N, 1024)`` (global average pooling, no classifier).
    """

    out_features = 1024

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(1, 32, 3, 1, nn.LeakyReLU(0.1, inplace=True))]
        cin = 32
        for cout, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
            layers.append(_conv_bn(cin, cout, 3, 2, nn.LeakyReLU(0.1, inplace=True)))
            layers += [_DarkResidual(cout) for _ in range(blocks)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, P, P)`` -> ``(N, 1024)``."""
        return torch.flatten(self.pool(self.features(x)), 1)


class ResNet50Backbone(nn.Module):
    """torchvision's ResNet50 (random init) with a one-channel 7 x 7 stem and no fc.

    Maps ``(N, 1, P, P)`` to ``(N, 2048)``.
    """

    out_features = 2048

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, P, P)`` -> ``(N, 2048)``."""
        return cast(Tensor, self.net(x))


def make_backbone(name: str, width: int = DEFAULT_WIDTH) -> nn.Module:
    """A randomly initialised backbone by name.

    Args:
        name: One of :data:`BACKBONES`.
        width: First-stage width; only VGG11 can be narrowed (ResNet50 and Darknet53 take 64).

    Returns:
        A module ``(N, 1, P, P) -> (N, F)`` with an ``out_features`` attribute ``F``.

    Raises:
        ValueError: Unknown name, or a width other than 64 for ResNet50 / Darknet53.
    """
    if name == "vgg11":
        return VGG11Backbone(width)
    if width != DEFAULT_WIDTH and name in BACKBONES:
        raise ValueError(f"backbone '{name}' has its published width only (64); a narrower width needs vgg11")
    if name == "resnet50":
        return ResNet50Backbone()
    if name == "darknet53":
        return Darknet53Backbone()
    raise ValueError(f"unknown backbone '{name}'; choose one of {', '.join(BACKBONES)}")


def standardise(x: Tensor) -> Tensor:
    """Per-patch zero mean / unit variance of ``(N, 1, P, P)`` (constant patches become 0)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return (x - mean) / (std + 1e-3)


class Tower(nn.Module):
    """One BNN tower: standardisation, backbone, linear projection to the common space.

    Args:
        backbone: One of :data:`BACKBONES`.
        dim: Dimension ``n`` of the common space.
        width: First-stage width of the backbone (see :func:`make_backbone`).
    """

    def __init__(self, backbone: str = "vgg11", dim: int = EMBED_DIM, width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.backbone = make_backbone(backbone, width)
        self.head = nn.Linear(int(getattr(self.backbone, "out_features")), dim)  # noqa: B009

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, P, P)`` in [0, 1] -> embeddings ``(N, n)``."""
        return cast(Tensor, self.head(self.backbone(standardise(x))))


class BNN(nn.Module):
    """The two-tower Bridge Neural Network.

    Args:
        backbone: One of :data:`BACKBONES` (both towers use it; weights are not shared).
        dim: Dimension ``n`` of the common space (50 in the paper).
        patch_size: Patch side ``P`` the model is trained for (kept in the weights).
        width: First-stage width of the backbones (kept in the weights; 64 = the published VGG11).
    """

    bnn_config: Tensor

    def __init__(self, backbone: str = "vgg11", dim: int = EMBED_DIM, patch_size: int = PATCH_SIZE,
                 width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONES)}")
        self.backbone_name = backbone
        self.dim = int(dim)
        self.width = int(width)
        self.sar_tower = Tower(backbone, dim, width)
        self.opt_tower = Tower(backbone, dim, width)
        self.register_buffer("bnn_config", torch.tensor([BACKBONES.index(backbone), dim, patch_size, width]))

    @property
    def patch_size(self) -> int:
        """Patch side ``P`` stored in the weights."""
        return int(self.bnn_config[2])

    def embed_sar(self, b: Tensor) -> Tensor:
        """``f``: SAR patches ``(N, 1, P, P)`` in [0, 1] -> ``(N, n)``."""
        return cast(Tensor, self.sar_tower(b))

    def embed_optical(self, a: Tensor) -> Tensor:
        """``g``: optical patches ``(N, 1, P, P)`` in [0, 1] -> ``(N, n)``."""
        return cast(Tensor, self.opt_tower(a))

    def distance_of_embeddings(self, za: Tensor, zb: Tensor) -> Tensor:
        """``h = ||za - zb||_2 / sqrt(n)`` of ``(N, n)`` (or broadcastable ``(1, n)``) -> ``(N,)``."""
        return torch.sqrt(((za - zb) ** 2).sum(dim=1) / self.dim + 1e-12)

    def distance(self, a: Tensor, b: Tensor) -> Tensor:
        """``h(b, a)`` of optical ``a`` and SAR ``b`` ``(N, 1, P, P)`` -> ``(N,)``; 0 = identical."""
        return self.distance_of_embeddings(self.embed_optical(a), self.embed_sar(b))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Patch-model score ``1 / (1 + h)`` ``(N,)`` of optical ``a`` and SAR ``b``.

        Args:
            a: Reference / optical patches ``(Na, 1, P, P)`` in [0, 1].
            b: Target / SAR patches ``(Nb, 1, P, P)``; ``Na == Nb``, or one of them is 1.
        """
        return 1.0 / (1.0 + self.distance(a, b))


def score_of_distance(h: Any) -> Any:
    """The contract score ``1 / (1 + h)`` of distances (float, numpy array or tensor)."""
    return 1.0 / (1.0 + h)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def module_from_state(state: dict[str, Any]) -> tuple[BNN, int]:
    """Rebuild a :class:`BNN` from its state dict (the buffer ``bnn_config`` says the backbone).

    Returns:
        ``(network in eval mode, patch_size)``.

    Raises:
        ValueError: Not a BNN state dict.
    """
    if "bnn_config" not in state:
        raise ValueError("not a BNN state dict (no 'bnn_config' entry)")
    conf = [int(v) for v in torch.as_tensor(state["bnn_config"]).tolist()]
    if len(conf) == 3:  # weights written before the width was stored: the published width
        conf.append(DEFAULT_WIDTH)
        state = {**state, "bnn_config": torch.tensor(conf)}
    code, dim, size, width = conf
    net = BNN(BACKBONES[code], dim=dim, patch_size=size, width=width)
    net.load_state_dict(state)
    return net.eval(), size


def export_onnx(net: BNN, path: str | Path, opset: int = 17) -> Path:
    """Write the inference graph: inputs ``a``, ``b`` ``(N, 1, P, P)`` float32 -> ``score`` ``(N,)``.

    The two batch dimensions are separate dynamic axes (``na``, ``nb``) so one template ``a``
    ``(1, 1, P, P)`` can be scored against ``K`` patches ``b`` (broadcast), as dense search does.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = net.training
    net.eval()
    p = net.patch_size
    x = torch.rand(2, 1, p, p)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (x, x.clone()),
            str(out),
            input_names=["a", "b"],
            output_names=["score"],
            dynamic_axes={"a": {0: "na"}, "b": {0: "nb"}, "score": {0: "n"}},
            opset_version=opset,
            dynamo=False,
        )
    net.train(was_training)
    return out

