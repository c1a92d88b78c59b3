"""The patch-model contract shared by every shipped patch-matching network (RRL-Net, BNN, AAE ...).

A patch model compares reference patches ``a`` (optical / VIS) with target patches ``b`` (SAR /
NIR): :meth:`PatchModel.score` takes two float arrays ``(N, P, P)`` in [0, 1] and returns ``(N,)``
similarities, higher = more likely the same place. Two back ends:

* :class:`OnnxPatchModel`: ONNX Runtime (the default; no torch needed). The graph has two inputs
  ``(N, 1, P, P)`` float32 and one output ``(N,)`` (or ``(N, 1)``).
* :class:`TorchPatchModel`: a torch module with ``forward(a, b) -> (N,)`` (torch imported lazily).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from .runtime import onnx_providers, torch_device

__all__ = [
    "OnnxPatchModel",
    "PatchModel",
    "TorchPatchModel",
    "TorchBackend",
    "check_patches",
    "onnx_providers",
    "torch_device",
]


def check_patches(a: np.ndarray, b: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a patch batch to C-contiguous float32 ``(N, 1, P, P)`` arrays.

    Args:
        a: ``(N, P, P)`` (or ``(P, P)`` for one pair) reference patches in [0, 1].
        b: Target patches of the same shape.
        patch_size: ``P`` the model wants.

    Raises:
        ValueError: Shapes differ or the patch size is wrong (the message says what to pass).
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if b.ndim == 2:
        b = b[None]
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"score(a, b) wants two (N, {patch_size}, {patch_size}) arrays, got {a.shape} and {b.shape}")
    if a.shape[1:] != (patch_size, patch_size):
        raise ValueError(
            f"this model takes {patch_size} x {patch_size} patches, got {a.shape[1]} x {a.shape[2]}; "
            "resample the patches first"
        )
    a = np.nan_to_num(a, nan=0.0)
    b = np.nan_to_num(b, nan=0.0)
    return np.ascontiguousarray(a[:, None]), np.ascontiguousarray(b[:, None])


class PatchModel(ABC):
    """A patch-matching model behind one contract.

    Attributes:
        name: Model name (the card name, or the file stem).
        patch_size: Side ``P`` of the square patches it takes.
        device: What actually runs it (``"onnxruntime:CPUExecutionProvider"``, ``"torch:cpu"`` ...).
        batch_size: Pairs per internal call of the back end.
    """

    name: str
    patch_size: int
    device: str
    batch_size: int

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity of each pair.

        Args:
            a: ``(N, P, P)`` reference / optical patches, float in [0, 1] (NaN counts as 0).
            b: ``(N, P, P)`` target / SAR / NIR patches, float in [0, 1].

        Returns:
            ``(N,)`` float32 scores, higher = more likely the same place.
        """
        a4, b4 = check_patches(a, b, self.patch_size)
        n = a4.shape[0]
        if n == 0:
            return np.zeros(0, np.float32)
        step = self.batch_size
        out = [self._run(a4[i : i + step], b4[i : i + step]) for i in range(0, n, step)]
        return np.concatenate(out).astype(np.float32).reshape(n)

    @abstractmethod
    def _run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores ``(n,)`` of one batch ``(n, 1, P, P)`` float32."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, patch_size={self.patch_size}, device={self.device!r})"


class OnnxPatchModel(PatchModel):
    """A patch model run by ONNX Runtime.

    Args:
        path: The ``.onnx`` file (two inputs ``(N, 1, P, P)``, one output).
        name: Model name; default the file stem.
        device: ``auto`` (CUDA if the runtime has it), ``cpu``, ``cuda`` or ``cuda:N`` (see
            :mod:`.runtime`).
        batch_size: Pairs per session call.
        threads: Intra-op threads of the session (None: ONNX Runtime's default).
    """

    def __init__(
        self,
        path: str | Path,
        name: str | None = None,
        device: str = "auto",
        batch_size: int = 128,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        from .safe_load import ModelFileError, onnx_session

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"ONNX model not found: {p}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.session = onnx_session(p, providers=onnx_providers(device), sess_options=opts)
        inputs = self.session.get_inputs()
        if len(inputs) != 2:
            raise ModelFileError(f"{p}: a patch model needs two inputs (a, b), this graph has {len(inputs)}")
        for i in inputs:
            if len(i.shape) != 4 or i.shape[1] != 1 or i.shape[2] != i.shape[3]:
                raise ModelFileError(f"{p}: input '{i.name}' has shape {i.shape}; a patch model takes (N, 1, P, P)")
        outputs = self.session.get_outputs()
        if not outputs or len(outputs[0].shape) not in (1, 2):
            got = outputs[0].shape if outputs else "no output"
            raise ModelFileError(f"{p}: output shape {got}; a patch model gives one score per pair, (N,) or (N, 1)")
        size = inputs[0].shape[-1]
        if not isinstance(size, int) or inputs[1].shape[-1] != size:
            raise ModelFileError(f"{p}: the patch size (last input dimension) must be fixed and equal, "
                                 f"got {inputs[0].shape} and {inputs[1].shape}")
        self.input_names = [i.name for i in inputs]
        self.name = name or p.stem
        self.patch_size = int(size)
        self.device = f"onnxruntime:{self.session.get_providers()[0]}"
        self.batch_size = int(batch_size)
        self.path = p

    def _run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_names[0]: a, self.input_names[1]: b})[0]
        return np.asarray(out).reshape(-1)


class TorchBackend:
    """Mixin of the torch back ends: the module on its device, and the contract's fields."""

    _torch: Any
    _device: Any
    module: Any
    name: str
    patch_size: int
    device: str
    batch_size: int

    def _attach(self, module: Any, patch_size: int, name: str, device: str, batch_size: int) -> None:
        """Put ``module`` on ``device`` (``auto``, ``cpu``, ``cuda[:N]``) in eval mode; set the fields."""
        import torch

        self._torch = torch
        self._device = torch_device(device)
        self.module = module.to(self._device).eval()
        self.name = name
        self.patch_size = int(patch_size)
        self.device = f"torch:{self._device}"
        self.batch_size = int(batch_size)


class TorchPatchModel(TorchBackend, PatchModel):
    """A patch model run by torch.

    Args:
        module: ``torch.nn.Module`` with ``forward(a, b) -> (N,)``, inputs ``(N, 1, P, P)``.
        patch_size: ``P``.
        name: Model name.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: Pairs per forward call.
    """

    def __init__(self, module: Any, patch_size: int, name: str, device: str = "auto", batch_size: int = 128) -> None:
        self._attach(module, patch_size, name, device, batch_size)

    def _run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            ta = torch.from_numpy(a).to(self._device)
            tb = torch.from_numpy(b).to(self._device)
            return np.asarray(self.module(ta, tb).float().cpu().numpy()).reshape(-1)
