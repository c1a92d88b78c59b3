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

Each model folder holds ``cards/*.json`` and the weight files; a card's relative file paths are
relative to its folder.

Card layout (what :func:`save_card` writes)::

    {"name": "bnn-sar-optical", "method": "bnn",
     "files": {"main": {"path": "bnn-sar-optical.onnx", "sha256": "d9bf..."},
               "optical_encoder": {"path": "...", "sha256": "..."}},
     "licence": "...", "inputs": {...}, "training": {...}, "metrics": {...}, "notes": "..."}

``files`` names every weight file by its role (``main`` always; the AAE's ``optical_encoder`` /
``sar_encoder``, the shared-modality model's ``optical``), each with its SHA-256. Cards written
before this layout (``file`` + ``sha256`` for the main file, ``extra_files`` + ``extra_sha256``
for the others) are read the same way; :mod:`.card_upgrade` rewrites them. ``inputs`` is free
JSON for people; :class:`CardInputs` (:attr:`ModelCard.input_spec`) is the typed reading of it
that loaders and checks use.

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
    "CardFile",
    "CardInputs",
    "MODELS_DIR",
    "MODEL_PATH_ENV",
    "ModalityInput",
    "ModelCard",
    "USER_MODELS_ENV",
    "encoder_files",
    "find_card",
    "list_cards",
    "list_models",
    "model_folders",
    "model_origin",
    "parse_inputs",
    "raw_files",
    "read_card",
    "save_card",
    "scan_cards",
    "sha256_of",
    "typed_layout",
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
class CardFile:
    """One weight file of a model.

    Attributes:
        path: The file (absolute once the card has been read from its model folder).
        sha256: Its expected SHA-256 (hex); empty = not checked.
    """

    path: Path
    sha256: str = ""


@dataclass(frozen=True)
class ModalityInput:
    """What a model takes from one modality.

    Attributes:
        bands: Band names in input order (``("gray",)`` for the one-band patch models, ``("VV",)``,
            ``("R", "G", "B")`` ...); their number is the input channels of that branch.
        scaling: How the values must be prepared (free text from the card, e.g. "dB, stretched").
    """

    bands: tuple[str, ...]
    scaling: str = ""


@dataclass(frozen=True)
class CardInputs:
    """The typed reading of a card's ``inputs`` (:func:`parse_inputs`).

    Exactly one of ``patch_size`` (patch and descriptor models: inputs ``(N, C, P, P)``) and
    ``multiple`` (whole-image models: inputs ``(B, C, H, W)`` with ``H``, ``W`` multiples of it) is set.

    Attributes:
        optical: The reference / optical input.
        sar: The target / SAR (or NIR) input.
        patch_size: ``P`` of a patch model, else None.
        multiple: The size multiple of an image model, else None.
        output_channels: ``K`` of an image model's outputs (None for patch models: one score per pair).
    """

    optical: ModalityInput
    sar: ModalityInput
    patch_size: int | None = None
    multiple: int | None = None
    output_channels: int | None = None


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"inputs.{what} must be a positive whole number, got {value!r}")
    return value


def _bands(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(b, str) and b for b in value):
        raise ValueError(f"inputs.{what} must be a non-empty list of band names, got {value!r}")
    return tuple(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True) if value else ""


def parse_inputs(inputs: dict[str, Any]) -> CardInputs:
    """Read a card's ``inputs`` into :class:`CardInputs`, checking what loaders rely on.

    Two kinds of ``inputs`` are known:

    * whole-image models (``sar_bands`` / ``optical_bands``, or ``sar.bands`` / ``optical.bands``):
      bands per modality, ``channels`` = ``K`` of the outputs, ``multiple`` (default 32), scaling
      from ``scale.<modality>`` or ``<modality>.scaling``;
    * patch models (``patch_size``): one band per patch (``channels`` 1; band names from
      ``optical_bands`` / ``sar_bands`` when given, else ``gray``), scaling from ``scaling``.

    Raises:
        ValueError: A field missing or of the wrong kind; the message names it.
    """
    if not isinstance(inputs, dict):
        raise ValueError(f"inputs must be a JSON object, got {type(inputs).__name__}")
    scale: dict[str, Any] = inputs["scale"] if isinstance(inputs.get("scale"), dict) else {}
    sections: dict[str, dict[str, Any]] = {m: inputs[m] if isinstance(inputs.get(m), dict) else {}
                                           for m in ("optical", "sar")}
    if "patch_size" in inputs:
        size = _positive_int(inputs["patch_size"], "patch_size")
        channels = _positive_int(inputs.get("channels", 1), "channels")
        if channels != 1:
            raise ValueError(f"inputs.channels of a patch model must be 1 (patches (N, 1, P, P)), got {channels}")
        common = _text(inputs.get("scaling"))
        per = {m: ModalityInput(_bands(inputs.get(f"{m}_bands", ["gray"]), f"{m}_bands"),
                                _text(sections[m].get("scaling")) or common) for m in ("optical", "sar")}
        for m, spec in per.items():
            if len(spec.bands) != channels:
                raise ValueError(f"inputs.{m}_bands names {len(spec.bands)} bands, a patch model takes {channels}")
        return CardInputs(per["optical"], per["sar"], patch_size=size)
    per = {}
    for m in ("optical", "sar"):
        raw = inputs.get(f"{m}_bands", sections[m].get("bands"))
        if raw is None:
            raise ValueError(f"inputs need patch_size (a patch model) or {m}_bands (an image model)")
        per[m] = ModalityInput(_bands(raw, f"{m}_bands"), _text(sections[m].get("scaling") or scale.get(m)))
    return CardInputs(per["optical"], per["sar"], multiple=_positive_int(inputs.get("multiple", 32), "multiple"),
                      output_channels=_positive_int(inputs.get("channels", 3), "channels"))


@dataclass(frozen=True)
class ModelCard:
    """Metadata of one model (see the module docstring for the JSON layout).

    The constructor takes the main file as ``file`` / ``sha256`` and the others as ``extra_files`` /
    ``extra_sha256`` (role -> path, role -> SHA-256), as the card writers of ``training/`` call it;
    :attr:`files` is the typed view of all of them and :meth:`to_dict` writes the ``files`` layout.
    """

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

    @property
    def files(self) -> dict[str, CardFile]:
        """Every weight file by role (``main`` first): role -> :class:`CardFile` (absolute path, SHA-256)."""
        return {role: CardFile(path, digest) for role, (path, digest) in self.all_files().items()}

    @property
    def input_spec(self) -> CardInputs:
        """The typed :class:`CardInputs` of :attr:`inputs` (:func:`parse_inputs`; raises ValueError)."""
        return parse_inputs(self.inputs)

    def file_for(self, role: str) -> Path:
        """Absolute path of the weight file playing ``role`` (``"main"`` is :attr:`file`).

        Models made of several networks (the AAE's two encoders, the shared-modality SAR and
        optical U-Nets) have one file per role, each with its own checksum.

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

    def sha256_for(self, role: str) -> str:
        """The expected SHA-256 of the ``role`` file (empty: not checked)."""
        return self.sha256 if role == "main" else self.extra_sha256.get(role, "")

    def all_files(self) -> dict[str, tuple[Path, str]]:
        """Every weight file of the model: role -> (absolute path, expected SHA-256)."""
        out = {"main": (self.path, self.sha256)}
        for role in self.extra_files:
            out[role] = (self.file_for(role), self.extra_sha256.get(role, ""))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The card as written to JSON (the ``files`` layout; paths as given, relative or absolute)."""
        data = asdict(self)
        return typed_layout(data)


_LEGACY_FILE_KEYS = ("file", "sha256", "extra_files", "extra_sha256")


def typed_layout(raw: dict[str, Any]) -> dict[str, Any]:
    """A card's JSON object in the ``files`` layout (a card already in it is returned as a copy).

    ``file`` / ``sha256`` become ``files.main``, ``extra_files`` / ``extra_sha256`` the other roles;
    every other field is kept, in the order: name, method, files, then the rest as they were.
    """
    if "files" in raw:
        return dict(raw)
    files = {"main": {"path": raw.get("file", ""), "sha256": raw.get("sha256", "")}}
    extra_sha = dict(raw.get("extra_sha256") or {})
    for role, path in dict(raw.get("extra_files") or {}).items():
        files[role] = {"path": path, "sha256": extra_sha.get(role, "")}
    head: dict[str, Any] = {k: raw[k] for k in ("name", "method") if k in raw}
    rest = {k: v for k, v in raw.items() if k not in head and k not in _LEGACY_FILE_KEYS}
    return {**head, "files": files, **rest}


def raw_files(raw: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Role -> (path as written, SHA-256 as written) of a card's JSON object, in either layout.

    Values are returned unchecked (a damaged card may hold anything); :func:`read_card` checks them.
    """
    if "files" in raw:
        files = raw["files"]
        if not isinstance(files, dict):
            return {"main": (None, None)}
        return {str(role): (e.get("path"), e.get("sha256", "")) if isinstance(e, dict) else (None, None)
                for role, e in files.items()}
    extra_sha: dict[str, Any] = raw["extra_sha256"] if isinstance(raw.get("extra_sha256"), dict) else {}
    out: dict[str, tuple[Any, Any]] = {"main": (raw.get("file"), raw.get("sha256", ""))}
    extra: dict[str, Any] = raw["extra_files"] if isinstance(raw.get("extra_files"), dict) else {}
    out.update({str(role): (path, extra_sha.get(role, "")) for role, path in extra.items()})
    return out


def _legacy_layout(data: dict[str, Any]) -> dict[str, Any]:
    """The constructor fields of :class:`ModelCard` from a card's JSON object in either layout.

    Raises:
        ValueError: Both layouts at once, or a ``files`` entry that is not ``{path, sha256}`` text.
    """
    if "files" not in data:
        return dict(data)
    clash = [k for k in _LEGACY_FILE_KEYS if k in data]
    if clash:
        raise ValueError(f"card has both 'files' and {', '.join(clash)}; keep one layout")
    files = data["files"]
    if not isinstance(files, dict) or "main" not in files:
        raise ValueError("field files must be an object with a 'main' entry")
    for role, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"] \
                or not isinstance(entry.get("sha256", ""), str):
            raise ValueError(f"files.{role} must be {{\"path\": text, \"sha256\": text}}")
    out = {k: v for k, v in data.items() if k != "files"}
    out["file"], out["sha256"] = files["main"]["path"], files["main"].get("sha256", "")
    out["extra_files"] = {r: e["path"] for r, e in files.items() if r != "main"}
    out["extra_sha256"] = {r: e.get("sha256", "") for r, e in files.items() if r != "main"}
    return out


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_card(card: ModelCard | dict[str, Any], folder: Path) -> Path:
    """Write a card as ``folder/cards/<name>.json`` (the folder's ``cards/`` is created); returns its path.

    The card is written in the ``files`` layout (a JSON object in the old layout is converted by
    :func:`typed_layout`), so every card writer produces the same layout.
    """
    data = card.to_dict() if isinstance(card, ModelCard) else typed_layout(card)
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
    """One card file (either layout), with its relative file paths made absolute (relative to its model folder).

    Raises:
        ValueError: Not valid JSON, not a JSON object, or a field missing / of the wrong kind.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"not a card (a JSON object), but a JSON {type(data).__name__}")
    data = _legacy_layout(data)
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
