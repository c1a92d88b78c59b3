"""The wheel built from the repository holds every package and imports from itself.

The repository root is the package ``sarcoreg`` (``package-dir = {"sarcoreg" = "."}``) and
``setup.py`` discovers its subpackages. A package missing from the wheel (``sarcoreg.core.estimation``
once was, when they were listed by hand) is hidden by the editable install of ``setup.sh``, so the
test builds a real wheel from a copy of the sources, installs it into a fresh virtual environment
(system site packages, plus the project environment's third-party packages without its editable
``sarcoreg``) and imports every subpackage there, checking that each comes from the wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Top-level folders that are not part of the distribution (setup.py's NOT_SHIPPED, and tool folders).
SKIP = {"tests", "bench", "tools", "build", "dist", "docs", "checkpoints"}


def _packages_on_disk() -> set[str]:
    found = {"sarcoreg"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if not rel.parts or rel.parts[0] in SKIP or any(p.startswith(".") or "." in p for p in rel.parts):
            continue
        found.add(".".join(("sarcoreg", *rel.parts)))
    return found


def _copy_sources(dest: Path) -> Path:
    """The files a build reads, copied, so the build leaves no build/ or egg-info in the checkout."""
    ignore = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "*.pyc", *SKIP)
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def test_setup_discovers_every_package() -> None:
    spec = importlib.util.spec_from_file_location("sarcoreg_setup_py", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)  # setup() itself runs only when setup.py is the main script
    assert set(setup_py.discovered_packages(str(ROOT))) == _packages_on_disk()
    assert "sarcoreg.core.estimation" in setup_py.discovered_packages(str(ROOT))


def test_the_wheel_imports_every_package_from_itself(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(dist), str(src)], check=True, cwd=tmp_path, timeout=600)
    (wheel,) = dist.glob("sarcoreg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = _packages_on_disk()
    missing = sorted(p for p in packages if p.replace(".", "/") + "/__init__.py" not in names)
    assert not missing, f"packages missing from the wheel: {missing}"
    assert "sarcoreg/setup.py" not in names
    assert {"sarcoreg/metadata.txt", "sarcoreg/models/cards/shared-v2.json"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # numpy, cv2 ... of the project environment, as a plain path: its .pth files (the editable
    # sarcoreg of setup.sh) are not run, so `sarcoreg` can only come from the wheel.
    (site / "project-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    code = (
        "import importlib, json, sys\n"
        f"names = {sorted(packages)!r}\n"
        "files = {n: importlib.import_module(n).__file__ for n in names}\n"
        "print(json.dumps({'files': files, 'finders': [type(f).__name__ for f in sys.meta_path]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**env, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    outside = {n: f for n, f in out["files"].items() if not Path(f).resolve().is_relative_to(site.resolve())}
    assert not outside, f"imported from outside the wheel: {outside}"
    assert not any("editable" in f.lower() for f in out["finders"]), out["finders"]


def test_the_plugin_zip_is_light_and_holds_no_weights(tmp_path: Path) -> None:
    """``make zip``: the plugin, core, models code and training code; weights and cards ship as model packs."""
    spec = importlib.util.spec_from_file_location("sarcoreg_build_zip", ROOT / "tools" / "build_plugin_zip.py")
    assert spec is not None and spec.loader is not None
    build_zip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_zip)
    out = build_zip.build(tmp_path / "sarcoreg.zip")
    names = zipfile.ZipFile(out).namelist()
    weights = [n for n in names if n.endswith((".onnx", ".pt", ".pth")) or n.startswith("sarcoreg/models/cards/")]
    assert not weights, f"model files in the plugin zip: {weights}"
    assert {"sarcoreg/metadata.txt", "sarcoreg/models/packs.py", "sarcoreg/models/card.py",
            "sarcoreg/plugin/algorithms/install_model_pack.py"} <= set(names)
    assert out.stat().st_size < 3 * 2**20, f"plugin zip {out.stat().st_size / 2**20:.1f} MiB"
