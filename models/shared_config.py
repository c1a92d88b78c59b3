"""What a shared-modality model is: its configuration (and, re-exported, the U-Net it is built from).

Kept apart from :mod:`.shared_modality` (inference, ONNX, checkpoints) and
:mod:`.nets.shared` (the torch module of both networks) so that both can use it without importing
each other. The U-Net itself is :func:`sarcoreg.models.nets.unet.build_unet`. Importing this
module needs neither torch nor segmentation-models-pytorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .nets.unet import ENCODER, build_unet

__all__ = ["ENCODER", "SharedConfig", "build_unet"]


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
