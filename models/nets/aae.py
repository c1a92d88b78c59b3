"""Semi-supervised SAR-optical matching with dual adversarial autoencoders (Hughes & Schmitt 2019).

Two autoencoders of identical architecture and *no* shared weights, one for SAR and one for
optical patches:

* encoder: the VGG11 convolution stack (3 x 3 convolutions, each followed by BatchNorm and
  LeakyReLU 0.2; max-pooling after stages 1, 2, 3, 4, 5: widths ``w, 2w, 4w, 4w, 8w, 8w, 8w, 8w``
  with ``w = 64`` in VGG11), then one fully connected layer from the ``(8w, P/32, P/32)`` feature
  map to the latent code ``z`` of ``latent_dim`` (256: the paper's ``256 x 128 x 128`` descriptor
  volume);
* decoder: one fully connected layer back to ``(8w, P/32, P/32)``, five 3 x 3 transposed
  convolutions of stride 2 with ReLU (``8w -> 8w -> 4w -> 2w -> w -> w``) and a final 3 x 3
  convolution to one channel.

The descriptor of a patch is its L2-normalised latent code, so two patches are compared by the
cosine similarity of their descriptors. Inputs are gray patches in [0, 1]; each encoder first
standardises them with the paper's training-set statistics (SAR ``N(0.5, 0.2)``, optical
``N(0.45, 0.15)``), and each decoder reconstructs the standardised patch.

Choices the paper leaves open (documented, configurable): the widths (the figure with them is
not in the text; VGG11's are used), the fully connected bottleneck (the critic needs a vector
code), and no ReLU after the decoder's last convolution (the paper has one, but its targets are
standardised to zero mean and take negative values).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..card import encoder_files as encoder_paths

__all__ = [
    "AAEConfig",
    "AAEInference",
    "DualAAE",
    "Decoder",
    "DescriptorHead",
    "Encoder",
    "OPTICAL_STATS",
    "SAR_STATS",
    "aae_from_state_dict",
    "encoder_paths",
    "export_encoders_onnx",
    "export_onnx",
]

#: Standardisation of [0, 1] patches (mean, std) used in the paper (training-set statistics).
SAR_STATS = (0.5, 0.2)
OPTICAL_STATS = (0.45, 0.15)
#: VGG11 convolution widths in units of the first width, ``"M"`` = 2 x 2 max-pooling.
_VGG11 = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


@dataclass(frozen=True)
class AAEConfig:
    """Architecture of the dual autoencoder.

    Attributes:
        patch_size: Side ``P`` of the square input patches; a multiple of 32.
        width: Channels of the first VGG11 stage (64 in VGG11; small values for tests).
        latent_dim: Length ``D`` of the latent code / descriptor.
    """

    patch_size: int = 128
    width: int = 64
    latent_dim: int = 256

    def __post_init__(self) -> None:
        if self.patch_size < 32 or self.patch_size % 32:
            raise ValueError(f"patch_size must be a positive multiple of 32 (five 2x poolings), got {self.patch_size}")
        if self.width < 1 or self.latent_dim < 1:
            raise ValueError(f"width and latent_dim must be >= 1, got {self.width}, {self.latent_dim}")

    @property
    def bottom(self) -> int:
        """Side of the last feature map, ``P / 32``."""
        return self.patch_size // 32

    @property
    def top_channels(self) -> int:
        """Channels of the last feature map, ``8 w``."""
        return 8 * self.width


class Encoder(nn.Module):
    """VGG11-based encoder: ``(N, 1, P, P)`` in [0, 1] -> latent codes ``(N, D)`` (not normalised).

    Args:
        config: The architecture.
        stats: ``(mean, std)`` that standardise the [0, 1] input.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: AAEConfig, stats: tuple[float, float]) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(float(stats[0])))
        self.register_buffer("std", torch.tensor(float(stats[1])))
        layers: list[nn.Module] = []
        c_in = 1
        for item in _VGG11:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c_out = int(item) * config.width
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(config.top_channels * config.bottom**2, config.latent_dim)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` of ``(N, 1, P, P)`` patches in [0, 1]."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes ``(N, D)`` of patches ``(N, 1, P, P)`` in [0, 1]."""
        f = self.features(self.standardise(x))
        return self.fc(torch.flatten(f, 1))


class Decoder(nn.Module):
    """Transposed-convolution decoder: latent codes ``(N, D)`` -> standardised patches ``(N, 1, P, P)``."""

    def __init__(self, config: AAEConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.fc = nn.Linear(config.latent_dim, config.top_channels * config.bottom**2)
        widths = [8 * w, 8 * w, 4 * w, 2 * w, w, w]
        ups: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            ups += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), nn.ReLU()]
        self.up = nn.Sequential(*ups)
        self.out = nn.Conv2d(w, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``(N, 1, P, P)`` (standardised scale) of latent codes ``(N, D)``."""
        c = self.config
        f = F.relu(self.fc(z)).view(-1, c.top_channels, c.bottom, c.bottom)
        return self.out(self.up(f))


class DualAAE(nn.Module):
    """The two autoencoders (SAR and optical), trained jointly; the critic lives in training.

    Args:
        config: Architecture shared by both branches (weights are not shared).
    """

    def __init__(self, config: AAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or AAEConfig()
        self.enc_sar = Encoder(self.config, SAR_STATS)
        self.enc_opt = Encoder(self.config, OPTICAL_STATS)
        self.dec_sar = Decoder(self.config)
        self.dec_opt = Decoder(self.config)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> dict[str, torch.Tensor]:
        """Codes and reconstructions of a batch.

        Args:
            optical: ``(N, 1, P, P)`` optical patches in [0, 1].
            sar: ``(M, 1, P, P)`` SAR patches in [0, 1] (``M`` may differ from ``N``).

        Returns:
            ``z_opt`` ``(N, D)``, ``z_sar`` ``(M, D)`` (raw codes), ``rec_opt`` / ``rec_sar``
            reconstructions and ``target_opt`` / ``target_sar`` the standardised inputs they
            should equal.
        """
        z_opt, z_sar = self.enc_opt(optical), self.enc_sar(sar)
        return {
            "z_opt": z_opt,
            "z_sar": z_sar,
            "rec_opt": self.dec_opt(z_opt),
            "rec_sar": self.dec_sar(z_sar),
            "target_opt": self.enc_opt.standardise(optical),
            "target_sar": self.enc_sar.standardise(sar),
        }

    def config_dict(self) -> dict[str, int]:
        """The architecture as a plain dict (stored in checkpoints and cards)."""
        return asdict(self.config)


class DescriptorHead(nn.Module):
    """One encoder with L2 normalisation: ``(N, 1, P, P)`` in [0, 1] -> unit descriptors ``(N, D)``."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length descriptors ``(N, D)``."""
        return F.normalize(self.encoder(x), dim=1, eps=1e-8)


class AAEInference(nn.Module):
    """The patch-model contract: ``forward(a, b)`` = cosine similarity of the two descriptors.

    ``a`` is the optical (reference) patch, ``b`` the SAR (target) patch, both ``(N, 1, P, P)``
    in [0, 1]; the output ``(N,)`` lies in [-1, 1]. :meth:`embed_optical` / :meth:`embed_sar`
    give the descriptors alone, for dense correspondence maps.

    Args:
        net: A trained :class:`DualAAE` (the decoders are not used; the module is put in eval mode).
    """

    def __init__(self, net: DualAAE) -> None:
        super().__init__()
        self.optical = DescriptorHead(net.enc_opt)
        self.sar = DescriptorHead(net.enc_sar)
        self.patch_size = net.config.patch_size
        self.eval()

    def embed_optical(self, a: torch.Tensor) -> torch.Tensor:
        """Unit descriptors ``(N, D)`` of optical patches ``(N, 1, P, P)``."""
        return self.optical(a)

    def embed_sar(self, b: torch.Tensor) -> torch.Tensor:
        """Unit descriptors ``(N, D)`` of SAR patches ``(N, 1, P, P)``."""
        return self.sar(b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity ``(N,)`` of optical ``a`` and SAR ``b`` patches."""
        return (self.optical(a) * self.sar(b)).sum(dim=1)


def aae_from_state_dict(state: dict[str, Any]) -> DualAAE:
    """Rebuild a :class:`DualAAE` from a state dict (architecture inferred from weight shapes).

    Args:
        state: ``DualAAE.state_dict()``, or only its encoder entries (``enc_opt.*`` / ``enc_sar.*``,
            as in an inference state dict); missing decoder weights stay random.

    Raises:
        ValueError: The dict holds no AAE encoder weights.
    """
    key = "enc_opt.features.0.weight"
    if key not in state or "enc_opt.fc.weight" not in state:
        raise ValueError("not an AAE state dict: no 'enc_opt.features.0.weight' / 'enc_opt.fc.weight'")
    width = int(state[key].shape[0])
    latent, flat = (int(v) for v in state["enc_opt.fc.weight"].shape)
    bottom = int(round((flat / (8 * width)) ** 0.5))
    net = DualAAE(AAEConfig(patch_size=32 * bottom, width=width, latent_dim=latent))
    missing, unexpected = net.load_state_dict(state, strict=False)
    bad = [k for k in missing if k.startswith("enc_")] + list(unexpected)
    if bad:
        raise ValueError(f"AAE state dict does not fit the inferred architecture: {bad[:5]}")
    return net


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], output: str,
            opset: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "n"} for name in [*inputs, output]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=[output], dynamic_axes=axes)
    return path


def export_onnx(net: DualAAE, path: str | Path, opset: int = 17) -> Path:
    """Export the pair model (inputs ``a``, ``b`` ``(N, 1, P, P)`` -> ``score`` ``(N,)``) to ONNX.

    Args:
        net: The network (copied to CPU, eval mode; the original is untouched).
        path: Output ``.onnx`` file.
        opset: ONNX opset.

    Returns:
        The path written.
    """
    module = AAEInference(copy.deepcopy(net).cpu()).eval()
    p = net.config.patch_size
    x = torch.rand(2, 1, p, p)
    return _export(module, (x, x), Path(path), ["a", "b"], "score", opset)


def export_encoders_onnx(net: DualAAE, pair_model: str | Path, opset: int = 17) -> tuple[Path, Path]:
    """Export the two descriptor heads (input ``x`` ``(N, 1, P, P)`` -> ``descriptor`` ``(N, D)``, unit length).

    Args:
        net: The network.
        pair_model: Path of the pair model; the files go next to it (:func:`encoder_paths`).
        opset: ONNX opset.

    Returns:
        ``(optical_path, sar_path)``.
    """
    inf = AAEInference(copy.deepcopy(net).cpu()).eval()
    p = net.config.patch_size
    x = torch.rand(2, 1, p, p)
    opt_path, sar_path = encoder_paths(pair_model)
    _export(inf.optical, (x,), opt_path, ["x"], "descriptor", opset)
    _export(inf.sar, (x,), sar_path, ["x"], "descriptor", opset)
    return opt_path, sar_path
