"""Where a batch keeps its files, and the clean-up of pairs that did not finish.

Standard library only: the QGIS plugin imports this module (to clean up after a cancelled batch)
without Dask, numpy or GDAL.

Layout of a batch output folder ``DIR``::

    DIR/<id>/                    the engine's output set of pair <id> (written whole or not at all)
    DIR/.sarcoreg-batch/<id>.json  the pair's summary row and the fingerprint of its inputs
    DIR/summary.csv              one row per pair
    DIR/summary.gpkg             the same rows with the target footprints, styled by status
    DIR/summary.qml              the style (also stored in the GeoPackage's layer_styles table)
    DIR/summary.html             counts by status, a map of the footprints, the worst pairs
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..output_set import LOCK_NAME, MANIFEST_NAME, STAGING_PREFIX

__all__ = [
    "RECORDS_DIR",
    "SUMMARY_FILES",
    "pair_folder",
    "read_record",
    "record_path",
    "remove_unfinished",
    "safe_id",
    "write_json_atomic",
    "write_record",
]

#: Hidden folder of the per-pair records (summary row + input fingerprint).
RECORDS_DIR = ".sarcoreg-batch"
#: The summary files a batch writes into its output folder.
SUMMARY_FILES: tuple[str, ...] = ("summary.csv", "summary.gpkg", "summary.qml", "summary.html")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def safe_id(text: str) -> str:
    """``text`` as a pair id usable as a folder name: letters, digits, ``.``, ``_`` and ``-``.

    Raises:
        ValueError: Nothing usable is left (the message names the text).
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    if not cleaned:
        raise ValueError(f"pair id {text!r} has no letter or digit; give ids of letters, digits, '.', '_' or '-'")
    return cleaned


def pair_folder(out_dir: str | os.PathLike[str], pair_id: str) -> Path:
    """The output folder of one pair: ``<out_dir>/<pair_id>``."""
    return Path(out_dir) / pair_id


def record_path(out_dir: str | os.PathLike[str], pair_id: str) -> Path:
    """The record file of one pair: ``<out_dir>/.sarcoreg-batch/<pair_id>.json``."""
    return Path(out_dir) / RECORDS_DIR / f"{pair_id}.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON into ``path`` through a hidden temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.partial"
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_record(out_dir: str | os.PathLike[str], row: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Store a finished pair's row and the fingerprint of its inputs (atomic)."""
    write_json_atomic(record_path(out_dir, str(row["id"])), {"fingerprint": fingerprint, "row": row})


def read_record(out_dir: str | os.PathLike[str], pair_id: str) -> dict[str, Any] | None:
    """The record of a pair (``{"fingerprint": ..., "row": ...}``), or None when there is none."""
    try:
        data = json.loads(record_path(out_dir, pair_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("row"), dict) else None


def _lock_is_free(lock: Path) -> bool:
    """Whether no live process holds the engine's lock file ``lock``."""
    if fcntl is None:  # pragma: no cover - Windows: trust that the batch's workers are gone
        return True
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases a lock we took
    return True


def remove_unfinished(out_dir: str | os.PathLike[str], pair_ids: list[str] | None = None) -> list[str]:
    """Remove what unfinished pair runs left in their folders; a folder left empty is removed.

    A pair run that was stopped (Ctrl-C, cancel, a killed worker) leaves a hidden staging folder
    and the lock file in its pair folder, never a partial set (the engine moves a set in only
    when it is whole). This removes them, and the pair folder too when nothing else is in it; a
    complete earlier set in the folder stays. A folder whose lock a live process still holds
    (a task still running on a worker) is left alone, and so is a staging folder that holds a
    manifest (a set interrupted while it was moved in: the engine's next run into the folder
    completes it).

    Args:
        out_dir: The batch output folder.
        pair_ids: The pairs to clean (None: every sub-folder of ``out_dir``).

    Returns:
        The ids of the pair folders that were cleaned or removed.
    """
    root = Path(out_dir)
    if pair_ids is None:
        children = list(root.iterdir()) if root.is_dir() else []
        pair_ids = [p.name for p in children if p.is_dir() and not p.name.startswith(".")]
    cleaned = []
    for pair_id in pair_ids:
        folder = pair_folder(root, pair_id)
        if not folder.is_dir() or not _lock_is_free(folder / LOCK_NAME):
            continue
        touched = False
        for staging in folder.glob(STAGING_PREFIX + "*"):
            if staging.is_dir() and not (staging / MANIFEST_NAME).exists():
                shutil.rmtree(staging, ignore_errors=True)
                touched = True
        for partial in folder.glob(".*.partial*"):
            with contextlib.suppress(OSError):
                partial.unlink()
            touched = True
        if (folder / LOCK_NAME).exists():
            with contextlib.suppress(OSError):
                (folder / LOCK_NAME).unlink()
                touched = True
        if not any(folder.iterdir()):
            with contextlib.suppress(OSError):
                folder.rmdir()
                touched = True
        if touched:
            cleaned.append(pair_id)
    return cleaned
