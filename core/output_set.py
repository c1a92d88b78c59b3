"""Output folders: never over an input, one run at a time, a whole output set or none.

A run that writes a set of files into a folder (the engine's ``coregistered.tif``,
``tiepoints.gpkg``, ``report.json`` ...) goes through :class:`OutputSet`:

1. Before any work, :func:`refuse_input_overwrite` refuses output paths that resolve to an input
   (symlinks resolved, hard links compared by inode) and :meth:`OutputSet.open` checks that the
   folder can be written ("permission denied" in words, found before the matching starts).
2. :meth:`OutputSet.open` takes an exclusive lock (``fcntl.flock`` on ``<out>/.sarcoreg.lock``):
   a second run into the same folder is refused at once, naming the running one; the two never
   interleave.
3. With the lock held it cleans what killed runs left: hidden ``.<name>.*.partial*`` temporary
   files and staging folders. A staging folder whose manifest is in place belongs to a run that
   was killed while moving its finished set in: its move is completed (rolled forward), so the
   folder holds that whole set. Any other staging folder is removed.
4. The files are written into a hidden staging folder inside the output folder
   (``<out>/.sarcoreg-staging-<pid>-<random>/``, same file system, so moves are renames).
5. :meth:`OutputSet.commit` writes the manifest (``.sarcoreg-set.json``: file names and sizes)
   into the staging folder, then removes the manifest of the previous set, removes every file of
   the previous set that the new set does not have (and their ``.aux.xml`` side files), renames
   the new files into place and renames the manifest in last. A folder whose manifest is missing
   or does not match its files holds no complete set (:func:`read_output_set` says so).
6. A run that fails or is cancelled (an exception, or SIGTERM while the set is open) removes its
   staging folder: the previous set stays as it was. A run that produced no file (e.g. a failed
   verdict) leaves the previous set untouched too.

Replace policy: a run into a folder that already holds a set replaces the whole set, and logs so
(Processing users re-run into the same folder all the time).

Only the standard library is used: the QGIS plugin imports this module too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .output_formats import OUTPUT_NAMES  # the built-in set's files (key -> name), re-exported

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "OUTPUT_NAMES",
    "STAGING_PREFIX",
    "InputOverwriteError",
    "OutputFolderError",
    "OutputSet",
    "final_folder",
    "read_output_set",
    "refuse_input_overwrite",
    "same_file",
]

try:
    import fcntl
except ImportError:  # Windows: msvcrt byte-range locks instead
    fcntl = None  # type: ignore[assignment]
    import msvcrt

log = logging.getLogger("sarcoreg.output_set")

#: Lock file inside the output folder (removed when the run ends).
LOCK_NAME = ".sarcoreg.lock"
#: Manifest of the complete set, written last.
MANIFEST_NAME = ".sarcoreg-set.json"
#: Name prefix of staging folders inside the output folder.
STAGING_PREFIX = ".sarcoreg-staging-"
_MANIFEST_FORMAT = 1


class OutputFolderError(OSError):
    """The output folder cannot be used (not writable, a file, or busy); the message says why and what to do."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputOverwriteError(ValueError):
    """An output path resolves to an input; the message names both."""


# ----------------------------------------------------------------------------- inputs vs outputs
def _file_part(path: str | os.PathLike[str]) -> str:
    """The file of a GDAL / OGR / QGIS source string (``a.gpkg|layername=x`` -> ``a.gpkg``)."""
    text = os.fspath(path)
    return text.split("|", 1)[0].strip()


def _is_local(path: str) -> bool:
    """A plain file name (not a URL, ``/vsi...`` or ``DRIVER:...`` / ``memory:`` name)."""
    return bool(path) and "://" not in path and not path.startswith("/vsi") and not re.match(r"[A-Za-z]{2,}:", path)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file or folder.

    Symlinks are resolved (real paths compared); when both exist their inodes are compared too,
    so hard links count as the same file. Non-local names (``/vsi...``, URLs) compare as text.

    Args:
        a: A path (a ``|layername=...`` suffix is ignored).
        b: Another path.

    Returns:
        True when writing ``a`` would write ``b``.
    """
    pa, pb = _file_part(a), _file_part(b)
    if not pa or not pb:
        return False
    if not (_is_local(pa) and _is_local(pb)):
        return os.path.normpath(pa) == os.path.normpath(pb)
    ra, rb = os.path.realpath(os.path.expanduser(pa)), os.path.realpath(os.path.expanduser(pb))
    if ra == rb:
        return True
    try:
        return os.path.samefile(ra, rb)
    except OSError:
        return False


def refuse_input_overwrite(
    outputs: Iterable[tuple[str, str | os.PathLike[str]]], inputs: Iterable[tuple[str, str | os.PathLike[str]]]
) -> None:
    """Refuse any output path that resolves to an input.

    Args:
        outputs: ``(label, path)`` of every file or folder the run would write (for an output
            folder: the folder and each file it would get).
        inputs: ``(label, path)`` of every input file or folder.

    Raises:
        InputOverwriteError: The first clash, naming both.
    """
    ins = [(label, path) for label, path in inputs if path]
    for out_label, out_path in outputs:
        if not out_path:
            continue
        for in_label, in_path in ins:
            if same_file(out_path, in_path):
                raise InputOverwriteError(
                    f"{out_label} '{os.fspath(out_path)}' is the {in_label} '{os.fspath(in_path)}': sarcoreg never "
                    "overwrites its inputs. Choose another output path."
                )


# ----------------------------------------------------------------------------- folder checks
def _denied(path: Path, exc: OSError) -> OutputFolderError:
    why = {errno.EROFS: "read-only file system"}.get(exc.errno or 0, exc.strerror or "not allowed")
    return OutputFolderError(
        f"cannot write into the output folder '{path}': permission denied ({why}). Choose a folder you can "
        "write to, or change its permissions."
    )


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` (and parents); True when this call created it.

    Raises:
        OutputFolderError: It is a file, or cannot be created (permission denied in words).
    """
    if folder.is_dir():
        return False
    if folder.exists() or any(p.exists() and not p.is_dir() for p in folder.parents):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise OutputFolderError(
            f"cannot use '{folder}' as the output folder: '{blocker}' is a file, not a folder. Choose a folder."
        )
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return False
    except OSError as exc:
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise _denied(folder, exc) from None
        raise OutputFolderError(f"cannot create the output folder '{folder}': {exc.strerror or exc}") from None
    return True


# ----------------------------------------------------------------------------- the set
def final_folder(folder: str | os.PathLike[str]) -> Path:
    """The output folder a (staging) folder's files end up in: its parent for a staging folder."""
    p = Path(folder)
    return p.parent if p.name.startswith(STAGING_PREFIX) else p


def read_output_set(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of the complete set in ``folder``, or None when it holds no complete set.

    A set is complete when its manifest exists and every file it lists exists with its size.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for name, size in files.items():
        f = Path(folder) / name
        if not f.is_file() or f.stat().st_size != int(size):
            return None
    return dict(manifest)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _finish_commit(folder: Path, staging: Path, names: Sequence[str]) -> list[str]:
    """Move the staged set (its manifest already in ``staging``) into ``folder``; idempotent.

    Returns:
        The files of the previous set that were removed or replaced.
    """
    manifest = json.loads((staging / MANIFEST_NAME).read_text(encoding="utf-8"))
    new = list(manifest["files"])
    replaced = [n for n in names if (folder / n).exists()]
    _remove(folder / MANIFEST_NAME)  # from here until the last rename the folder holds no complete set
    for name in names:
        if name not in new:
            _remove(folder / name)
        _remove(folder / f"{name}.aux.xml")  # statistics of an older file must not describe a new one
    for name in new:
        if (staging / name).exists():
            os.replace(staging / name, folder / name)
    os.replace(staging / MANIFEST_NAME, folder / MANIFEST_NAME)
    shutil.rmtree(staging, ignore_errors=True)
    return replaced


def _clean_leftovers(folder: Path, names: Sequence[str]) -> None:
    """Complete interrupted commits and remove staging folders and partial files of killed runs."""
    for staging in sorted(folder.glob(STAGING_PREFIX + "*")):
        if staging.is_dir() and (staging / MANIFEST_NAME).is_file():
            log.warning("completing the output set that an interrupted run left in %s", staging)
            _finish_commit(folder, staging, names)
        else:
            log.info("removing %s, left by an earlier run that did not finish", staging)
            _remove(staging)
    for name in names:
        for partial in folder.glob(f".{name}.*.partial*"):
            log.info("removing %s, left by an earlier run that did not finish", partial)
            _remove(partial)


def _try_lock(fd: int) -> None:
    """Exclusive, non-blocking lock of an open file (released when it is closed or the process ends).

    Raises:
        OSError: Another process holds it.
    """
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


class OutputSet:
    """A locked output folder that receives one whole set of files (see the module docstring).

    Use as a context manager::

        with OutputSet(out_dir, OUTPUT_NAMES.values()) as out:
            write files into out.staging ...
            final_paths = out.commit({"report_json": out.staging / "report.json", ...})

    Args:
        folder: The output folder (created when missing).
        names: Every file name a set in this folder may hold; files of these names that are not
            part of a new set are removed when it is committed.
        info: Extra facts stored in the manifest (e.g. the inputs).
    """

    def __init__(self, folder: str | os.PathLike[str], names: Iterable[str], info: dict[str, Any] | None = None
                 ) -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.names = list(names)
        self.info = dict(info or {})
        self.staging = self.folder / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.committed: dict[str, Path] | None = None
        self._created = False
        self._lock_fd: int | None = None
        self._old_sigterm: Any = None

    # -- lock
    def _lock(self) -> None:
        path = self.folder / LOCK_NAME
        for _ in range(20):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise _denied(self.folder, exc) from None
                raise OutputFolderError(f"cannot create '{path}': {exc.strerror or exc}") from None
            try:
                _try_lock(fd)
            except OSError:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise OutputFolderError(
                    f"another sarcoreg run (process {holder}) is writing into '{self.folder}'; wait for it to "
                    "finish or choose another output folder."
                ) from None
            # The previous holder may have removed the lock file between our open and flock.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                self._lock_fd = fd
                return
            os.close(fd)
            time.sleep(0.01)
        raise OutputFolderError(f"could not lock '{path}': it keeps being replaced by another process")

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.folder / LOCK_NAME)
        os.close(self._lock_fd)
        self._lock_fd = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through __exit__: the staging folder is removed

    # -- life cycle
    def open(self) -> OutputSet:
        """Create and check the folder, lock it, clean leftovers of killed runs, make the staging folder.

        Raises:
            OutputFolderError: The folder is a file, is not writable, or another run holds it.
        """
        self._created = _make_folder(self.folder)
        try:
            self._lock()
            _clean_leftovers(self.folder, self.names)
            old = read_output_set(self.folder)
            if old is not None or any((self.folder / n).exists() for n in self.names):
                log.info("%s holds an earlier output set; this run replaces the whole set when it succeeds",
                         self.folder)
            self.staging.mkdir()
        except BaseException:
            self.close()
            raise
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def commit(self, written: dict[str, Path]) -> dict[str, Path]:
        """Move the staged files in as the new set; returns key -> final path.

        Args:
            written: Key -> path in :attr:`staging` of every file of the new set. Empty: nothing
                is changed (the previous set, if any, stays).

        Raises:
            OutputFolderError: A file is not in the staging folder or has a name not in ``names``.
        """
        if self._lock_fd is None:
            raise OutputFolderError(f"the output set in '{self.folder}' is not open")
        if not written:
            log.info("no output written: %s is left as it was", self.folder)
            self.committed = {}
            return {}
        files: dict[str, int] = {}
        for key, path in written.items():
            p = Path(path)
            if p.parent != self.staging or p.name not in self.names or not p.is_file():
                raise OutputFolderError(f"output '{key}' ({p}) is not a staged file of this set")
            files[p.name] = p.stat().st_size
        manifest = {"format": _MANIFEST_FORMAT, "files": files, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "pid": os.getpid(), **self.info}
        tmp = self.staging / f".{MANIFEST_NAME}.partial"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.staging / MANIFEST_NAME)
        replaced = _finish_commit(self.folder, self.staging, self.names)
        if replaced:
            dropped = sorted(set(replaced) - set(files))
            log.warning("replaced the previous output set in %s%s", self.folder,
                        f" (removed its {', '.join(dropped)}: not part of the new set)" if dropped else "")
        self.committed = {key: self.folder / Path(path).name for key, path in written.items()}
        return dict(self.committed)

    def close(self) -> None:
        """Remove the staging folder (if not committed) and release the lock; idempotent."""
        if self._old_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)
        self._unlock()
        if self._created and self.folder.is_dir() and not any(self.folder.iterdir()):
            with contextlib.suppress(OSError):
                self.folder.rmdir()
            self._created = False

    def __enter__(self) -> OutputSet:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
                 ) -> None:
        self.close()
