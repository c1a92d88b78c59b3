"""Atomic file writing: a cancelled or crashed run never leaves a half-written output.

Every writer of :mod:`sarcoreg.core.exports` writes into a hidden temporary file next to the
final path and renames it onto the final path only once the file is complete and closed
(``os.replace``, atomic on POSIX and Windows within one folder). On an exception the temporary
file (and any side files a driver left beside it, such as SQLite journals) is removed and the
exception propagates; an older file at the final path stays untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


def _temp_path_for(final: Path) -> Path:
    """A unique hidden name next to ``final`` that keeps its extension.

    Keeping the extension matters for GDAL drivers that check it (GeoPackage warns
    otherwise), e.g. ``out.gpkg`` -> ``.out.gpkg.1a2b3c4d.partial.gpkg``.
    """
    token = secrets.token_hex(4)
    return final.with_name(f".{final.name}.{token}.partial{final.suffix}")


def _remove_temp_files(tmp: Path) -> None:
    """Remove ``tmp`` and side files that start with its (unique) name."""
    for leftover in tmp.parent.glob(tmp.name + "*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``final`` when the block succeeds.

    The temporary file lies in the same folder as ``final`` (so the rename is atomic), its
    name starts with ``"."`` and contains ``".partial"``. The block must create the file and
    close it (GDAL datasets: drop the last reference) before leaving.

    Args:
        final: Path the finished file must end up at. Its folder must exist.

    Yields:
        The temporary path to write to. It does not exist yet.

    Raises:
        FileNotFoundError: If the folder of ``final`` does not exist, or the block finished
            without creating the temporary file.
    """
    final = Path(final)
    if not final.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {final}: the folder {final.parent} does not exist; create it first"
        )
    tmp = _temp_path_for(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(
                f"the writer for {final} finished without creating its temporary file {tmp}"
            )
        os.replace(tmp, final)
    except BaseException:
        _remove_temp_files(tmp)
        raise
    # Drivers may leave side files (e.g. a PAM .aux.xml) next to the temporary name.
    _remove_temp_files(tmp)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, line endings exactly as given (no translation).

    Args:
        path: Destination file.
        text: Full file content.
        encoding: Text encoding.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as fh:
        fh.write(text)
