"""The pairs of a batch: read from a CSV table, or one reference against a folder / glob of targets.

A table has a header line with at least ``reference`` and ``target``; an ``id`` column names each
pair's output folder (default: the target's file name without extension), and any other column
is a co-registration option for that row, named like the ``sarcoreg coregister`` options
(``method``, ``transform``, ``spacing``, ``window``, ``radius``, ``expected-error``,
``target-bands`` ...; ``-`` and ``_`` are the same) or like a
:class:`~sarcoreg.core.engine.CoregOptions` field. An empty cell leaves the option at the batch
default. Relative paths are taken from the table's folder::

    reference,target,id,transform,target-bands
    s2/T33UUP.tif,s1/2024-01-03.tif,jan03,affine,1
    s2/T33UUP.tif,s1/2024-01-15.tif,jan15,shift,1 2
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .folders import safe_id

__all__ = ["Pair", "load_pairs", "option_value", "pairs_from_csv", "pairs_from_targets"]

#: Command-line spellings of options whose CoregOptions field has another name.
_ALIASES: dict[str, str] = {
    "radius": "search_radius",
    "expected_error": "expected_error_m",
    "ransac_threshold": "ransac_threshold_px",
}
#: Options that go into ``CoregOptions.matcher_options``.
_MATCHER_OPTIONS = ("model", "device", "keypoints")
#: Raster file endings a folder of targets is searched for.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg")
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


@dataclass(frozen=True)
class Pair:
    """One co-registration of a batch.

    Attributes:
        id: Name of the pair's output folder (letters, digits, ``.``, ``_``, ``-``).
        reference: Absolute path of the reference raster.
        target: Absolute path of the raster to co-register.
        options: :class:`~sarcoreg.core.engine.CoregOptions` fields that differ from the defaults
            (JSON-able).
    """

    id: str
    reference: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what a Dask task receives)."""
        return {"id": self.id, "reference": self.reference, "target": self.target, "options": dict(self.options)}


def _field_types() -> dict[str, str]:
    """CoregOptions field name -> its annotation text (the engine is imported here, lazily)."""
    from dataclasses import fields

    from ..engine import CoregOptions

    return {f.name: str(f.type) for f in fields(CoregOptions)}


def _parse(name: str, text: str, kind: str, where: str) -> Any:
    """Parse ``text`` as a value of annotation ``kind``; ValueError naming ``where`` otherwise."""
    try:
        if "list[int]" in kind:
            return [int(v) for v in text.replace(",", " ").split()]
        if "list[float]" in kind:
            return [float(v) for v in text.replace(",", " ").split()]
        if "list[str]" in kind:
            return text.replace(",", " ").split()
        if kind.startswith("bool"):
            low = text.lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError("not a yes/no value")
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith("str"):
            return text
        return json.loads(text)  # dicts (matcher_options, verdict)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: option '{name}' = {text!r} is not a valid {kind} ({exc})") from None


def option_value(name: str, text: str, where: str = "option", types: dict[str, str] | None = None
                 ) -> tuple[str, Any]:
    """One option given as text (a table cell, ``--option NAME=VALUE``) -> ``(field, value)``.

    ``model``, ``device`` and ``keypoints`` become ``("matcher_options", {name: value})``,
    ``no-coarse`` becomes ``("coarse", not value)`` and ``refuse-uncertain`` becomes
    ``("verdict", {"keep_uncertain": not value})``.

    Raises:
        ValueError: An unknown option or a bad value; the message names ``where``, the option and
            the known options.
    """
    types = types if types is not None else _field_types()
    key = _ALIASES.get(name.strip().lower().replace("-", "_"), name.strip().lower().replace("-", "_"))
    text = text.strip()
    if key in _MATCHER_OPTIONS:
        return "matcher_options", {key: text}
    if key == "no_coarse":
        return "coarse", not _parse(name, text, "bool", where)
    if key == "refuse_uncertain":
        return "verdict", {"keep_uncertain": not _parse(name, text, "bool", where)}
    if key not in types:
        known = sorted({*types, *_ALIASES, *_MATCHER_OPTIONS, "no_coarse", "refuse_uncertain"})
        raise ValueError(f"{where}: unknown option '{name}'; known options: {', '.join(known)}")
    return key, _parse(name, text, types[key], where)


def _merge(options: dict[str, Any], key: str, value: Any) -> None:
    if key in ("matcher_options", "verdict") and isinstance(value, dict):
        options[key] = {**dict(options.get(key) or {}), **value}
    else:
        options[key] = value


def _checked_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate ``options`` as CoregOptions (so a bad table fails before any pair runs)."""
    from ..engine import CoregOptions

    try:
        CoregOptions.from_dict(dict(options)).validate()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    return options


def _unique(pairs: list[Pair], where: str) -> list[Pair]:
    seen: dict[str, Pair] = {}
    for p in pairs:
        if p.id in seen:
            raise ValueError(
                f"{where}: two pairs have the id '{p.id}' ({seen[p.id].target} and {p.target}); every pair needs its "
                "own output folder: give an 'id' column with distinct ids"
            )
        seen[p.id] = p
    if not pairs:
        raise ValueError(f"{where}: no pairs")
    return pairs


def pairs_from_csv(table: str | os.PathLike[str], defaults: dict[str, Any] | None = None) -> list[Pair]:
    """The pairs of a CSV table (see the module docstring).

    Args:
        table: CSV file with a header line.
        defaults: Options for every pair; the table's cells override them.

    Raises:
        ValueError: A missing column, an unknown option, a bad value, an empty or duplicate id,
            or no rows; the message names the table, the line and the column.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(table))))
    base = path.parent
    types = _field_types()
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        lower = {h.lower() for h in header}
        missing = {"reference", "target"} - lower
        if missing:
            raise ValueError(f"{path}: the table needs the columns 'reference' and 'target' (header: {header})")
        pairs = []
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue
            where = f"{path} line {line}"
            if not row.get("reference") or not row.get("target"):
                raise ValueError(f"{where}: 'reference' and 'target' must both be given")
            options = dict(defaults or {})
            for name, text in row.items():
                if name in ("reference", "target", "id") or text == "":
                    continue
                _merge(options, *option_value(name, text, where, types))
            reference = Path(os.path.abspath(base / os.path.expanduser(row["reference"])))
            target = Path(os.path.abspath(base / os.path.expanduser(row["target"])))
            pair_id = safe_id(row.get("id") or target.stem)
            pairs.append(Pair(pair_id, str(reference), str(target), _checked_options(options, where)))
    return _unique(pairs, str(path))


def pairs_from_targets(
    reference: str | os.PathLike[str], targets: str | os.PathLike[str], defaults: dict[str, Any] | None = None
) -> list[Pair]:
    """One reference against every target of a folder (raster files) or a glob pattern.

    Args:
        reference: The reference raster of every pair.
        targets: A folder (its files ending in ``.tif``, ``.tiff``, ``.vrt``, ``.jp2``, ``.img``,
            ``.png`` or ``.jpg``, not recursive) or a glob pattern (``s1/**/*.tif``).
        defaults: Options for every pair.

    Raises:
        ValueError: No target found, or two targets with the same file name stem.
    """
    ref = Path(os.path.abspath(os.path.expanduser(os.fspath(reference))))
    spec = os.path.expanduser(os.fspath(targets))
    if Path(spec).is_dir():
        found = [p for p in sorted(Path(spec).iterdir()) if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES]
    else:
        found = [Path(p) for p in sorted(glob.glob(spec, recursive=True)) if Path(p).is_file()]
    found = [Path(os.path.abspath(p)) for p in found if p.resolve() != ref.resolve()]
    if not found:
        raise ValueError(f"no target rasters found in '{spec}' (a folder of .tif/.vrt/... files or a glob pattern)")
    options = _checked_options(dict(defaults or {}), "batch options")
    pairs = [Pair(safe_id(p.stem), str(ref), str(p), dict(options)) for p in found]
    return _unique(pairs, spec)


def load_pairs(pairs: str | os.PathLike[str], reference: str | os.PathLike[str] | None = None,
               defaults: dict[str, Any] | None = None) -> list[Pair]:
    """The pairs of ``sarcoreg batch PAIRS [--reference REF]``.

    Args:
        pairs: A CSV table, or (with ``reference``) a folder or glob pattern of targets.
        reference: The reference raster of every target (the stack case).
        defaults: Options for every pair (the table's cells override them).

    Raises:
        ValueError: see :func:`pairs_from_csv` and :func:`pairs_from_targets`; also a CSV given
            with ``reference`` or a folder given without it.
    """
    spec = os.fspath(pairs)
    if reference is not None:
        return pairs_from_targets(reference, spec, defaults)
    if not Path(spec).is_file():
        raise ValueError(f"'{spec}' is not a CSV table of pairs; for a folder or glob of targets give --reference too")
    return pairs_from_csv(spec, defaults)
