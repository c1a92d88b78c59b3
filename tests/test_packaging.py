"""The package list in pyproject.toml names every Python package of the repository.

The repository root is the package ``sarcoreg`` (``package-dir = {"sarcoreg": "."}``), so
setuptools cannot discover the subpackages by itself; a folder missing from the list builds a
wheel that cannot import it (``sarcoreg.core.estimation`` once was), which the editable install
of ``setup.sh`` hides.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "tests", "bench", "tools", "build", "dist", "docs", ".git"}


def _packages_on_disk() -> set[str]:
    found = {"sarcoreg"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if not rel.parts or rel.parts[0] in SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        found.add(".".join(("sarcoreg", *rel.parts)))
    return found


def test_every_package_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = _packages_on_disk()
    assert on_disk - listed == set(), f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"
    assert listed - on_disk == set(), f"pyproject.toml lists packages that do not exist: {sorted(listed - on_disk)}"
