"""What a shared-modality model is: its configuration and the U-Net it is built from.

Kept apart from :mod:`.shared_modality` (inference, ONNX, checkpoints) and :mod:`.shared_nets`
(the torch module of both networks) so that both can use it without importing each other.
Importing this module needs neither torch nor segmentation-models-pytorch (:func:`build_unet`
imports them when called).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ENCODER", "SharedConfig", "build_unet"]

#: Encoder of every U-Net (random initialisation).
ENCODER = "efficientnet-b0"


def build_unet(in_channels: int, out_channels: int = 3, sigmoid: bool = True) -> nn.Module:
    """One transform network: U-Net, EfficientNet-B0 encoder (random init), 5 levels, scSE decoder.

    Args:
        in_channels: Input bands ``C``.
        out_channels: Output channels (``K`` for a forward network, ``C`` for an inverse one).
        sigmoid: Put a sigmoid at the end (forward networks: output in (0, 1)); the inverse
            networks of criterion v1 have none.

    Returns:
        A module mapping ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``; ``H`` and
        ``W`` must be multiples of 32. With ``sigmoid`` it is ``nn.Sequential(unet, Sigmoid)``
        (state-dict keys ``0.*``), without it the bare ``smp.Unet``.
    """
    import segmentation_models_pytorch as smp
    from torch import nn

    if in_channels < 1 or out_channels < 1:
        raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
    unet = smp.Unet(
        encoder_name=ENCODER,
        encoder_weights=None,
        encoder_depth=5,
        decoder_attention_type="scse",
        in_channels=in_channels,
        classes=out_channels,
    )
    return nn.Sequential(unet, nn.Sigmoid()) if sigmoid else unet


@dataclass(frozen=True)
class SharedConfig:
    """What a shared-modality model takes and how it was trained.

    Attributes:
        sar_bands: Names of the SAR input bands, in order (dB), e.g. ``("VV",)``.
        optical_bands: Names of the optical input bands, in order, e.g. ``("R", "G", "B")`` (Sentinel-2
            B04, B03, B02).
        channels: ``K``, the channels of the shared images.
        criterion: ``"v1"`` (inverse networks, reconstruction term) or ``"v2"`` (gray-image term).
        rgb: Indices into ``optical_bands`` of the bands whose mean is the optical gray of
            criterion v2 (the RGB / highest-resolution bands); empty = all bands.
    """

    sar_bands: tuple[str, ...] = ("VV",)
    optical_bands: tuple[str, ...] = ("R", "G", "B")
    channels: int = 3
    criterion: str = "v2"
    rgb: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.criterion not in ("v1", "v2"):
            raise ValueError(f"criterion must be 'v1' or 'v2', got {self.criterion!r}")
        if not self.sar_bands or not self.optical_bands or self.channels < 1:
            raise ValueError("need at least one SAR band, one optical band and one channel")
        if any(not 0 <= i < len(self.optical_bands) for i in self.rgb):
            raise ValueError(f"rgb indices {self.rgb} out of range for {len(self.optical_bands)} optical bands")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SharedConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        return cls(
            sar_bands=tuple(data.get("sar_bands", ("VV",))),
            optical_bands=tuple(data.get("optical_bands", ("R", "G", "B"))),
            channels=int(data.get("channels", 3)),
            criterion=str(data.get("criterion", "v2")),
            rgb=tuple(int(i) for i in data.get("rgb", ())),
        )
