"""The JSON-lines protocol between a caller (the QGIS plugin, a script) and the core worker.

One job per worker process. The caller writes a single JSON object on the worker's stdin::

    {"job": "coregister", "params": {...}}

and reads one JSON object per line on its stdout, each with a ``type``:

- ``{"type": "started", "pid": 123, "python": "/path/python", "job": "..."}``
- ``{"type": "progress", "fraction": 0.42, "message": "matching 120/300"}``
- ``{"type": "log", "level": "info" | "warning" | "error" | "debug", "message": "..."}``
- ``{"type": "result", "data": {...}}`` (last line of a successful job, exit code 0)
- ``{"type": "error", "error_type": "ValueError", "message": "...", "traceback": "..."}``
  (last line of a failed job, exit code 1)

Anything else the job or its libraries print goes to stderr, never into the protocol stream.
This module is standard-library only.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

__all__ = ["decode_line", "encode_message", "to_jsonable", "EXIT_OK", "EXIT_ERROR", "EXIT_CANCELLED"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CANCELLED = 3


def encode_message(kind: str, **fields: Any) -> str:
    """One protocol line (without the newline); NaN and infinities become null."""
    return json.dumps(to_jsonable({"type": kind, **fields}), allow_nan=False)


def decode_line(line: str) -> dict[str, Any] | None:
    """Parse one protocol line; None for a line that is not a protocol message."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) and "type" in msg else None


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that :func:`json.dumps` accepts with ``allow_nan=False``.

    numpy scalars and arrays become Python numbers and lists, paths become strings, tuples
    become lists, and non-finite floats become None.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    return str(obj)
