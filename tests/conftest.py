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


RRLNET_TEST_MODEL = "rrlnet-random-test"


@pytest.fixture(scope="session")
def rrlnet_model_folder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A user model folder (``SARCOREG_MODEL_PATH``) holding a random-weight RRL-Net as ONNX + card.

    The real architecture, pruned for inference and exported like a trained model, with non-trivial
    BatchNorm statistics; it exercises the whole model contract without shipping weights.
    """
    import json

    import torch
    from sarcoreg.models.registry import MODEL_PATH_ENV, sha256_of
    from sarcoreg.models.rrlnet import RRLNet, export_onnx

    folder = tmp_path_factory.mktemp("model-folder")
    torch.manual_seed(0)
    net = RRLNet()
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    net = net.eval().prune_for_inference()
    onnx_path = export_onnx(net, folder / f"{RRLNET_TEST_MODEL}.onnx")
    (folder / "cards").mkdir()
    card = {
        "name": RRLNET_TEST_MODEL, "method": "rrlnet", "file": onnx_path.name, "sha256": sha256_of(onnx_path),
        "licence": "test fixture, random weights", "inputs": {"patch_size": 64, "channels": 1},
        "notes": "random weights: for contract tests only",
    }
    (folder / "cards" / f"{RRLNET_TEST_MODEL}.json").write_text(json.dumps(card), encoding="utf-8")
    old = os.environ.get(MODEL_PATH_ENV)
    os.environ[MODEL_PATH_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(MODEL_PATH_ENV, None)
    else:
        os.environ[MODEL_PATH_ENV] = old
