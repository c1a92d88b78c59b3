"""One summary row per pair: what the batch reports for it, built from the engine's report.

A row is a flat dict of JSON-able values with the keys of :data:`FIELDS`. ``status`` is the
engine's verdict (``ok``, ``uncertain``, ``failed``) or ``error`` (the pair could not be run: bad
input, a worker that kept dying) or ``not run`` (the batch was stopped first). ``runtime_s`` is the
pair's wall time on its worker, ``cpu_s`` the CPU time of the thread that ran it; ``reused`` says
the row comes from an earlier run (its folder held a complete output set) rather than this one.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from .pairs import Pair

__all__ = ["FIELDS", "STATUSES", "fingerprint", "not_run_row", "error_row", "row_from_report", "shift_at_centre"]

#: Row keys, in column order of ``summary.csv`` and ``summary.gpkg``.
FIELDS: tuple[str, ...] = (
    "id", "reference", "target", "status", "reasons", "rmse_px", "rmse_cv_px", "n_inliers", "n_tiepoints",
    "shift_x_px", "shift_y_px", "transform", "method", "runtime_s", "cpu_s", "reused", "error", "report",
    "folder",
)
#: Every status a row can have, best first (the order of the summary's counts and legend).
STATUSES: tuple[str, ...] = ("ok", "uncertain", "failed", "error", "not run")


def fingerprint(pair: Pair) -> dict[str, Any]:
    """What decides a pair's result: its inputs (path, size, modification time) and its options.

    A stored result whose fingerprint differs (another raster under the same id, a changed
    option) is computed again.
    """
    def stat(path: str) -> list[Any]:
        try:
            st = Path(path).stat()
        except OSError:
            return [path, None, None]
        return [path, st.st_size, st.st_mtime_ns]

    options = json.dumps(pair.options, sort_keys=True, default=str)
    return {"reference": stat(pair.reference), "target": stat(pair.target),
            "options": hashlib.sha256(options.encode("utf-8")).hexdigest()[:16]}


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def shift_at_centre(report: dict[str, Any]) -> tuple[float | None, float | None]:
    """The correction at the centre of the overlap, reference pixels ``(dx, dy)``, from a report.

    The correction maps where the target's georeferencing puts a point to where it matches the
    reference (``CoregResult.fit``); a target whose georeferencing puts it 3 px too far east
    gives ``dx = -3``. ``(None, None)`` when the report has no transform.
    """
    try:
        import numpy as np

        from ..estimation.models import model_from_dict

        x0, y0, w, h = (float(v) for v in report["grid"]["overlap_px"])
        model = model_from_dict(report["transform"]["model"])
        centre = np.array([[x0 + w / 2.0, y0 + h / 2.0]])
        moved = model.apply(centre)[0] - centre[0]
    except (KeyError, TypeError, ValueError, IndexError):
        return None, None
    return _number(moved[0]), _number(moved[1])


def _base(pair: Pair, folder: Path) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(id=pair.id, reference=pair.reference, target=pair.target, folder=str(folder), reused=False, error="")
    return row


def row_from_report(pair: Pair, folder: Path, report: dict[str, Any], runtime_s: float | None = None
                    ) -> dict[str, Any]:
    """The row of a pair the engine judged (``ok`` / ``uncertain``, or ``failed`` with a report)."""
    row = _base(pair, folder)
    dx, dy = shift_at_centre(report)
    transform = report.get("transform") or {}
    html = folder / "report.html"
    row.update(
        status=str(report.get("status") or "unknown"),
        reasons=" | ".join(str(r) for r in report.get("reasons") or []),
        rmse_px=_number(report.get("rmse_px")),
        rmse_cv_px=_number(report.get("rmse_cv_px")),
        n_inliers=int(report.get("n_inliers") or 0),
        n_tiepoints=int(report.get("n_tiepoints") or 0),
        shift_x_px=dx,
        shift_y_px=dy,
        transform=str(transform.get("type") or ""),
        method=str(report.get("method") or ""),
        runtime_s=_number(runtime_s if runtime_s is not None else report.get("runtime_s")),
        report=str(html) if html.is_file() else "",
    )
    return row


def error_row(pair: Pair, folder: Path, status: str, error: str, runtime_s: float | None = None
              ) -> dict[str, Any]:
    """The row of a pair without a judged result: ``failed`` before a fit, ``error`` or ``not run``."""
    row = _base(pair, folder)
    row.update(status=status, error=error, runtime_s=_number(runtime_s), n_inliers=0, n_tiepoints=0)
    if status == "failed":
        row["reasons"] = error
    return row


def not_run_row(pair: Pair, folder: Path) -> dict[str, Any]:
    """The row of a pair the batch did not get to (stopped first)."""
    return error_row(pair, folder, "not run", "the batch was stopped before this pair finished")
