"""Shared fixtures: repository paths, the real data folder, and the registered provider."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def shared_data(*parts: str) -> Path:
    """Path into ../shared/data (real imagery, read-only); skips nothing: a missing file fails."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"real test data not found: {path} (the shared data folder must sit beside the repo)")
    return path


@pytest.fixture(scope="session")
def worker_python() -> str:
    """The interpreter the worker runs with in tests: the project's venv."""
    return str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))


@pytest.fixture(scope="session")
def sarcoreg_provider(qgis_processing: None, worker_python: str):  # type: ignore[no-untyped-def]
    """The sarcoreg Processing provider, registered once per session in the real QGIS."""
    from qgis.core import QgsApplication

    os.environ.setdefault("SARCOREG_PYTHON", worker_python)
    from sarcoreg.plugin.provider import SarcoregProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("sarcoreg")
    if provider is None:
        provider = SarcoregProvider()
        assert registry.addProvider(provider)
    yield provider
