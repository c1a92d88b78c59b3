"""The model registry: loading a model named by its card (:mod:`.card`) or given as a file.

The cards themselves (what a model is, where its files lie, the model folders of
``SARCOREG_MODEL_PATH``) are :mod:`sarcoreg.models.card`; its names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .card import (
    CARDS_DIR,
    MODEL_PATH_ENV,
    MODELS_DIR,
    ModelCard,
    find_card,
    list_cards,
    list_models,
    model_folders,
    read_card,
    save_card,
    scan_cards,
    sha256_of,
)

if TYPE_CHECKING:
    from .patch_model import PatchModel
    from .shared_modality import SharedModalityModel

__all__ = [
    "CARDS_DIR",
    "MODEL_PATH_ENV",
    "ModelCard",
    "MODELS_DIR",
    "check_card",
    "find_card",
    "list_cards",
    "list_models",
    "load",
    "model_folders",
    "read_card",
    "save_card",
    "scan_cards",
    "sha256_of",
    "validate_patch_model",
]


def check_card(card: ModelCard) -> dict[str, Any]:
    """Whether the card's model file exists, matches its checksum and opens in its runtime."""
    out: dict[str, Any] = {"name": card.name, "method": card.method, "file": str(card.path)}
    for role, (path, expected) in card.all_files().items():
        what = "file" if role == "main" else f"'{role}' file"
        if not path.is_file():
            return {**out, "ok": False, "error": f"missing {what} {path}"}
        digest = sha256_of(path)
        if expected and digest != expected:
            return {**out, "ok": False, "error": f"{what}: checksum mismatch ({digest[:12]} != {expected[:12]})"}
        if path.suffix == ".onnx":
            try:
                from .safe_load import onnx_session

                sess = onnx_session(path, what=f"model '{card.name}': {what}")
                if role == "main":
                    out["inputs"] = [i.name for i in sess.get_inputs()]
            except Exception as exc:
                return {**out, "ok": False, "error": str(exc)}
    return {**out, "ok": True}


def _torch_module_for(state: dict[str, Any], source: str) -> tuple[Any, int]:
    """Build the inference module whose weights ``state`` holds; returns ``(module, patch_size)``."""
    if any(k.startswith("tower_a.") for k in state):
        from .rrlnet import PATCH_SIZE, RRLNet, RRLNetInference

        net = RRLNet().prune_for_inference()
        drop = ("decoder_a.", "decoder_b.", "stage_heads.", "sub_heads.")
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(drop)})
        return RRLNetInference(net), PATCH_SIZE
    if "enc_opt.fc.weight" in state:  # AAE (issue 7): architecture inferred from the weight shapes
        from .aae import AAEInference, aae_from_state_dict

        aae = aae_from_state_dict(state)
        return AAEInference(aae), aae.config.patch_size
    if "bnn_config" in state:  # BNN (issue 6): the buffer says backbone, dimension and patch size
        from .bnn import module_from_state

        return module_from_state(state)
    raise ValueError(f"{source}: not a known network's state dict (expected RRL-Net keys 'tower_a.*')")


def load(
    name_or_path: str | Path, device: str = "auto", backend: str = "auto", batch_size: int = 128
) -> PatchModel | SharedModalityModel:
    """Load a patch model (or a shared-modality model) by card name or file.

    A card whose ``method`` is ``"shared"`` gives a
    :class:`~sarcoreg.models.shared_modality.SharedModalityModel` (``transform(batch, modality)``,
    see :func:`~sarcoreg.models.shared_modality.load_shared_model`; ``batch_size`` does not apply).

    Args:
        name_or_path: A card name from ``models/cards/*.json`` (see :func:`list_models`), or a path
            to a ``.onnx`` file (run by ONNX Runtime) or a ``.pt`` file (torch: a pruned state dict
            such as ``best_inference.pt`` or a training checkpoint such as ``best.pt``).
        device: ``auto`` (CUDA when the back end has it), ``cpu`` or ``cuda``.
        backend: ``auto`` (by file type: ONNX Runtime for ``.onnx``), ``onnx`` or ``torch``.
            The torch back end needs torch and a ``.pt`` file (ONNX graphs are not converted back).
        batch_size: Pairs per back-end call.

    Returns:
        An object with ``name``, ``patch_size``, ``device`` and ``score(a, b) -> (N,)``.

    Raises:
        ValueError: Unknown name, unsupported file type or back end, checksum mismatch; a file
            that is not a plain weights file or a valid ONNX graph, or a model that fails its
            check on a test batch (:class:`~sarcoreg.models.safe_load.ModelFileError`, naming the file).
        FileNotFoundError: The file is missing.
    """
    from .patch_model import OnnxPatchModel, TorchPatchModel

    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown backend '{backend}'; use auto, onnx or torch")
    text = str(name_or_path)
    path = Path(text).expanduser()
    name = path.stem
    expected_size: int | None = None
    if path.suffix.lower() not in (".onnx", ".pt", ".pth"):
        card = find_card(text)
        if card.method == "shared":
            from .shared_modality import load_shared_model

            return load_shared_model(card, device=device, backend=backend)
        path, name = card.path, card.name
        expected_size = int(card.inputs["patch_size"]) if card.inputs.get("patch_size") else None
        if not path.is_file():
            raise FileNotFoundError(f"model '{name}': weight file {path} is missing")
        digest = sha256_of(path)
        if card.sha256 and digest != card.sha256:
            raise ValueError(
                f"model '{name}': {path} does not match the card's checksum ({digest[:12]} != {card.sha256[:12]})"
            )
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix.lower() == ".onnx":
        if backend == "torch":
            raise ValueError(
                f"{path} is an ONNX graph; the torch back end needs a .pt file "
                "(sarcoreg-train writes best_inference.pt)"
            )
        return validate_patch_model(OnnxPatchModel(path, name=name, device=device, batch_size=batch_size), path,
                                    expected_size)
    if backend == "onnx":
        raise ValueError(f"{path} is a torch file; export it to ONNX first or use backend='torch'")
    from .safe_load import ModelFileError, load_torch_weights

    state = load_torch_weights(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (it holds a {type(state).__name__})")
    try:
        module, size = _torch_module_for(state, str(path))
    except (KeyError, IndexError, TypeError, RuntimeError) as exc:  # weights of another shape or network
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file {path}: its weights do not fit the network they claim to be ({first})") \
            from None
    return validate_patch_model(TorchPatchModel(module, size, name=name, device=device, batch_size=batch_size),
                                path, expected_size)


def validate_patch_model(model: PatchModel, path: Path, expected_size: int | None = None) -> PatchModel:
    """Check a freshly loaded patch model before it is used; returns it.

    The patch size must be what the card says (when it says one), and a small test batch of
    two patch pairs must give two finite scores: a model with damaged weights is named here
    rather than showing up as "no similarity could be computed" for every tie point.

    Raises:
        ModelFileError: The check fails; the message names the model and its file.
    """
    from .safe_load import ModelFileError, check_finite

    source = f"model '{model.name}' ({path})"
    if expected_size is not None and int(model.patch_size) != expected_size:
        raise ModelFileError(
            f"{source} takes {model.patch_size} x {model.patch_size} patches, its card says {expected_size}"
        )
    p = int(model.patch_size)
    ramp = np.linspace(0.0, 1.0, p * p, dtype=np.float32).reshape(p, p)
    a = np.stack([ramp, ramp.T])
    b = np.stack([ramp, 1.0 - ramp])
    try:
        scores = model.score(a, b)
    except Exception as exc:
        raise ModelFileError(f"{source} fails on a test batch of two patch pairs: {exc}") from None
    check_finite(scores, (2,), source, "score")
    return model
