"""``report.json``: the run's report (written last, once every other file of the set is there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...worker_protocol import to_jsonable
from ..atomic import atomic_write_text

if TYPE_CHECKING:
    from ..artifacts import RunArtifacts

__all__ = ["write", "write_report_json"]


def write_report_json(path: Path, report: dict[str, Any]) -> None:
    """``report.json``: NaN written as null, indented."""
    atomic_write_text(path, json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n")


def write(artifacts: RunArtifacts, path: Path) -> None:
    """The report as it stands (the engine rewrites it with the final timings)."""
    write_report_json(path, artifacts.report)
