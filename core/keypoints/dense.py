"""RoMa and DeDoDe: matchers whose weights no wheel ships; they run only with user-given files.

Nothing is downloaded. ``weights`` names a file or a folder:

- ``dedode``: a folder with ``dedode_detector_L.pth`` and ``dedode_descriptor_B.pth`` (or the two
  files as ``weights=detector`` and ``descriptor_weights=descriptor``). ``descriptor="G"`` (the
  reference code's choice) also needs ``dinov2_vitl14_pretrain.pth`` (DINOv2 ViT-L/14, about
  1.2 GB) in the folder or as ``dinov2_weights=``; kornia builds DINOv2 only through its download
  helper, so the file is handed to it through a private, temporary torch hub folder that holds a
  link to the file under the name kornia looks for.
- ``roma``: needs ``pip install romatch`` (plus its requirements) and a folder with
  ``roma_outdoor.pth`` and ``dinov2_vitl14_pretrain.pth`` (or ``weights=roma_outdoor.pth`` and
  ``dinov2_weights=...``). It runs as the reference code's ``roma_outdoor`` (coarse and upsample
  resolution 448) and samples ``max_keypoints`` matches from the dense warp.

Neither has been run here (no weights available); the missing-file errors are tested.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import DEFAULT_MAX_SIZE, KeypointMatcher, KeypointMatches, as_rgb
from .learned import mutual_nearest
from .weights import WeightsNotFoundError, load_torch_file

__all__ = ["DeDoDeMatcher", "RomaMatcher"]

DINOV2_FILE = "dinov2_vitl14_pretrain.pth"


def _pick(weights: str | None, explicit: str | None, file_name: str, matcher: str, what: str, primary: bool) -> Path:
    """Locate ``file_name``.

    ``explicit`` wins; else ``weights`` is a folder holding ``file_name``, or a file: the file itself
    when ``primary``, otherwise ``file_name`` next to it.

    Raises:
        WeightsNotFoundError: No weights given, or the file is missing (the message names it).
    """
    if explicit:
        p = Path(explicit).expanduser()
    elif not weights:
        raise WeightsNotFoundError(
            f"'{matcher}' needs weight files that no PyPI wheel ships and that cannot be downloaded here: "
            f"give weights=<{file_name} or a folder holding it> ({what})"
        )
    else:
        base = Path(weights).expanduser()
        if base.is_dir():
            p = base / file_name
        elif primary:
            p = base
        else:
            p = base.parent / file_name
    if not p.is_file():
        raise WeightsNotFoundError(f"'{matcher}': {what} not found: {p} (give the file {file_name})")
    return p


class DeDoDeMatcher(KeypointMatcher):
    """DeDoDe (kornia: detector L, descriptor B or G) + mutual nearest neighbour, weights from files.

    As the reference code: ImageNet normalisation, keypoints within 5 px of the border dropped,
    mutual nearest neighbours (on the normalised descriptors; kornia's ``match_mnn`` uses L2
    distance, which gives the same pairs for unit vectors).

    Args:
        max_keypoints: Keypoints sampled per image.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        weights: Folder with the files (see the module doc) or the detector file.
        descriptor: "B" (default, no DINOv2 needed) or "G".
        descriptor_weights: The descriptor file, when not in the folder.
        dinov2_weights: The DINOv2 ViT-L/14 file for descriptor "G", when not in the folder.
    """

    name = "dedode"

    def __init__(
        self,
        max_keypoints: int = 4096,
        device: str = "auto",
        max_size: int | None = DEFAULT_MAX_SIZE,
        weights: str | None = None,
        descriptor: str = "B",
        descriptor_weights: str | None = None,
        dinov2_weights: str | None = None,
    ):
        if descriptor not in ("B", "G"):
            raise ValueError(f"descriptor must be 'B' or 'G', got {descriptor!r}")
        det = _pick(weights, None, "dedode_detector_L.pth", "dedode", "the DeDoDe detector", primary=True)
        desc_name = f"dedode_descriptor_{descriptor}.pth"
        desc = _pick(str(det), descriptor_weights, desc_name, "dedode", "the DeDoDe descriptor", primary=False)
        dino = None
        if descriptor == "G":
            dino = _pick(str(det), dinov2_weights, DINOV2_FILE, "dedode", "DINOv2 ViT-L/14", primary=False)
        super().__init__(max_keypoints, device, max_size)
        import torch
        from kornia.feature import DeDoDe

        if dino is None:
            model = DeDoDe(detector_model="L", descriptor_model="B")
        else:
            with tempfile.TemporaryDirectory(prefix="sarcoreg-hub-") as hub:
                os.makedirs(Path(hub) / "checkpoints")
                os.symlink(dino.resolve(), Path(hub) / "checkpoints" / DINOV2_FILE)
                old = torch.hub.get_dir()
                torch.hub.set_dir(hub)
                try:
                    model = DeDoDe(detector_model="L", descriptor_model="G")
                finally:
                    torch.hub.set_dir(old)
        model.detector.load_state_dict(load_torch_file(det))
        model.descriptor.load_state_dict(load_torch_file(desc), strict=dino is None)
        self.model = model.eval().to(self.device)

    def _features(self, img: np.ndarray) -> tuple[Any, Any]:
        import torch

        x = torch.from_numpy(as_rgb(img)).permute(2, 0, 1)[None].to(self.device)
        kp, _scores, desc = self.model(x, n=self.max_keypoints, apply_imagenet_normalization=True)
        # kornia's DeDoDe puts the centre of pixel 0 at 0.5: shift to the module's convention
        kp, desc = kp[0].float() - 0.5, desc[0].float()
        h, w = img.shape[:2]
        inside = (kp[:, 0] >= 5) & (kp[:, 0] <= w - 6) & (kp[:, 1] >= 5) & (kp[:, 1] <= h - 6)
        return kp[inside], torch.nn.functional.normalize(desc[inside], dim=-1)

    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        import torch

        with torch.inference_mode():
            ka, da = self._features(a)
            kb, db = self._features(b)
            ia, ib, s = mutual_nearest(da, db)
            return KeypointMatches(
                pts_a=ka[ia].cpu().numpy(),
                pts_b=kb[ib].cpu().numpy(),
                scores=s.cpu().numpy(),
                n_keypoints_a=len(ka),
                n_keypoints_b=len(kb),
            )


class RomaMatcher(KeypointMatcher):
    """RoMa outdoor (``romatch``), dense warp sampled to ``max_keypoints`` matches, weights from files.

    Args:
        max_keypoints: Matches sampled from the warp.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        weights: Folder with ``roma_outdoor.pth`` and ``dinov2_vitl14_pretrain.pth``, or the RoMa file.
        dinov2_weights: The DINOv2 file, when not next to the RoMa file.
        resolution: Coarse and upsample resolution (448 as the reference code).

    Raises:
        ModuleNotFoundError: ``romatch`` is not installed (the message says what to install).
        WeightsNotFoundError: A file is missing (the message names it).
    """

    name = "roma"

    def __init__(
        self,
        max_keypoints: int = 4096,
        device: str = "auto",
        max_size: int | None = DEFAULT_MAX_SIZE,
        weights: str | None = None,
        dinov2_weights: str | None = None,
        resolution: int = 448,
    ):
        roma_file = _pick(weights, None, "roma_outdoor.pth", "roma", "the RoMa outdoor weights", primary=True)
        dino = _pick(str(roma_file), dinov2_weights, DINOV2_FILE, "roma", "DINOv2 ViT-L/14", primary=False)
        try:
            import romatch
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "the 'roma' matcher needs the romatch package: pip install romatch "
                "(it needs torch>=2.5.1, timm, einops, poselib; the weights still come from your files)"
            ) from exc
        super().__init__(max_keypoints, device, max_size)
        import torch

        self.model = romatch.roma_outdoor(
            device=torch.device(self.device),
            weights=load_torch_file(roma_file),
            dinov2_weights=load_torch_file(dino),
            coarse_res=resolution,
            upsample_res=resolution,
            use_custom_corr=False,
        )

    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        import torch
        from PIL import Image

        ha, wa = a.shape[:2]
        hb, wb = b.shape[:2]
        ia = Image.fromarray((as_rgb(a) * 255).round().astype(np.uint8))
        ib = Image.fromarray((as_rgb(b) * 255).round().astype(np.uint8))
        with torch.inference_mode():
            warp, certainty = self.model.match(ia, ib, device=torch.device(self.device))
            matches, cert = self.model.sample(warp, certainty, num=self.max_keypoints)
            pa, pb = self.model.to_pixel_coordinates(matches, ha, wa, hb, wb)
        return KeypointMatches(
            pts_a=np.asarray(pa.cpu().numpy(), np.float64) - 0.5,  # RoMa pixels have centres at +0.5
            pts_b=np.asarray(pb.cpu().numpy(), np.float64) - 0.5,
            scores=np.asarray(cert.cpu().numpy(), np.float64),
            n_keypoints_a=len(matches),
            n_keypoints_b=len(matches),
        )
