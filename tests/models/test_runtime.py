"""One runtime: device strings -> torch devices and ONNX Runtime providers (``models/runtime.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from sarcoreg.models.runtime import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    onnx_providers,
    parse_device,
    resolve_device,
    torch_device,
)

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = [CPU_PROVIDER]
WITH_CUDA = ["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("auto", ("auto", None)), ("", ("auto", None)), ("cpu", ("cpu", None)), (" CPU ", ("cpu", None)),
     ("cuda", ("cuda", 0)), ("cuda:0", ("cuda", 0)), ("cuda:3", ("cuda", 3))],
)
def test_parse_device(text: str, parsed: tuple[str, int | None]) -> None:
    assert parse_device(text) == parsed


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps", "cpu:0"])
def test_unknown_device_is_refused_with_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"unknown device .*auto, cpu, cuda or cuda:N"):
        parse_device(text)
    with pytest.raises(ValueError, match="unknown device"):
        onnx_providers(text, CPU_ONLY)


def test_onnx_providers_cpu_and_auto_without_cuda() -> None:
    assert onnx_providers("cpu", WITH_CUDA) == [CPU_PROVIDER]
    assert onnx_providers("auto", CPU_ONLY) == [CPU_PROVIDER]


def test_onnx_providers_cuda_with_device_id() -> None:
    assert onnx_providers("auto", WITH_CUDA) == [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    assert onnx_providers("cuda", WITH_CUDA) == [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    assert onnx_providers("cuda:2", WITH_CUDA) == [(CUDA_PROVIDER, {"device_id": 2}), CPU_PROVIDER]


def test_onnx_cuda_without_the_provider_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"device 'cuda:1' asked for.*no CUDAExecutionProvider.*onnxruntime-gpu"):
        onnx_providers("cuda:1", CPU_ONLY)


def test_onnx_providers_of_this_machine() -> None:
    import onnxruntime as ort

    assert onnx_providers("cpu") == [CPU_PROVIDER]
    if CUDA_PROVIDER not in ort.get_available_providers():
        assert onnx_providers("auto") == [CPU_PROVIDER]
        with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
            onnx_providers("cuda")


def test_torch_device_cpu_and_auto() -> None:
    assert torch_device("cpu") == torch.device("cpu")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert torch_device("auto") == expected
    assert resolve_device("auto") == str(expected)
    assert resolve_device("cpu") == "cpu"


def test_torch_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("auto") == torch.device("cpu")
    for text in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"device '{text}' asked for but torch sees no CUDA device"):
            torch_device(text)


def test_torch_cuda_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torch_device("cuda") == torch.device("cuda", 0)
    assert torch_device("auto") == torch.device("cuda", 0)
    assert torch_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"torch sees 2 CUDA device\(s\)"):
        torch_device("cuda:2")


def test_the_model_and_keypoint_code_use_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from sarcoreg.core.keypoints.base import resolve_device as keypoint_device
    from sarcoreg.models import patch_model

    assert patch_model.onnx_providers is onnx_providers and patch_model.torch_device is torch_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert keypoint_device("auto") == "cpu"
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        keypoint_device("cuda")


def test_no_other_device_or_provider_mapping() -> None:
    """Only runtime.py maps devices: no other module asks ONNX Runtime for providers or parses cuda:N."""
    pattern = re.compile(r"get_available_providers\(|\"CUDAExecutionProvider\"\]|split\(\":\"\)\[1\]")
    allowed = {ROOT / "models" / "runtime.py", ROOT / "core" / "diagnostics.py"}
    offenders = [
        str(p.relative_to(ROOT)) for folder in ("core", "models", "training", "plugin")
        for p in sorted((ROOT / folder).rglob("*.py")) if p not in allowed and pattern.search(p.read_text("utf-8"))
    ]
    assert not offenders, f"device mapping outside models/runtime.py: {offenders}"


def test_shared_modality_onnx_cuda_error_on_a_cpu_runtime() -> None:
    import onnxruntime as ort
    from sarcoreg.models.shared_modality import load_shared_model

    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
        load_shared_model("shared-v2", device="cuda:1", backend="onnx")
