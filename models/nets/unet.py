"""The U-Net every shared-modality network is built from (EfficientNet-B0 encoder, scSE decoder).

Importing this module needs neither torch nor segmentation-models-pytorch: :func:`build_unet`
imports them when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ENCODER", "build_unet"]

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
