"""One runtime: what a device string means to torch and to ONNX Runtime.

Every model and keypoint matcher of sarcoreg takes a ``device`` option with the same four
forms, and this module is the only place that turns it into something a runtime understands:

* ``"auto"``: the first CUDA device when the runtime has CUDA, otherwise the CPU;
* ``"cpu"``: the CPU;
* ``"cuda"``: the first CUDA device (``cuda:0``); an error when the runtime has no CUDA;
* ``"cuda:N"``: CUDA device ``N``; an error when the runtime has no CUDA (torch: or fewer devices).

:func:`torch_device` gives a ``torch.device``, :func:`onnx_providers` the execution providers of
an ONNX Runtime session (CUDA with ``{"device_id": N}``, then the CPU as a fallback for the
operators CUDA lacks). Asking for CUDA where there is none is an error with a clear message,
never a silent run on the CPU; only ``"auto"`` falls back.

torch and onnxruntime are imported only by the function that needs them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "DEVICE_CHOICES",
    "onnx_cuda_available",
    "onnx_providers",
    "parse_device",
    "resolve_device",
    "torch_device",
]

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
#: The device forms, for help texts.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_CUDA = re.compile(r"cuda(?::(\d+))?")

#: One execution provider as ONNX Runtime takes it: a name, or ``(name, options)``.
Provider = str | tuple[str, dict[str, Any]]


def parse_device(device: str) -> tuple[str, int | None]:
    """Split a device string into its kind and CUDA index.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (surrounding blanks and case
            are ignored; an empty string means ``"auto"``).

    Returns:
        ``("auto", None)``, ``("cpu", None)`` or ``("cuda", N)`` (``N`` is 0 for plain ``"cuda"``).

    Raises:
        ValueError: Any other string; the message lists the forms.
    """
    text = str(device or "auto").strip().lower()
    if text in ("auto", "cpu"):
        return text, None
    found = _CUDA.fullmatch(text)
    if found is None:
        raise ValueError(f"unknown device '{device}'; use {DEVICE_CHOICES}")
    return "cuda", int(found.group(1) or 0)


def torch_device(device: str) -> Any:
    """The ``torch.device`` for ``device`` (CUDA checked).

    ``"auto"`` gives ``cuda:0`` when torch sees a CUDA device, else ``cpu``; ``"cuda"`` gives
    ``cuda:0``.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        A ``torch.device`` with an explicit index for CUDA.

    Raises:
        ValueError: Unknown device string, CUDA asked for but torch sees no CUDA device, or a
            CUDA index beyond the devices torch sees.
    """
    import torch

    kind, index = parse_device(device)
    if kind == "cpu":
        return torch.device("cpu")
    has_cuda = bool(torch.cuda.is_available())
    if kind == "auto":
        return torch.device("cuda", 0) if has_cuda else torch.device("cpu")
    if not has_cuda:
        raise ValueError(
            f"device '{device}' asked for but torch sees no CUDA device; use the CPU (device 'cpu', --device cpu)"
        )
    count = int(torch.cuda.device_count())
    index = index or 0
    if index >= count:
        raise ValueError(f"device '{device}' asked for but torch sees {count} CUDA device(s) "
                         f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def resolve_device(device: str) -> str:
    """:func:`torch_device` as a string (``"cpu"``, ``"cuda:0"`` ...); ``"cpu"`` needs no torch."""
    if parse_device(device)[0] == "cpu":
        return "cpu"
    return str(torch_device(device))


def onnx_cuda_available(available: Sequence[str] | None = None) -> bool:
    """Whether ONNX Runtime has its CUDA execution provider here.

    Args:
        available: The provider names to look at (default: ``onnxruntime.get_available_providers()``).
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    return CUDA_PROVIDER in available


def onnx_providers(device: str, available: Sequence[str] | None = None) -> list[Provider]:
    """The execution providers of an ONNX Runtime session on ``device``.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        available: The providers this ONNX Runtime has (default: ask ``onnxruntime``; tests pass
            a list).

    Returns:
        ``["CPUExecutionProvider"]`` for the CPU (and for ``"auto"`` without CUDA), otherwise
        ``[("CUDAExecutionProvider", {"device_id": N}), "CPUExecutionProvider"]``.

    Raises:
        ValueError: Unknown device string, or CUDA asked for but this ONNX Runtime has no CUDA
            provider (the message lists the ones it has).
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        return [CPU_PROVIDER]
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    has_cuda = onnx_cuda_available(available)
    if kind == "auto" and not has_cuda:
        return [CPU_PROVIDER]
    if not has_cuda:
        raise ValueError(
            f"device '{device}' asked for, but this ONNX Runtime has no {CUDA_PROVIDER} (it has "
            f"{', '.join(available) or 'none'}); install onnxruntime-gpu or use device 'cpu'"
        )
    return [(CUDA_PROVIDER, {"device_id": index or 0}), CPU_PROVIDER]
