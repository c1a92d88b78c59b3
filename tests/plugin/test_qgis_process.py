"""The deployable zip in a fresh QGIS profile, driven by qgis_process (as a user would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.qgis
QGIS_PROCESS = "/usr/bin/qgis_process.bin"


def _build_zip(out: Path) -> Path:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from build_plugin_zip import build
    finally:
        sys.path.pop(0)
    return build(out)


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_zip(tmp_path_factory.mktemp("zip") / "sarcoreg.zip")


def test_zip_holds_the_plugin_and_nothing_else(plugin_zip: Path) -> None:
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert "sarcoreg/metadata.txt" in names and "sarcoreg/__init__.py" in names
    assert "sarcoreg/plugin/provider.py" in names and "sarcoreg/core/worker.py" in names
    assert all(n.startswith("sarcoreg/") for n in names)
    for banned in (".venv/", "tests/", "bench/", "__pycache__", ".git/", "demo-output/"):
        assert not any(banned in n for n in names), banned


def _qgis_env(config: Path, worker_python: str, plugin_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(config), SARCOREG_PYTHON=worker_python)
    env.pop("QGIS_PLUGINPATH", None)
    if plugin_path is not None:
        env["QGIS_PLUGINPATH"] = str(plugin_path)
    return env


def _run(args: list[str], env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_zip_installed_in_a_fresh_profile_runs_under_qgis_process(plugin_zip: Path, tmp_path: Path,
                                                                   worker_python: str) -> None:
    config = tmp_path / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    env = _qgis_env(config, worker_python)

    enabled = _run(["plugins", "enable", "sarcoreg"], env)
    assert enabled.returncode == 0, enabled.stderr + enabled.stdout
    listing = _run(["list"], env)
    assert "sarcoreg:diagnostics" in listing.stdout, listing.stdout[-2000:] + listing.stderr[-2000:]

    out_html = tmp_path / "diag.html"
    run = _run(["run", "sarcoreg:diagnostics", "--json", "--", f"OUTPUT_HTML={out_html}"], env)
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads(run.stdout[run.stdout.index("{"):])
    report = payload["results"]["REPORT"]
    assert "worker python" in report and "onnxruntime" in report and "qgis: 3." in report
    assert out_html.is_file() and "<table>" in out_html.read_text(encoding="utf-8")


def test_development_checkout_through_qgis_pluginpath(tmp_path: Path, worker_python: str) -> None:
    """QGIS_PLUGINPATH pointing at a folder with a `sarcoreg` link to this checkout."""
    plugin_root = tmp_path / "plugins"
    plugin_root.mkdir()
    (plugin_root / "sarcoreg").symlink_to(REPO, target_is_directory=True)
    env = _qgis_env(tmp_path / "qgis-config", worker_python, plugin_root)
    assert _run(["plugins", "enable", "sarcoreg"], env).returncode == 0
    listing = _run(["list"], env)
    assert "sarcoreg:diagnostics" in listing.stdout


def test_zip_without_weights_installs_a_model_pack_under_qgis_process(plugin_zip: Path, tmp_path: Path,
                                                                      worker_python: str) -> None:
    """The light zip has no models; *Install model pack* adds one that the worker then finds by name."""
    from sarcoreg.models.packs import build_pack

    names = zipfile.ZipFile(plugin_zip).namelist()
    assert not [n for n in names if n.endswith(".onnx") or "/models/cards/" in n]
    config = tmp_path / "qgis-config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    env = _qgis_env(config, worker_python)
    env["SARCOREG_MODELS"] = str(tmp_path / "user-models")
    env.pop("SARCOREG_MODEL_PATH", None)
    assert _run(["plugins", "enable", "sarcoreg"], env).returncode == 0
    pack = build_pack("bnn-sar-optical", tmp_path / "packs")

    run = _run(["run", "sarcoreg:installmodelpack", "--json", "--", f"PACK={pack}"], env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout[run.stdout.index("{"):])["results"]
    assert results["STATUS"] == "installed" and results["MODEL_NAME"] == "bnn-sar-optical"
    assert Path(results["MODEL_FOLDER"]) == tmp_path / "user-models" / "bnn-sar-optical"

    run = _run(["run", "sarcoreg:diagnostics", "--json"], env)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout[run.stdout.index("{"):])["results"]["REPORT"]
    assert f"model bnn-sar-optical: loads (user: {tmp_path / 'user-models' / 'bnn-sar-optical'})" in report
    assert "\nmodel shared-v2:" not in report  # the zip's package models/ has no cards
    assert "default model shared-v2: not installed" in report
