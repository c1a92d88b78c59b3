"""Opening model files safely: ONNX graphs and weights-only torch files, never pickled code.

Every model file sarcoreg opens goes through this module:

* :func:`onnx_session` creates every ONNX Runtime session of the project. It switches ONNX
  Runtime's telemetry off first (:func:`disable_ort_telemetry`), so no session sends anything
  anywhere, and it turns ONNX Runtime's raw errors for an empty, truncated or foreign file into
  a :class:`ModelFileError` that names the file and says what is wrong with it.
* :func:`load_torch_weights` reads a ``.pt`` / ``.pth`` file with ``torch.load(...,
  weights_only=True)``: only tensors, numbers, strings, lists, tuples and dicts are accepted.
  A file holding any other pickled Python object (which could run code while it is read) is
  refused with a :class:`ModelFileError` saying it is not a plain weights file.
* :func:`check_finite` is the last step of loading a model: a small probe batch must give
  finite numbers of the expected shape, so a model with damaged weights is named when it is
  loaded instead of showing up later as "no similarity could be computed".

Nothing here imports QGIS or Qt; onnxruntime and torch are imported only when used.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ModelFileError",
    "NotPlainWeightsError",
    "check_finite",
    "disable_ort_telemetry",
    "load_torch_weights",
    "onnx_session",
    "ort_telemetry_status",
    "plain_data",
]

_telemetry_state = {"disabled": False, "detail": "not switched off yet (no ONNX Runtime session created)"}


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and says why."""


class NotPlainWeightsError(ModelFileError):
    """A torch file that holds pickled Python objects besides tensors (it could run code)."""


def disable_ort_telemetry() -> bool:
    """Switch ONNX Runtime's telemetry events off for this process.

    Returns:
        True when ONNX Runtime has the switch (``onnxruntime.disable_telemetry_events``) and it was
        called; False when this ONNX Runtime has no telemetry switch.
    """
    import onnxruntime as ort

    off = getattr(ort, "disable_telemetry_events", None)
    if off is None:
        _telemetry_state.update(
            disabled=False, detail=f"onnxruntime {ort.__version__} has no telemetry switch (nothing to switch off)"
        )
        return False
    off()
    _telemetry_state.update(
        disabled=True, detail="off: disable_telemetry_events() is called before every session sarcoreg creates"
    )
    return True


def ort_telemetry_status() -> dict[str, Any]:
    """Whether ONNX Runtime telemetry is off in this process (for Diagnostics).

    Calls :func:`disable_ort_telemetry` itself, so the answer is the state every session gets.
    """
    disable_ort_telemetry()
    return dict(_telemetry_state)


def _ort_detail(exc: BaseException) -> str:
    """ONNX Runtime's message without its ``[ONNXRuntimeError] : N : CODE : Load model from X failed:`` prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "failed:" in text:
        text = text.split("failed:", 1)[1].strip()
    return text


def onnx_session(
    model: str | Path | bytes,
    providers: list[Any] | None = None,
    sess_options: Any = None,
    what: str = "model file",
) -> Any:
    """An ``onnxruntime.InferenceSession`` with telemetry off and clear errors for a bad file.

    Args:
        model: The ``.onnx`` file, or a serialised graph (bytes).
        providers: Execution providers (default CPU only).
        sess_options: An ``onnxruntime.SessionOptions`` or None.
        what: How to call the file in messages (``"model file"``, ``"SAR encoder graph"`` ...).

    Returns:
        The session.

    Raises:
        FileNotFoundError: The file does not exist.
        ModelFileError: The file is empty, is not an ONNX graph, or ONNX Runtime cannot load it.
    """
    import onnxruntime as ort

    disable_ort_telemetry()
    source = "in-memory graph" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
        if path.stat().st_size == 0:
            raise ModelFileError(
                f"{what} {path} is empty (0 bytes), not an ONNX graph; copy or export the model again"
            )
        model = str(path)
    try:
        return ort.InferenceSession(model, sess_options=sess_options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, InvalidGraph ...)
        kind = type(exc).__name__
        why = {
            "InvalidProtobuf": "it is not an ONNX graph (damaged, truncated, or a file of another kind)",
            "InvalidArgument": "it is not a usable ONNX graph",
            "InvalidGraph": "its ONNX graph is invalid",
            "NotImplemented": "it uses an operator this ONNX Runtime does not have",
        }.get(kind, "ONNX Runtime cannot load it")
        raise ModelFileError(f"{what} {source}: {why} ({_ort_detail(exc)})") from None


def load_torch_weights(path: str | Path, what: str = "model file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Only plain data is read: tensors, numbers, strings, ``None``, lists, tuples and dicts of
    these. Unpickling anything else could run code, so such a file is refused before any of its
    objects is built.

    Args:
        path: The ``.pt`` / ``.pth`` file.
        what: How to call the file in messages.

    Returns:
        What the file holds (usually a state dict, or a checkpoint dict with ``"model"``).

    Raises:
        FileNotFoundError: The file does not exist.
        NotPlainWeightsError: The file holds other pickled Python objects (the message names
            the file and the first such object).
        ModelFileError: The file is empty or not a torch file at all.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{what} {p} is empty (0 bytes), not a torch weights file")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _first_refused_object(str(exc))
        raise NotPlainWeightsError(
            f"{what} {p} is not a plain weights file: it holds pickled Python objects{detail}, and sarcoreg never "
            "unpickles those because that can run code. Use an ONNX graph (.onnx) or a torch file of tensors "
            "only (torch.save(model.state_dict(), path); numbers, strings, lists and dicts beside them are fine)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{what} {p} is not a readable torch weights file ({first})") from None


def _first_refused_object(message: str) -> str:
    """`` (first refused: posix.system)`` from torch's weights-only refusal message, or ``""``."""
    found = re.search(r"GLOBAL\s+([\w.]+)", message)
    return f" (first refused: {found.group(1)})" if found else ""


def check_finite(values: Any, shape: tuple[int | None, ...], source: str, what: str = "output") -> np.ndarray:
    """Check a model's probe output: the expected shape and only finite numbers.

    Args:
        values: The model's output on a probe batch.
        shape: Expected shape; ``None`` entries take any size.
        source: The model (name and file) for messages.
        what: What ``values`` is, for messages.

    Returns:
        ``values`` as a numpy array.

    Raises:
        ModelFileError: Wrong rank or size, or NaN / infinite values (damaged weights).
    """
    arr = np.asarray(values)
    ok_shape = arr.ndim == len(shape) and all(w is None or w == s for w, s in zip(shape, arr.shape, strict=True))
    if not ok_shape:
        want = "(" + ", ".join("N" if w is None else str(w) for w in shape) + ")"
        raise ModelFileError(f"{source}: its {what} has shape {tuple(arr.shape)}, expected {want}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ModelFileError(
            f"{source}: gives NaN or infinite values ({bad} of {arr.size}) on a test batch; its weights are damaged "
            "(a corrupt or truncated copy, or a model whose training diverged); copy or export it again"
        )
    return arr


def plain_data(obj: Any) -> Any:
    """``obj`` with numpy scalars / arrays, paths and dataclass-free containers made plain.

    What a checkpoint stores besides its tensors (config, metrics, history, random state) must
    load under ``torch.load(..., weights_only=True)``: dicts, lists, tuples, strings, numbers,
    booleans and ``None`` only. Tensors are kept as they are.

    Args:
        obj: A value built of dicts, lists, tuples, numbers, strings, paths, numpy values, tensors.

    Returns:
        The same structure with numpy scalars as Python numbers, numpy arrays as (nested) lists
        and paths as strings.

    Raises:
        TypeError: Something else (a dataclass, an arbitrary object) that would not load.
    """
    if isinstance(obj, np.generic):  # before the plain types: np.float64 is a float subclass
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {plain_data(k): plain_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [plain_data(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    if type(obj).__module__.startswith("torch"):  # tensors (and torch.Size, dtype) load weights-only
        return obj
    raise TypeError(f"{type(obj).__name__} cannot go into a weights-only checkpoint; store it as plain data")
