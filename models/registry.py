"""The model registry: one JSON card per shipped model in ``models/cards/``.

A card says what the model is and how to run it: method, file, input bands and scaling, patch
size, training data, measured metrics, checksum and licence. Nothing is ever downloaded: the
file named by a card lies in ``models/`` or at a path the user gives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelCard", "MODELS_DIR", "check_card", "list_cards", "sha256_of"]

MODELS_DIR = Path(__file__).resolve().parent
CARDS_DIR = MODELS_DIR / "cards"


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

    @property
    def path(self) -> Path:
        """Absolute path of the weight file (relative paths are under ``models/``)."""
        p = Path(self.file)
        return p if p.is_absolute() else MODELS_DIR / p

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


def list_cards(cards_dir: Path = CARDS_DIR) -> list[ModelCard]:
    """All cards in ``cards_dir``, sorted by name."""
    cards = []
    for path in sorted(cards_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        cards.append(ModelCard(**data))
    return sorted(cards, key=lambda c: c.name)


def check_card(card: ModelCard) -> dict[str, Any]:
    """Whether the card's model file exists, matches its checksum and opens in its runtime."""
    out: dict[str, Any] = {"name": card.name, "method": card.method, "file": str(card.path)}
    if not card.path.is_file():
        return {**out, "ok": False, "error": f"missing file {card.path}"}
    digest = sha256_of(card.path)
    if digest != card.sha256:
        return {**out, "ok": False, "error": f"checksum mismatch ({digest[:12]} != {card.sha256[:12]})"}
    if card.path.suffix == ".onnx":
        try:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(card.path), providers=["CPUExecutionProvider"])
            out["inputs"] = [i.name for i in sess.get_inputs()]
        except Exception as exc:
            return {**out, "ok": False, "error": f"onnxruntime cannot open it: {exc}"}
    return {**out, "ok": True}
