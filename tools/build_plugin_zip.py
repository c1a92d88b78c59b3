"""Build the deployable QGIS plugin zip.

The zip holds ``sarcoreg/`` with the plugin, core, models and training code, without the virtual
environment, tests, benchmarks or data, and without model weights or cards: each model ships as a
model pack (``make models`` builds them into ``dist/models/``; ``sarcoreg models install PACK.zip``
or the Processing algorithm *Install model pack* installs one into the user's model folder).

    python tools/build_plugin_zip.py [--out build/sarcoreg.zip]
"""

from __future__ import annotations

import argparse
import configparser
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ["metadata.txt", "__init__.py", "LICENSE", "README.md"]
DIRS = ["plugin", "core", "models", "training"]
SKIP_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
#: Model weights and cards stay out of the plugin zip (they travel as model packs).
WEIGHT_SUFFIXES = {".onnx", ".pt", ".pth", ".ckpt", ".safetensors", ".bin"}


def _is_model_file(rel: Path) -> bool:
    """Whether ``rel`` is a model weight file or card (left out: models ship as model packs)."""
    if rel.suffix.lower() in WEIGHT_SUFFIXES:
        return True
    return rel.parts[:2] == ("models", "cards")


def plugin_files() -> list[Path]:
    """Every file that goes into the zip, relative to the repository root."""
    out = [Path(f) for f in FILES]
    for d in DIRS:
        for p in sorted((ROOT / d).rglob("*")):
            rel = p.relative_to(ROOT)
            if p.is_file() and not SKIP_PARTS & set(rel.parts) and p.suffix not in SKIP_SUFFIXES \
                    and not _is_model_file(rel):
                out.append(rel)
    return out


def build(out: Path) -> Path:
    """Write the zip to ``out`` (atomically) and return its path."""
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    version = meta["general"]["version"]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in plugin_files():
            zf.write(ROOT / rel, f"sarcoreg/{rel.as_posix()}")
    tmp.replace(out)
    print(f"built {out} (sarcoreg {version}, {len(plugin_files())} files, {out.stat().st_size / 1024:.0f} KiB)")
    return out


def main() -> None:
    """Command-line entry: build the zip where ``--out`` says."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "sarcoreg.zip")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
