"""Package discovery for ``sarcoreg``, whose package folder is the repository root.

``pyproject.toml`` holds everything else. setuptools' own discovery cannot put the prefix
``sarcoreg.`` before the folders it finds under the root (``package-dir = {"sarcoreg" = "."}``),
so the subpackages are found here: every folder with an ``__init__.py`` below the root, except the
ones that are not part of the distribution (:data:`NOT_SHIPPED`). A new subpackage is thus never
left out of the wheel (``sarcoreg.core.estimation`` once was, when the list was written by hand).
"""

from __future__ import annotations

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

#: Top-level folders of the repository that are not part of the installed package.
NOT_SHIPPED = ("tests", "bench", "tools", "docs", "build", "dist", "checkpoints")


def discovered_packages(root: str = ".") -> list[str]:
    """``sarcoreg`` and every package below the repository root ``root``, prefixed with ``sarcoreg.``."""
    exclude = [pattern for name in NOT_SHIPPED for pattern in (name, f"{name}.*")]
    return ["sarcoreg", *sorted(f"sarcoreg.{name}" for name in find_packages(where=root, exclude=exclude))]


class BuildPy(build_py):
    """``build_py`` that leaves this file out: it sits in the package folder but is no module of it."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        """The modules of ``package``, without ``sarcoreg.setup``."""
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "sarcoreg" and m[1] == "setup")]


if __name__ == "__main__":
    setup(packages=discovered_packages(), cmdclass={"build_py": BuildPy})
