"""The torch module of a shared-modality model: SAR and optical U-Nets (and the v1 inverses).

Kept apart from :mod:`sarcoreg.models.shared_modality` (the runtime wrapper) so that running a
shipped model through ONNX Runtime never imports torch; ``shared_modality.SharedModalityNets``
and the old path ``sarcoreg.models.shared_nets`` resolve to this class.
"""

from __future__ import annotations

import torch
from torch import nn

from ..shared_config import SharedConfig
from .unet import build_unet

__all__ = ["SharedModalityNets"]


class SharedModalityNets(nn.Module):
    """The SAR and optical transform networks (and, for criterion v1, their inverses).

    Attributes:
        config: The :class:`~sarcoreg.models.shared_config.SharedConfig`.
        sar: ``(B, C_X, H, W)`` -> ``(B, K, H, W)`` in (0, 1).
        optical: ``(B, C_Y, H, W)`` -> ``(B, K, H, W)`` in (0, 1).
        sar_inverse: ``(B, K, H, W)`` -> ``(B, C_X, H, W)``, no output activation (v1 only, else ``None``).
        optical_inverse: ``(B, K, H, W)`` -> ``(B, C_Y, H, W)``, no output activation (v1 only, else ``None``).
    """

    def __init__(self, config: SharedConfig | None = None) -> None:
        super().__init__()
        self.config = config or SharedConfig()
        cx, cy, k = len(self.config.sar_bands), len(self.config.optical_bands), self.config.channels
        self.sar = build_unet(cx, k, sigmoid=True)
        self.optical = build_unet(cy, k, sigmoid=True)
        v1 = self.config.criterion == "v1"
        self.sar_inverse: nn.Module | None = build_unet(k, cx, sigmoid=False) if v1 else None
        self.optical_inverse: nn.Module | None = build_unet(k, cy, sigmoid=False) if v1 else None

    def forward(self, sar: torch.Tensor, optical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shared images of a SAR batch ``(B, C_X, H, W)`` and an optical batch ``(B, C_Y, H, W)``.

        Returns:
            ``(s, o)``, both ``(B, K, H, W)`` in (0, 1).
        """
        return self.sar(sar), self.optical(optical)
