"""Model packs: one zip per model (its card plus its weight files), checksummed, installed atomically.

The plugin zip carries no weights; each model travels as a pack::

    manifest.json          {"format": "sarcoreg-model-pack", "format_version": 1, "name", "method",
                            "licence", "files": {"cards/NAME.json": {"sha256", "size"}, "W.onnx": {...}}}
    cards/NAME.json        the model card, its file names relative to the pack
    W.onnx ...             the main file and every ``extra_files`` entry of the card

:func:`build_pack` writes one from a card; :func:`install_pack` puts one into the user's model
folder (:func:`sarcoreg.models.card.user_models_dir`), in a folder of its own named after the
model, where the normal model lookup (:func:`sarcoreg.models.card.find_card`) finds it.

Installing is all or nothing: the pack is extracted into a hidden temporary folder beside the
target, every file is checked against the manifest's SHA-256 and size, the card must parse and
name files that exist in the pack (relative names, inside it) with matching checksums, and only
then is the folder renamed into place. A pack with absolute names, ``..`` parts, links or other
special entries, files the manifest does not list, or files of a kind sarcoreg does not load is
refused before anything is written. An installed model with other contents is replaced only
when asked to (``force``). Nothing in a pack is ever executed: cards are JSON, weights are ONNX
graphs or weights-only torch files opened by :mod:`sarcoreg.models.safe_load` when used.

Standard library only (no numpy, torch or ONNX Runtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .card import ModelCard, model_folders, model_origin, raw_files, read_card, scan_cards, user_models_dir

__all__ = [
    "MANIFEST",
    "PACK_FORMAT",
    "InstallResult",
    "PackError",
    "build_pack",
    "build_packs",
    "install_pack",
    "installed_models",
    "read_pack",
]

PACK_FORMAT = "sarcoreg-model-pack"
PACK_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: What the user folder of an installed pack records about where it came from.
INSTALL_RECORD = "installed.json"
#: File kinds a pack may hold: cards, weights (ONNX, weights-only torch) and text.
ALLOWED_SUFFIXES = frozenset({".json", ".onnx", ".pt", ".pth", ".txt", ".md"})
#: Largest total size of a pack's files once extracted (a guard against zip bombs).
MAX_UNPACKED_BYTES = 4 << 30
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries get one date: the same card and files give the same pack


class PackError(ValueError):
    """A model pack that cannot be built or installed; the message says why."""


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install_pack` did.

    Attributes:
        name: The model's name.
        method: Its method (``bnn``, ``shared`` ...).
        folder: The model folder it now lives in.
        status: ``"installed"`` (new), ``"replaced"`` (other contents, ``force``) or
            ``"unchanged"`` (the same files were installed already).
        files: Archive name -> SHA-256 of every file of the pack.
        shadowed_by: A model folder searched earlier that holds a model of the same name (that
            one is used), or None.
    """

    name: str
    method: str
    folder: Path
    status: str
    files: dict[str, str] = field(default_factory=dict)
    shadowed_by: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the worker and ``--json``)."""
        return {"name": self.name, "method": self.method, "folder": str(self.folder), "status": self.status,
                "files": dict(self.files), "shadowed_by": str(self.shadowed_by) if self.shadowed_by else None}


def _sha256_bytes_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- building
def _card_file(name_or_path: str | Path) -> Path:
    """The card file of a model: a ``.json`` path as given, or the first card called so in the model folders."""
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise PackError(f"card file not found: {path}")
        return path
    for folder in model_folders():
        for candidate in sorted((folder / "cards").glob("*.json")):
            try:
                if read_card(candidate).name == str(name_or_path):
                    return candidate
            except (OSError, UnicodeDecodeError, ValueError, TypeError):
                continue
    raise PackError(f"no model card called '{name_or_path}' in the model folders")


def build_pack(card: str | Path, out_dir: Path) -> Path:
    """Write the model pack of one model into ``out_dir`` as ``NAME.zip`` (atomically).

    Args:
        card: A model name (looked up in the model folders) or a card ``.json`` file.
        out_dir: Where to write the pack (created).

    Returns:
        The pack's path.

    Raises:
        PackError: No such card, a file it names is missing, two files share a name, or a file
            does not match the card's checksum.
    """
    card_path = _card_file(card)
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    parsed = read_card(card_path)
    files: dict[str, tuple[Path, str]] = {}
    for role, (path, expected) in parsed.all_files().items():
        if not path.is_file():
            raise PackError(f"model '{parsed.name}': its {role} file {path} is missing")
        arcname = path.name
        if arcname in files or arcname == MANIFEST or Path(arcname).suffix.lower() not in ALLOWED_SUFFIXES:
            raise PackError(f"model '{parsed.name}': cannot pack file {path} under the name '{arcname}'")
        digest = _sha256_bytes_of(path)
        if expected and digest != expected:
            raise PackError(f"model '{parsed.name}': {path} does not match the card's checksum "
                            f"({digest[:12]} != {expected[:12]})")
        files[arcname] = (path, digest)
    roles = {role: path.name for role, (path, _) in parsed.all_files().items()}
    if "files" in raw:  # the card's own layout is kept, with plain file names and their checksums
        raw["files"] = {role: {"path": arc, "sha256": files[arc][1]} for role, arc in roles.items()}
    else:
        raw["file"] = roles.pop("main")
        raw["sha256"] = files[raw["file"]][1]
        raw["extra_files"] = roles
        raw["extra_sha256"] = {role: files[arcname][1] for role, arcname in roles.items()}
    card_bytes = (json.dumps(raw, indent=1) + "\n").encode("utf-8")
    card_arc = f"cards/{parsed.name}.json"
    manifest = {
        "format": PACK_FORMAT, "format_version": PACK_FORMAT_VERSION, "name": parsed.name, "method": parsed.method,
        "licence": parsed.licence,
        "files": {card_arc: {"sha256": hashlib.sha256(card_bytes).hexdigest(), "size": len(card_bytes)},
                  **{arc: {"sha256": digest, "size": path.stat().st_size} for arc, (path, digest) in files.items()}},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{parsed.name}.zip"
    tmp = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_entry(MANIFEST), json.dumps(manifest, indent=1) + "\n")
        zf.writestr(_entry(card_arc), card_bytes)
        for arcname, (path, _) in sorted(files.items()):
            info = _entry(arcname)
            with open(path, "rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    tmp.replace(out)
    return out


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def build_packs(out_dir: Path, names: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """Build model packs into ``out_dir`` (``make models``).

    Args:
        out_dir: Where the packs go.
        names: Models to pack, looked up by name in the model folders; default: every card of
            ``folder``.
        folder: The model folder whose cards are packed when no names are given (default the
            package's ``models/``: the shipped models, not what the user has installed).

    Returns:
        The packs written.
    """
    if names:
        return [build_pack(name, out_dir) for name in names]
    from . import card as card_module

    cards_dir = (folder or card_module.MODELS_DIR) / "cards"
    return [build_pack(path, out_dir) for path in sorted(cards_dir.glob("*.json"))]


# ----------------------------------------------------------------------------------------- reading
def _safe_name(name: str) -> PurePosixPath:
    """An archive member name as a relative path, or PackError for absolute names and ``..``."""
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise PackError(f"refused: entry '{name}' has an absolute or non-portable name")
    path = PurePosixPath(name)
    if any(part in ("", ".", "..") for part in path.parts) or name != path.as_posix():
        raise PackError(f"refused: entry '{name}' leaves the pack (path traversal) or is not a plain relative name")
    return path


def _file_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The pack's file entries by name; PackError for unsafe names, links, special files, duplicates."""
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        if info.is_dir():
            _safe_name(info.filename.rstrip("/"))
            continue
        _safe_name(info.filename)
        kind_bits = stat.S_IFMT(info.external_attr >> 16)  # 0: written without a file type (Windows tools)
        if kind_bits and kind_bits != stat.S_IFREG:
            kind = "a symbolic link" if kind_bits == stat.S_IFLNK else "not a regular file"
            raise PackError(f"refused: entry '{info.filename}' is {kind}")
        if info.filename in members:
            raise PackError(f"refused: entry '{info.filename}' appears twice")
        if PurePosixPath(info.filename).suffix.lower() not in ALLOWED_SUFFIXES:
            raise PackError(f"refused: entry '{info.filename}' is not a card, ONNX graph, weights file or text "
                            f"(allowed: {', '.join(sorted(ALLOWED_SUFFIXES))})")
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise PackError(f"refused: the pack unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB")
        members[info.filename] = info
    return members


def read_pack(pack: str | Path) -> dict[str, Any]:
    """The manifest of a pack, after checking its entries (names, kinds) against it.

    Raises:
        PackError: Not a zip, no or a bad manifest, unsafe entries, or entries the manifest
            does not list (or the other way round).
    """
    path = Path(pack).expanduser()
    if not path.is_file():
        raise PackError(f"model pack not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _file_members(zf)
            if MANIFEST not in members:
                raise PackError(f"{path}: not a sarcoreg model pack (no {MANIFEST})")
            manifest = json.loads(zf.read(members[MANIFEST]).decode("utf-8"))
    except zipfile.BadZipFile as exc:
        raise PackError(f"{path}: not a zip file ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"{path}: its {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise PackError(f"{path}: not a sarcoreg model pack ({MANIFEST} lacks format '{PACK_FORMAT}')")
    if int(manifest.get("format_version", 0)) > PACK_FORMAT_VERSION:
        raise PackError(f"{path}: pack format {manifest.get('format_version')} is newer than this sarcoreg reads "
                        f"({PACK_FORMAT_VERSION}); update sarcoreg")
    files = manifest.get("files")
    name = manifest.get("name")
    if not isinstance(files, dict) or not files or not isinstance(name, str):
        raise PackError(f"{path}: {MANIFEST} must give the model's name and its files")
    _model_folder_name(name, path)
    for arcname, entry in files.items():
        _safe_name(arcname)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or len(entry["sha256"]) != 64:
            raise PackError(f"{path}: {MANIFEST} gives no SHA-256 for '{arcname}'")
    listed, present = set(files), set(members) - {MANIFEST}
    if listed != present:
        extra, missing = sorted(present - listed), sorted(listed - present)
        raise PackError(f"{path}: entries and {MANIFEST} differ (not listed: {extra or 'none'}; "
                        f"missing: {missing or 'none'})")
    return manifest


def _model_folder_name(name: str, pack: Path) -> str:
    if not name or name.startswith(".") or not all(c.isalnum() or c in "-_." for c in name):
        raise PackError(f"{pack}: model name '{name}' is not usable as a folder name")
    return name


# ----------------------------------------------------------------------------------------- installing
def _extract_checked(zf: zipfile.ZipFile, manifest: dict[str, Any], dest: Path) -> dict[str, str]:
    """Extract the manifest's files into ``dest`` (a fresh folder), checking size and SHA-256 of each."""
    digests: dict[str, str] = {}
    for arcname, entry in sorted(manifest["files"].items()):
        target = dest.joinpath(*PurePosixPath(arcname).parts)
        if dest.resolve() not in target.resolve().parents:
            raise PackError(f"refused: entry '{arcname}' leaves the pack")
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with zf.open(arcname) as src, open(target, "xb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                size += len(block)
                if size > MAX_UNPACKED_BYTES:
                    raise PackError(f"refused: '{arcname}' unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB")
                h.update(block)
                dst.write(block)
        digest = h.hexdigest()
        if digest != entry["sha256"] or ("size" in entry and int(entry["size"]) != size):
            raise PackError(f"checksum mismatch: '{arcname}' has SHA-256 {digest[:12]}..., the manifest says "
                            f"{str(entry['sha256'])[:12]}... (a damaged or altered pack)")
        digests[arcname] = digest
    return digests


def _check_card(folder: Path, manifest: dict[str, Any], pack: Path) -> ModelCard:
    """The pack's one card, parsed, naming files inside ``folder`` that exist and match its checksums."""
    cards = sorted((folder / "cards").glob("*.json")) if (folder / "cards").is_dir() else []
    if len(cards) != 1:
        raise PackError(f"{pack}: a model pack holds exactly one card in cards/, this one {len(cards)}")
    raw = json.loads(cards[0].read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise PackError(f"{pack}: its card is not a JSON object")
    for role, (value, _) in raw_files(raw).items():
        if not isinstance(value, str):
            raise PackError(f"{pack}: the card's {role} file is not a file name")
        _safe_name(value)
    try:
        card = read_card(cards[0])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PackError(f"{pack}: its card does not parse ({exc})") from None
    if card.name != manifest["name"]:
        raise PackError(f"{pack}: the card is called '{card.name}', the manifest '{manifest['name']}'")
    root = folder.resolve()
    for role, (path, expected) in card.all_files().items():
        if root not in path.resolve().parents:
            raise PackError(f"{pack}: the card's {role} file {path.name} lies outside the pack")
        if not path.is_file():
            raise PackError(f"{pack}: the card names a {role} file '{path.name}' that the pack does not hold")
        if expected and _sha256_bytes_of(path) != expected:
            raise PackError(f"{pack}: the {role} file '{path.name}' does not match the card's checksum")
    return card


def _installed_digests(folder: Path) -> dict[str, str] | None:
    """Archive name -> SHA-256 recorded by an installed pack (None when it has no manifest)."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        return {str(k): str(v["sha256"]) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def install_pack(pack: str | Path, force: bool = False, root: Path | None = None) -> InstallResult:
    """Install a model pack into the user's model folder (all or nothing).

    Args:
        pack: The pack (``NAME.zip``).
        force: Replace an installed model of the same name whose files differ.
        root: The user's model folder (default :func:`~sarcoreg.models.card.user_models_dir`).

    Returns:
        What was done (:class:`InstallResult`).

    Raises:
        PackError: The pack is refused (unsafe entries, checksum mismatch, a bad card, another
            version installed without ``force``); nothing is changed then.
    """
    path = Path(pack).expanduser().resolve()
    manifest = read_pack(path)
    name = _model_folder_name(str(manifest["name"]), path)
    root = (root or user_models_dir()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.installing-", dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; an installed model is as readable as the folder above
    try:
        with zipfile.ZipFile(path) as zf:
            digests = _extract_checked(zf, manifest, staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        card = _check_card(staging, manifest, path)
        status = "installed"
        if target.exists():
            if _installed_digests(target) == digests:
                shutil.rmtree(staging)
                return InstallResult(name, card.method, target, "unchanged", digests, _shadow(name, target))
            if not force:
                raise PackError(f"model '{name}' is installed already in {target} with other files; "
                                "replace it with --force (Processing: 'Replace an installed model')")
            status = "replaced"
        record = {"source": str(path), "pack_sha256": _sha256_bytes_of(path),
                  "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / INSTALL_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return InstallResult(name, card.method, target, status, digests, _shadow(name, target))


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    old.rmdir()
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _shadow(name: str, folder: Path) -> Path | None:
    """The model folder searched before ``folder`` that holds a model called ``name``, if any."""
    here = folder.resolve()
    for candidate in model_folders():
        if candidate.resolve() == here:
            return None
        for card_file in (candidate / "cards").glob("*.json"):
            try:
                if read_card(card_file).name == name:
                    return candidate
            except (OSError, UnicodeDecodeError, ValueError, TypeError):
                continue
    return None


def installed_models() -> list[dict[str, Any]]:
    """Every model card of every model folder, with where it comes from.

    Returns:
        One dict per card, in lookup order: ``name``, ``method``, ``origin`` (``package``,
        ``user`` or ``path``), ``folder``, ``file`` (main weight file), ``active`` (False when a
        folder searched earlier has a model of the same name) and, for installed packs, the
        ``source`` pack and ``installed_at`` time.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for folder in model_folders():
        cards, _ = scan_cards(folder / "cards")
        record: dict[str, Any] = {}
        try:
            record = json.loads((folder / INSTALL_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        for card in cards:
            rows.append({"name": card.name, "method": card.method, "origin": model_origin(folder),
                         "folder": str(folder), "file": str(card.path), "active": card.name not in seen,
                         **{k: record[k] for k in ("source", "installed_at") if k in record}})
            seen.add(card.name)
    return rows
