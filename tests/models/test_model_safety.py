"""Model files never run code, bad model files are named, ONNX Runtime telemetry is off (issue 12).

Real files only: a real pickle payload, the shipped ONNX graphs (copied and damaged), real
cards in a real model folder, the real CLI in a subprocess and the real worker process.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sarcoreg.models import load
from sarcoreg.models.registry import MODEL_PATH_ENV, MODELS_DIR, find_card, list_models, scan_cards
from sarcoreg.models.safe_load import (
    ModelFileError,
    NotPlainWeightsError,
    load_torch_weights,
    onnx_session,
    ort_telemetry_status,
    plain_data,
)

from tests.conftest import REPO


class _Payload:
    """Unpickling this creates ``marker`` (what a hostile ``.pt`` would do with a shell command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.marker, "w"))


def _evil_pt(folder: Path, marker: Path) -> Path:
    """A ``.pt`` file that looks like a checkpoint but holds the payload beside real tensors."""
    path = folder / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    return path


def _pair(folder: Path, size: int = 192) -> tuple[Path, Path]:
    """A small real optical pair (EPFL 'country' scene and the same scene shifted), GeoTIFFs."""
    import cv2
    from sarcoreg.core.synthetic import write_geotiff
    from scipy.ndimage import shift as nd_shift

    from tests.conftest import shared_data

    img = cv2.imread(str(shared_data("vis-nir", "registration", "country", "0003_rgb.jpg")), cv2.IMREAD_GRAYSCALE)
    img = img[100:100 + size, 200:200 + size].astype(np.float32)
    moved = nd_shift(img, (-1.6, 2.3), order=3, mode="nearest")
    folder.mkdir(parents=True, exist_ok=True)
    return (write_geotiff(folder / "ref.tif", img.astype(np.uint16)),
            write_geotiff(folder / "tgt.tif", moved.astype(np.float32)))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "sarcoreg.core.cli", *args], capture_output=True, text=True,
                          timeout=300, env=full_env, cwd=REPO)


def _coregister(ref: Path, tgt: Path, out: Path, method: str, model: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _cli("coregister", str(ref), str(tgt), "--out", str(out), "--method", method, "--model", model,
                "--transform", "shift", "--spacing", "64", "--window", "64", "--radius", "4", env=env)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _pair(tmp_path_factory.mktemp("pair"))


# -- 1. model files never run code ------------------------------------------------------------


def test_payload_really_runs_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    """The fixture is a real attack: a plain pickle load creates the marker."""
    marker = tmp_path / "MARKER"
    payload = pickle.dumps(_Payload(marker))
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("method", ["bnn", "aae", "rrlnet"])
def test_pickle_payload_through_the_cli_never_runs(pair: tuple[Path, Path], tmp_path: Path, method: str) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_pt(tmp_path, marker)
    done = _coregister(*pair, tmp_path / "out", method, str(evil))
    assert not marker.exists(), "the model file ran code"
    assert done.returncode == 2, done.stderr
    assert "evil.pt" in done.stderr and "is not a plain weights file" in done.stderr
    assert "Traceback" not in done.stderr


def test_pickle_payload_named_by_a_card_never_runs(pair: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "MARKER"
    folder = tmp_path / "models"
    folder.mkdir()
    evil = _evil_pt(folder, marker)
    (folder / "cards").mkdir()
    card = {"name": "evil-card", "method": "bnn", "file": evil.name, "sha256": "", "licence": "none",
            "inputs": {"patch_size": 64}}
    (folder / "cards" / "evil-card.json").write_text(json.dumps(card), encoding="utf-8")
    done = _coregister(*pair, tmp_path / "out", "bnn", "evil-card", env={MODEL_PATH_ENV: str(folder)})
    assert not marker.exists()
    assert done.returncode == 2 and "is not a plain weights file" in done.stderr and "evil.pt" in done.stderr
    assert "Traceback" not in done.stderr
    # The loaders the Processing algorithms use (through the worker) refuse it the same way.
    monkeypatch.setenv(MODEL_PATH_ENV, str(folder))
    with pytest.raises(NotPlainWeightsError, match=r"evil\.pt is not a plain weights file"):
        load("evil-card")
    monkeypatch.undo()
    from sarcoreg.models.descriptor_model import load_descriptor_model
    from sarcoreg.models.shared_modality import load_shared_model

    with pytest.raises(NotPlainWeightsError, match="evil.pt"):
        load_descriptor_model(evil)
    with pytest.raises(NotPlainWeightsError, match="evil.pt"):
        load_shared_model(evil)
    assert not marker.exists()


def test_pickle_payload_through_the_worker_never_runs(pair: tuple[Path, Path], tmp_path: Path,
                                                      worker_python: str) -> None:
    """The path of the Processing algorithms: a coregister job in the real worker process."""
    from sarcoreg.core.worker_client import WorkerClient, WorkerError

    marker = tmp_path / "MARKER"
    evil = _evil_pt(tmp_path, marker)
    params = {"reference": str(pair[0]), "target": str(pair[1]), "out_dir": str(tmp_path / "w"),
              "options": {"method": "bnn", "transform": "shift", "spacing": 64, "window": 64, "search_radius": 4,
                          "matcher_options": {"model": str(evil)}}}
    with pytest.raises(WorkerError, match=r"evil\.pt is not a plain weights file"):
        WorkerClient(python=worker_python).run("coregister", params)
    assert not marker.exists()


def test_checkpoints_hold_plain_data_only(tmp_path: Path) -> None:
    """What training stores beside tensors (metrics, config, random state) loads weights-only."""
    rng = np.random.default_rng(0)
    extra = {"metrics": {"auc": np.float64(0.9), "n": np.int64(3)}, "config": {"out": tmp_path, "sizes": (1, 2)},
             "rng": rng.bit_generator.state, "arr": np.arange(3)}
    torch.save({"model": {"w": torch.ones(2)}, **plain_data(extra)}, tmp_path / "ck.pt")
    back = load_torch_weights(tmp_path / "ck.pt")
    assert back["metrics"] == {"auc": 0.9, "n": 3} and back["config"]["out"] == str(tmp_path)
    assert back["arr"] == [0, 1, 2]
    rng.bit_generator.state = back["rng"]
    with pytest.raises(TypeError):
        plain_data({"x": _Payload(tmp_path / "m")})


def test_no_torch_load_without_weights_only() -> None:
    """Every torch.load in the project's own code reads weights only."""
    offenders = []
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts or "site-packages" in path.parts:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line and "``" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{i}")
            if "weights_only=False" in line and path.name != "test_model_safety.py":
                offenders.append(f"{path.relative_to(REPO)}:{i}")
    assert not offenders, offenders


# -- 2. bad model files are named -------------------------------------------------------------


@pytest.mark.parametrize("content, expect", [(b"", "is empty (0 bytes)"),
                                             (b"this is not a graph\n" * 10, "not an ONNX graph")])
def test_empty_or_invalid_onnx_is_named_without_traceback(pair: tuple[Path, Path], tmp_path: Path,
                                                          content: bytes, expect: str) -> None:
    bad = tmp_path / "broken-model.onnx"
    bad.write_bytes(content)
    done = _coregister(*pair, tmp_path / "out", "bnn", str(bad))
    assert done.returncode == 2, done.stderr
    assert "broken-model.onnx" in done.stderr and expect in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") <= 3, done.stderr


def test_damaged_weights_are_named_when_the_model_is_loaded(tmp_path: Path) -> None:
    """A copy of the shipped BNN with a block of its weights overwritten (NaN), no checksum."""
    data = bytearray((MODELS_DIR / "bnn-sar-optical.onnx").read_bytes())
    start = len(data) // 3
    data[start:start + 200_000] = b"\xff" * 200_000
    damaged = tmp_path / "damaged-bnn.onnx"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"damaged-bnn\.onnx.*NaN or infinite.*damaged"):
        load(damaged, device="cpu")


def test_card_patch_size_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = find_card("bnn-sar-optical")
    (tmp_path / "cards").mkdir()
    card = {"name": "bnn-wrong-size", "method": "bnn", "file": str(shipped.path), "sha256": shipped.sha256,
            "licence": "test", "inputs": {"patch_size": 48}}
    (tmp_path / "cards" / "bnn-wrong-size.json").write_text(json.dumps(card), encoding="utf-8")
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path))
    with pytest.raises(ModelFileError, match="its card says 48"):
        load("bnn-wrong-size", device="cpu")


def test_malformed_card_is_skipped_with_a_warning_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = find_card("bnn-sar-optical")
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "broken-card.json").write_text('{"name": "x", "method": ', encoding="utf-8")
    (tmp_path / "cards" / "not-a-card.json").write_text('["a list"]', encoding="utf-8")
    good = {"name": "bnn-copy", "method": "bnn", "file": str(shipped.path), "sha256": shipped.sha256,
            "licence": "test", "inputs": {"patch_size": 64}}
    (tmp_path / "cards" / "bnn-copy.json").write_text(json.dumps(good), encoding="utf-8")
    env = {MODEL_PATH_ENV: str(tmp_path)}
    done = _cli("models", "list", env=env)
    assert done.returncode == 0, done.stderr
    assert "broken-card.json" in done.stderr and "not valid JSON" in done.stderr
    assert "not-a-card.json" in done.stderr and "Traceback" not in done.stderr
    assert "bnn-copy\tbnn" in done.stdout and "bnn-sar-optical\tbnn" in done.stdout
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path))
    cards, skipped = scan_cards()
    assert {p.name for p, _ in skipped} == {"broken-card.json", "not-a-card.json"}
    assert "bnn-copy" in list_models() and "broken-card.json" in caplog.text
    from sarcoreg.core.matchers.bnn import BNNMatcher

    assert BNNMatcher(model="bnn-copy", device="cpu").model.patch_size == 64  # the rest keeps working


@pytest.mark.parametrize("method, command", [("bnn", "sarcoreg-train bnn-moco"), ("aae", "sarcoreg-train aae"),
                                             ("rrlnet", "sarcoreg-train rrlnet")])
def test_unknown_model_message_gives_the_training_command(method: str, command: str) -> None:
    from sarcoreg.core.matchers.base import get_matcher

    with pytest.raises(ValueError) as info:
        _ = get_matcher(method, model="no-such-model").model  # type: ignore[attr-defined]
    assert command in str(info.value) and "''" not in str(info.value)


# -- 3. ONNX Runtime telemetry off ------------------------------------------------------------


def test_every_ort_session_goes_through_the_helper_with_telemetry_off() -> None:
    sess = onnx_session(MODELS_DIR / "bnn-sar-optical.onnx")
    assert len(sess.get_inputs()) == 2
    status = ort_telemetry_status()
    assert status["disabled"] and "off" in status["detail"]
    direct = []
    for folder in ("core", "models", "plugin", "training", "tools", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if "InferenceSession(" in text and path.name != "safe_load.py":
                direct.append(str(path.relative_to(REPO)))
    assert not direct, f"ONNX Runtime sessions created outside models/safe_load.onnx_session: {direct}"
    from sarcoreg.core.diagnostics import collect, format_text

    report = collect()
    assert report["onnxruntime"]["telemetry"].startswith("off")
    assert "telemetry" in format_text(report)


def test_shipped_models_still_load_and_pass_their_checks() -> None:
    from sarcoreg.models.registry import check_card, list_cards

    for card in list_cards():
        assert check_card(card)["ok"], card.name
    assert load("bnn-sar-optical", device="cpu").patch_size == 64
