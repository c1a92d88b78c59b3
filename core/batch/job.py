"""The worker-process job ``batch`` (what the QGIS algorithm *Co-register many pairs* runs).

Params (JSON): ``out_dir``; either ``table`` (a CSV of pairs) or ``reference`` + ``targets`` (a
folder or glob pattern); optional ``options`` (co-registration options for every pair, names as
in the table), ``workers`` (0 / missing: sized to the machine), ``threads_per_worker``,
``scheduler``, ``redo``, ``retry_failed``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..progress import Progress
from .pairs import load_pairs, option_value
from .runner import BatchOptions, run_batch

__all__ = ["batch_from_params"]

log = logging.getLogger("sarcoreg.batch")


def batch_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Run a batch from JSON parameters; returns the summary paths, counts and dashboard address."""
    out_dir = params.get("out_dir")
    if not out_dir:
        raise ValueError("the batch job needs 'out_dir'")
    defaults: dict[str, Any] = {}
    for name, value in dict(params.get("options") or {}).items():
        if value is None or value == "":
            continue
        key, parsed = option_value(name, value if isinstance(value, str) else str(value), "batch options")
        defaults[key] = parsed
    if params.get("table"):
        pairs = load_pairs(params["table"], defaults=defaults)
    elif params.get("reference") and params.get("targets"):
        pairs = load_pairs(params["targets"], reference=params["reference"], defaults=defaults)
    else:
        raise ValueError("the batch job needs 'table' (a CSV of pairs) or 'reference' and 'targets'")
    workers = params.get("workers")
    opts = BatchOptions(
        workers=int(workers) if workers else None,
        threads_per_worker=int(params.get("threads_per_worker") or 1),
        scheduler=params.get("scheduler") or None,
        redo=bool(params.get("redo")),
        retry_failed=bool(params.get("retry_failed")),
        dashboard_address=params.get("dashboard_address", ":8787"),
    )

    def on_row(row: dict[str, Any], done: int, total: int) -> None:
        why = row.get("error") or row.get("reasons") or ""
        level = logging.INFO if row["status"] in ("ok",) else logging.WARNING
        log.log(level, "pair %s: %s%s%s", row["id"], row["status"], " (reused)" if row.get("reused") else "",
                f": {why}" if why else "")

    result = run_batch(pairs, out_dir, opts, progress, on_row=on_row, on_message=lambda m: log.info("%s", m))
    return {
        "summary": {k: str(v) for k, v in result.summary.items()},
        "counts": result.counts,
        "computed": result.computed,
        "reused": result.reused,
        "dashboard": result.dashboard,
        "pairs": len(result.rows),
    }
