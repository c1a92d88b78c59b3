"""Real Sentinel-1 / Sentinel-2 sample pairs that ship inside the ``bigearthnet-common`` wheel.

Six BigEarthNet-MM patches (Apache-2.0): S1 VV/VH (120 x 120, float32 dB) and S2 L2A bands, UTM,
10 m, both on one grid. They are extracted once into a cache folder and used by ``sarcoreg demo``,
the tests and the benchmarks.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BigEarthNetPair", "bigearthnet_pairs", "cache_dir"]


@dataclass(frozen=True)
class BigEarthNetPair:
    """One aligned S1/S2 patch pair.

    Attributes:
        name: The S2 patch name.
        s1: ``{"VV": path, "VH": path}``.
        s2: ``{"B02": path, ...}`` (all 12 L2A bands; B02-B04 and B08 are 10 m).
    """

    name: str
    s1: dict[str, Path]
    s2: dict[str, Path]


def cache_dir() -> Path:
    """``$SARCOREG_CACHE`` or ``~/.cache/sarcoreg``."""
    return Path(os.environ.get("SARCOREG_CACHE") or Path.home() / ".cache" / "sarcoreg")


def _extract(archive: Path, dest: Path) -> Path:
    folder = dest / archive.name.replace(".tar.bz2", "")
    if not folder.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".{folder.name}.partial-{os.getpid()}"
        with tarfile.open(archive, "r:bz2") as tar:
            members = [m for m in tar.getmembers() if m.isdir() or m.isfile()]
            for m in members:  # only plain files and folders, never outside ``tmp``
                if m.name.startswith(("/", "\\")) or ".." in Path(m.name).parts:
                    raise ValueError(f"unsafe path in {archive}: {m.name}")
            tar.extractall(tmp, members=members)
        os.replace(tmp / folder.name, folder)
        tmp.rmdir()
    return folder


def bigearthnet_pairs() -> list[BigEarthNetPair]:
    """The six aligned S1/S2 pairs, extracted into :func:`cache_dir` on first use.

    Raises:
        ModuleNotFoundError: ``bigearthnet-common`` is not installed (``pip install bigearthnet-common``).
    """
    import bigearthnet_common

    pkg = Path(bigearthnet_common.__file__).resolve().parent
    dest = cache_dir() / "bigearthnet-examples"
    s1_root = _extract(pkg / "BigEarthNet-S1-Example.tar.bz2", dest)
    s2_root = _extract(pkg / "BigEarthNet-S2-Example.tar.bz2", dest)
    pairs = []
    for s1_dir in sorted(p for p in s1_root.iterdir() if p.is_dir()):
        meta = json.loads(next(s1_dir.glob("*_labels_metadata.json")).read_text())
        s2_name = meta["corresponding_s2_patch"]
        s2_dir = s2_root / s2_name
        if not s2_dir.is_dir():
            continue
        s1 = {pol: next(s1_dir.glob(f"*_{pol}.tif")) for pol in ("VV", "VH")}
        s2 = {p.stem.rsplit("_", 1)[1]: p for p in sorted(s2_dir.glob("*_B*.tif"))}
        pairs.append(BigEarthNetPair(s2_name, s1, s2))
    return pairs
