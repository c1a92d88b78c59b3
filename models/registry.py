"""The model registry: one JSON card per model in a model folder's ``cards/``.

A card says what the model is and how to run it: method, file, input bands and scaling, patch
size, training data, measured metrics, checksum and licence. Nothing is ever downloaded: the
file named by a card lies in its model folder or at a path the user gives.

Model folders: ``models/`` of this package (the shipped models) first, then every folder listed
in the environment variable ``SARCOREG_MODEL_PATH`` (separated like ``PATH``). Each holds
``cards/*.json`` and the weight files; a card's relative ``file`` is relative to its folder. A
model trained with ``sarcoreg-train`` can thus be used by name without copying it into the plugin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .patch_model import PatchModel
    from .shared_modality import SharedModalityModel

__all__ = [
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

MODELS_DIR = Path(__file__).resolve().parent
CARDS_DIR = MODELS_DIR / "cards"
MODEL_PATH_ENV = "SARCOREG_MODEL_PATH"
_log = logging.getLogger(__name__)


def model_folders() -> list[Path]:
    """``models/`` first, then the folders in ``$SARCOREG_MODEL_PATH`` that exist."""
    extra = [Path(p).expanduser() for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p.strip()]
    return [MODELS_DIR] + [p for p in extra if p.is_dir()]


@dataclass(frozen=True)
class ModelCard:
    """Metadata of one shipped model (see the module docstring)."""

    name: str
    method: str
    file: str
    sha256: str
    licence: str
    inputs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    extra_files: dict[str, str] = field(default_factory=dict)
    extra_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """Absolute path of the weight file (relative paths are under ``models/``)."""
        p = Path(self.file)
        return p if p.is_absolute() else MODELS_DIR / p

    def file_for(self, role: str) -> Path:
        """Absolute path of the weight file playing ``role`` (``"main"`` is :attr:`file`).

        Models made of several networks (the AAE's two encoders, the shared-modality SAR and
        optical U-Nets) name their other files in ``extra_files`` (role -> path, relative to the
        model folder) with one checksum each in ``extra_sha256``.

        Raises:
            ValueError: The card has no file for ``role``; the message lists the roles it has.
        """
        if role == "main":
            return self.path
        if role not in self.extra_files:
            roles = ", ".join(["main", *sorted(self.extra_files)])
            raise ValueError(f"model '{self.name}' has no '{role}' file; its files: {roles}")
        p = Path(self.extra_files[role])
        return p if p.is_absolute() else MODELS_DIR / p

    def all_files(self) -> dict[str, tuple[Path, str]]:
        """Every weight file of the model: role -> (absolute path, expected SHA-256)."""
        out = {"main": (self.path, self.sha256)}
        for role in self.extra_files:
            out[role] = (self.file_for(role), self.extra_sha256.get(role, ""))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The card as written to JSON."""
        return asdict(self)


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_card(card: ModelCard | dict[str, Any], folder: Path) -> Path:
    """Write a card as ``folder/cards/<name>.json`` (the folder's ``cards/`` is created); returns its path."""
    data = card.to_dict() if isinstance(card, ModelCard) else card
    (folder / "cards").mkdir(exist_ok=True)
    path = folder / "cards" / f"{data['name']}.json"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def list_cards(cards_dir: Path | None = None) -> list[ModelCard]:
    """All cards, sorted by name: those in ``cards_dir``, or else in every model folder.

    A name found in several folders is taken from the first (the shipped models win).
    """
    cards, _ = scan_cards(cards_dir)
    return cards


def scan_cards(cards_dir: Path | None = None) -> tuple[list[ModelCard], list[tuple[Path, str]]]:
    """:func:`list_cards`, and the card files that were skipped with the reason for each.

    A card file that is not valid JSON, or lacks a field a card needs, is skipped with a
    warning (logged, naming the file); the other cards keep working.

    Returns:
        ``(cards sorted by name, [(skipped card file, why), ...])``.
    """
    dirs = [cards_dir] if cards_dir is not None else [f / "cards" for f in model_folders()]
    cards: dict[str, ModelCard] = {}
    skipped: list[tuple[Path, str]] = []
    for d in dirs:
        for path in sorted(d.glob("*.json")):
            try:
                card = read_card(path)
            except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, json.JSONDecodeError):
                    why = f"not valid JSON ({why})"
                skipped.append((path, why))
                _log.warning("model card %s skipped: %s", path, why)
                continue
            cards.setdefault(card.name, card)
    return sorted(cards.values(), key=lambda c: c.name), skipped


def read_card(path: Path) -> ModelCard:
    """One card file, with its relative file paths made absolute (relative to its model folder).

    Raises:
        ValueError: Not valid JSON, not a JSON object, or a field missing / of the wrong kind.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"not a card (a JSON object), but a JSON {type(data).__name__}")
    missing = [k for k in ("name", "method", "file") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise ValueError(f"field(s) {', '.join(missing)} missing or not text")
    if not Path(data["file"]).is_absolute():
        data["file"] = str((path.parent.parent / data["file"]).resolve())
    extra = dict(data.get("extra_files") or {})
    for role, rel in extra.items():
        if not Path(rel).is_absolute():
            extra[role] = str((path.parent.parent / rel).resolve())
    data["extra_files"] = extra
    data.setdefault("sha256", "")
    data.setdefault("licence", "")
    try:
        return ModelCard(**data)
    except TypeError as exc:  # an unknown field
        raise ValueError(f"not a model card: {exc}".replace("ModelCard.__init__() ", "")) from None


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


def list_models(cards_dir: Path | None = None) -> list[str]:
    """Names of the shipped models (one card each), sorted."""
    return [c.name for c in list_cards(cards_dir)]


def find_card(name: str, cards_dir: Path | None = None) -> ModelCard:
    """The card called ``name``.

    Raises:
        ValueError: No such card; the message lists the known names.
    """
    cards = {c.name: c for c in list_cards(cards_dir)}
    if name not in cards:
        known = ", ".join(sorted(cards)) or "none"
        raise ValueError(
            f"unknown model '{name}'; known models: {known}. Give a .onnx / .pt path, or add the folder that "
            f"holds the model's cards/ to {MODEL_PATH_ENV}"
        )
    return cards[name]


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
