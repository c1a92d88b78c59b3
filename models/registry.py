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
from .loaders import loader_for, weights_method

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
    "load_card",
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


def load(
    name_or_path: str | Path, device: str = "auto", backend: str = "auto", batch_size: int = 128
) -> PatchModel | SharedModalityModel:
    """Load a patch model (or a shared-modality model) by card name or file.

    Which network a model is comes from the loader table (:mod:`.loaders`), keyed by the card's
    ``method`` or the ``"method"`` a training checkpoint carries. A card whose method is an image
    method (``"shared"``) gives a :class:`~sarcoreg.models.shared_modality.SharedModalityModel`
    (``transform(batch, modality)``, see :func:`~sarcoreg.models.shared_modality.load_shared_model`;
    ``batch_size`` does not apply), as does such a checkpoint.

    Args:
        name_or_path: A card name from ``models/cards/*.json`` (see :func:`list_models`), or a path
            to a ``.onnx`` file (run by ONNX Runtime) or a ``.pt`` file (torch: a training
            checkpoint such as ``best.pt``, which names its method, or a pruned state dict such
            as ``best_inference.pt``; files that name no method are recognised by their keys,
            :func:`~sarcoreg.models.loaders.legacy_method`).
        device: ``auto`` (CUDA when the back end has it), ``cpu``, ``cuda`` or ``cuda:N``.
        backend: ``auto`` (by file type: ONNX Runtime for ``.onnx``), ``onnx`` or ``torch``.
            The torch back end needs torch and a ``.pt`` file (ONNX graphs are not converted back).
        batch_size: Pairs per back-end call.

    Returns:
        An object with ``name``, ``patch_size``, ``device`` and ``score(a, b) -> (N,)``.

    Raises:
        ValueError: Unknown name or method, unsupported file type or back end, checksum mismatch;
            a file that is not a plain weights file or a valid ONNX graph, or a model that fails its
            check on a test batch (:class:`~sarcoreg.models.safe_load.ModelFileError`, naming the file).
        FileNotFoundError: The file is missing.
    """
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown backend '{backend}'; use auto, onnx or torch")
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".onnx", ".pt", ".pth"):
        return load_card(find_card(text), device=device, backend=backend, batch_size=batch_size)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return _load_file(path, path.stem, None, None, device, backend, batch_size)


def load_card(
    card: ModelCard, device: str = "auto", backend: str = "auto", batch_size: int = 128
) -> PatchModel | SharedModalityModel:
    """Load the model of a card through the loader of its ``method`` (see :func:`load`).

    Raises:
        ValueError: No loader for the card's method, checksum mismatch, wrong back end.
        FileNotFoundError: The card's file is missing.
    """
    try:
        loader = loader_for(card.method)
    except ValueError as exc:
        raise ValueError(f"model '{card.name}': {exc}") from None
    if loader.kind == "image":
        assert loader.image is not None
        return loader.image(card, device=device, backend=backend)
    path = card.path
    if not path.is_file():
        raise FileNotFoundError(f"model '{card.name}': weight file {path} is missing")
    digest = sha256_of(path)
    if card.sha256 and digest != card.sha256:
        raise ValueError(
            f"model '{card.name}': {path} does not match the card's checksum ({digest[:12]} != {card.sha256[:12]})"
        )
    expected_size = int(card.inputs["patch_size"]) if card.inputs.get("patch_size") else None
    return _load_file(path, card.name, card.method, expected_size, device, backend, batch_size)


def _load_file(path: Path, name: str, method: str | None, expected_size: int | None, device: str, backend: str,
               batch_size: int) -> PatchModel | SharedModalityModel:
    """A patch model from an ``.onnx`` or ``.pt`` file; ``method`` is the card's (None: the file says)."""
    from .patch_model import OnnxPatchModel, TorchPatchModel
    from .safe_load import ModelFileError, load_torch_weights

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
    said, state, _ = weights_method(load_torch_weights(path), path)
    if method is not None and said != method:
        raise ModelFileError(f"model '{name}': its card says method '{method}', its file {path} holds '{said}'")
    loader = loader_for(said)
    if loader.kind == "image":
        assert loader.image is not None
        return loader.image(path, device=device, backend="torch")
    assert loader.network is not None
    try:
        module, size = loader.network(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:  # weights of another shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file {path}: its weights do not fit the {said} network ({first})") from None
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
