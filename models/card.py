"""Model cards: one JSON file per model in a model folder's ``cards/``, and where they are found.

A card says what the model is and how to run it: method, file, input bands and scaling, patch
size, training data, measured metrics, checksum and licence. Nothing is ever downloaded: the
file named by a card lies in its model folder or at a path the user gives.

Model folders, searched in this order (a name found in several is taken from the first):

1. ``models/`` of this package: the models of a checkout (the plugin zip leaves them out);
2. the user's model folder (:func:`user_models_dir`: ``$SARCOREG_MODELS``, else
   ``$XDG_DATA_HOME/sarcoreg/models``, else ``~/.local/share/sarcoreg/models``), where
   ``sarcoreg models install PACK.zip`` puts each model pack in a folder of its own
   (:mod:`sarcoreg.models.packs`);
3. every folder listed in the environment variable ``SARCOREG_MODEL_PATH`` (separated like ``PATH``).

Each model folder holds ``cards/*.json`` and the weight files; a card's relative ``file`` is
relative to its folder.

This module reads and finds cards only (numpy, torch and ONNX Runtime are not imported);
loading a model is :func:`sarcoreg.models.registry.load`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CARDS_DIR",
    "MODELS_DIR",
    "MODEL_PATH_ENV",
    "ModelCard",
    "USER_MODELS_ENV",
    "encoder_files",
    "find_card",
    "list_cards",
    "list_models",
    "model_folders",
    "model_origin",
    "read_card",
    "save_card",
    "scan_cards",
    "sha256_of",
    "user_models_dir",
]

MODELS_DIR = Path(__file__).resolve().parent
CARDS_DIR = MODELS_DIR / "cards"
MODEL_PATH_ENV = "SARCOREG_MODEL_PATH"
#: Environment variable naming the user's model folder (where model packs are installed).
USER_MODELS_ENV = "SARCOREG_MODELS"
_log = logging.getLogger("sarcoreg.models.registry")


def user_models_dir() -> Path:
    """The user's model folder, where model packs are installed (it need not exist yet).

    ``$SARCOREG_MODELS`` when set, else ``$XDG_DATA_HOME/sarcoreg/models`` (default
    ``~/.local/share/sarcoreg/models``).
    """
    explicit = os.environ.get(USER_MODELS_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "sarcoreg" / "models"


def _installed_folders() -> list[Path]:
    """The model folders inside the user's model folder.

    The folder itself if it holds ``cards/``, then each subfolder (one per installed pack, named
    after its model) that holds ``cards/``; hidden folders (installs in progress) are skipped.
    """
    root = user_models_dir()
    if not root.is_dir():
        return []
    found = [root] if (root / "cards").is_dir() else []
    found += [p for p in sorted(root.iterdir())
              if not p.name.startswith(".") and p.name != "cards" and (p / "cards").is_dir()]
    return found


def model_folders() -> list[Path]:
    """``models/`` first, then the user's installed models, then the folders in ``$SARCOREG_MODEL_PATH``."""
    extra = [Path(p).expanduser() for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p.strip()]
    return [MODELS_DIR] + _installed_folders() + [p for p in extra if p.is_dir()]


def model_origin(folder: Path) -> str:
    """Where a model folder comes from.

    Returns:
        ``"package"`` (``models/``), ``"user"`` (in the user's model folder, see
        :func:`user_models_dir`) or ``"path"`` (``$SARCOREG_MODEL_PATH`` or elsewhere).
    """
    folder = Path(folder).resolve()
    if folder == MODELS_DIR:
        return "package"
    root = user_models_dir().expanduser().resolve()
    if folder == root or root in folder.parents:
        return "user"
    return "path"


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


def list_models(cards_dir: Path | None = None) -> list[str]:
    """Names of the known models (one card each, from every model folder), sorted."""
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
            f"unknown model '{name}'; known models: {known}. Give a .onnx / .pt path, install its model pack "
            f"(sarcoreg models install PACK.zip), or add the folder that holds the model's cards/ to {MODEL_PATH_ENV}"
        )
    return cards[name]


def encoder_files(pair_model: str | Path) -> tuple[Path, Path]:
    """Encoder graphs of a pair model: ``<stem>-optical-encoder.onnx`` and ``<stem>-sar-encoder.onnx``."""
    p = Path(pair_model)
    return p.with_name(f"{p.stem}-optical-encoder.onnx"), p.with_name(f"{p.stem}-sar-encoder.onnx")
