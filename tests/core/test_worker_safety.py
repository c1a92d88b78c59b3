"""The worker's import path folder, a SIGKILLed worker, and a learned method without a network (issue 12).

Real worker processes, a real ``kill -9``, a real network namespace without interfaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sarcoreg.core.worker_client import WorkerClient, WorkerCrashed, package_root

from tests.conftest import REPO, shared_data

# -- the worker's import path -----------------------------------------------------------------


def _plugin_folder(tmp_path: Path) -> Path:
    """A plugin folder not named ``sarcoreg`` (as a zip unpacked under another name)."""
    pkg = tmp_path / "sarcoreg-main"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    return pkg


def test_import_path_folder_is_private_stable_and_owned(tmp_path: Path) -> None:
    pkg, cache = _plugin_folder(tmp_path), tmp_path / "cache"
    root = package_root(pkg, cache)
    assert root.is_relative_to(cache / "sarcoreg") and Path(os.readlink(root / "sarcoreg")) == pkg.resolve()
    for folder in (cache / "sarcoreg", cache / "sarcoreg" / "import-path", root):
        st = os.lstat(folder)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid(), folder
    assert package_root(pkg, cache) == root  # the next session reuses it: no new folder per session
    assert len(list((cache / "sarcoreg" / "import-path").iterdir())) == 1
    # A group/world-writable folder of ours is made private again.
    os.chmod(root, 0o777)
    package_root(pkg, cache)
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    # A plugin folder named sarcoreg needs nothing at all.
    named = tmp_path / "plugins" / "sarcoreg"
    named.mkdir(parents=True)
    assert package_root(named, tmp_path / "cache2") == named.parent and not (tmp_path / "cache2").exists()


def test_import_path_folder_is_the_same_in_every_process(tmp_path: Path) -> None:
    """The folder name must not depend on Python's per-process string hash (one folder per session)."""
    code = ("import sys; from pathlib import Path; from sarcoreg.core.worker_client import package_root; "
            "print(package_root(Path(sys.argv[1]), Path(sys.argv[2])))")
    pkg = _plugin_folder(tmp_path)
    seen = {subprocess.run([sys.executable, "-c", code, str(pkg), str(tmp_path / "cache")], capture_output=True,
                           text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2", "3")}
    assert len(seen) == 1


def test_import_path_folder_of_another_owner_or_a_link_is_refused(tmp_path: Path) -> None:
    pkg, cache = _plugin_folder(tmp_path), tmp_path / "cache"
    root = package_root(pkg, cache)
    # A planted link instead of the private folder.
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    shutil.rmtree(root)
    root.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PermissionError, match="not a real folder"):
        package_root(pkg, cache)
    root.unlink()
    if os.getuid() != 0:
        pytest.skip("changing a folder's owner needs root")
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)  # nobody
    with pytest.raises(PermissionError, match="belongs to another user"):
        package_root(pkg, cache)


def test_worker_runs_from_the_private_folder(tmp_path: Path, worker_python: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """This checkout's folder is not called ``sarcoreg``: the worker imports it through the private link."""
    before = set(Path("/tmp").glob("sarcoreg-path-*"))
    cache = tmp_path / "cache"
    client = WorkerClient(python=worker_python, env={"XDG_CACHE_HOME": str(cache)})
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert client.run("selftest", {"seconds": 0.1})["steps"] == 2
    root = package_root()
    monkeypatch.undo()
    if REPO.name != "sarcoreg":
        assert root.is_relative_to(cache / "sarcoreg") and stat.S_IMODE(os.lstat(root).st_mode) == 0o700
    assert set(Path("/tmp").glob("sarcoreg-path-*")) == before


# -- a worker killed with SIGKILL -------------------------------------------------------------


def test_sigkilled_worker_is_reported_as_out_of_memory_with_its_peak(worker_python: str) -> None:
    killed: list[int] = []
    client = WorkerClient(python=worker_python)

    def on_progress(fraction: float, message: str) -> None:
        if not killed and client.pid is not None and fraction > 0.1:
            killed.append(client.pid)
            os.kill(client.pid, signal.SIGKILL)

    client.on_progress = on_progress
    with pytest.raises(WorkerCrashed) as info:
        client.run("selftest", {"seconds": 30})
    message = str(info.value)
    assert killed and "killed by signal 9 (SIGKILL)" in message
    assert "ran out of memory" in message and "at its peak" in message
    assert info.value.signal == 9 and info.value.peak_rss_bytes is not None
    assert info.value.peak_rss_bytes > 5 * 2**20  # a Python process with numpy loaded
    shown = info.value.peak_rss_bytes / 2**20
    assert f"{shown:.0f} MiB" in message or f"{shown / 1024:.1f} GiB" in message


# -- no network -------------------------------------------------------------------------------


def _unshare() -> list[str] | None:
    """A command prefix running a program in a new network namespace without interfaces."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


def test_learned_method_runs_without_any_network(tmp_path: Path) -> None:
    prefix = _unshare()
    if prefix is None:
        pytest.skip("no network namespaces here: 'unshare -n' (root) and 'unshare -rn' (user namespaces) both fail")
    import cv2
    import torch
    from sarcoreg.core.synthetic import write_geotiff
    from sarcoreg.models.bnn import BNN, export_onnx
    from scipy.ndimage import shift as nd_shift

    # A BNN with identical towers (an exact matcher on an optical pair), exported to ONNX: the
    # learned method runs in ONNX Runtime, whose telemetry must not need (or try) the network.
    torch.manual_seed(0)
    net = BNN("vgg11", patch_size=32)
    with torch.no_grad():
        net.sar_tower.head.weight.mul_(300.0)
    net.opt_tower.load_state_dict(net.sar_tower.state_dict())
    model = export_onnx(net.eval(), tmp_path / "twin.onnx")
    img = cv2.imread(str(shared_data("vis-nir", "registration", "country", "0003_rgb.jpg")), cv2.IMREAD_GRAYSCALE)
    img = img[100:292, 200:392].astype(np.float32)
    ref = write_geotiff(tmp_path / "ref.tif", img.astype(np.uint16))
    tgt = write_geotiff(tmp_path / "tgt.tif", nd_shift(img, (-1.6, 2.3), order=3, mode="nearest").astype(np.float32))
    probe = ("import socket, sys\ns = socket.socket()\ns.settimeout(2)\n"
             "try:\n    s.connect(('1.1.1.1', 443))\nexcept OSError:\n    sys.exit(0)\nsys.exit(1)\n")
    isolated = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, text=True)
    assert isolated.returncode == 0, "the namespace still reaches the network"
    cmd = [*prefix, sys.executable, "-m", "sarcoreg.core.cli", "coregister", str(ref), str(tgt), "--out",
           str(tmp_path / "out"), "--method", "bnn", "--model", str(model), "--transform", "shift", "--spacing", "48",
           "--window", "64", "--radius", "6", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "onnxruntime" in done.stdout and (tmp_path / "out" / "coregistered.tif").is_file()
