"""``sarcoreg batch``: the command-line front of :func:`~sarcoreg.core.batch.runner.run_batch`.

::

    sarcoreg batch pairs.csv --out results/                      # a table of pairs, local cluster
    sarcoreg batch 's1/*.tif' --reference s2.tif --out results/  # one reference, many targets
    sarcoreg batch pairs.csv --out results/ --scheduler tcp://10.0.0.5:8786

Exit code: 0 when every pair is ``ok`` or ``uncertain``, 3 when some pair failed or could not be
run, 2 on bad input (no pair ran), 130 when stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_batch_arguments", "batch_main"]

EXIT_SOME_FAILED = 3


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sarcoreg batch`` (argparse only: importing this module is cheap)."""
    p.add_argument("pairs", help="CSV table (reference,target[,id][,option columns...]), or with --reference a "
                   "folder or glob pattern of targets")
    p.add_argument("--out", required=True, help="output folder: <out>/<id>/ per pair and the summary files")
    p.add_argument("--reference", help="the reference raster of every target (PAIRS is then a folder or glob)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="NAME=VALUE",
                   help="co-registration option for every pair, named like the coregister options or table "
                   "columns (e.g. -o transform=shift -o target-bands=1); table cells override it")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of the local Dask cluster (default: one per CPU core; "
                   "0: no Dask, pairs one after another in this process)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="pairs each worker runs at once (default 1)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786) instead of a local "
                   "cluster; its workers need sarcoreg installed and must see the rasters under the same paths")
    p.add_argument("--redo", action="store_true", help="run every pair again, even those already done")
    p.add_argument("--retry-failed", action="store_true", help="run again the pairs recorded as failed or error")
    p.add_argument("--worker-failures", type=int, default=2,
                   help="times a pair may kill its worker process (out of memory ...) before it is recorded as an "
                   "error (local cluster; default 2)")
    p.add_argument("--dashboard-address", default=":8787", help="local cluster dashboard (default :8787; "
                   "'none' for no dashboard)")


def batch_main(a: argparse.Namespace) -> int:
    """Run ``sarcoreg batch``; see the module docstring for the exit codes."""
    import logging

    from tqdm import tqdm

    from .pairs import load_pairs, option_value
    from .runner import BatchOptions, run_batch

    defaults: dict[str, Any] = {}
    for item in a.option:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option {item!r}: write it as NAME=VALUE, e.g. -o transform=shift")
        key, parsed = option_value(name, value, "--option")
        defaults[key] = {**defaults.get(key, {}), **parsed} if isinstance(parsed, dict) else parsed
    pairs = load_pairs(a.pairs, reference=a.reference, defaults=defaults)
    if not logging.getLogger().isEnabledFor(logging.INFO):  # Dask logs every worker start and stop at INFO
        for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core"):
            logging.getLogger(name).setLevel(logging.WARNING)
    opts = BatchOptions(
        workers=a.workers, threads_per_worker=a.threads_per_worker, scheduler=a.scheduler, redo=a.redo,
        retry_failed=a.retry_failed, worker_failures=a.worker_failures,
        dashboard_address=None if str(a.dashboard_address).lower() == "none" else a.dashboard_address,
    )
    bar = tqdm(total=len(pairs), unit="pair", file=sys.stderr, dynamic_ncols=True, disable=not sys.stderr.isatty())

    def on_row(row: dict[str, Any], done: int, total: int) -> None:
        bar.update(1)
        bar.set_postfix_str(f"{row['id']}: {row['status']}", refresh=True)
        if not bar.disable:
            return
        tail = "" if row["status"] in ("ok", "uncertain") else f" ({row.get('error') or row.get('reasons')})"
        print(f"[{done}/{total}] {row['id']}: {row['status']}{' (reused)' if row.get('reused') else ''}{tail}",
              file=sys.stderr, flush=True)

    def on_message(text: str) -> None:
        (bar.write if not bar.disable else print)(text, file=sys.stderr)

    try:
        result = run_batch(pairs, a.out, opts, on_row=on_row, on_message=on_message)
    except KeyboardInterrupt:
        bar.close()
        print("sarcoreg batch: stopped; unfinished pairs were cleaned up and are listed as 'not run' in "
              f"{a.out}/summary.csv. Run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        bar.close()
    counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
    print(f"{len(result.rows)} pairs: {counts} ({result.computed} run now, {result.reused} reused)")
    print(f"summary: {result.summary['csv']}, {result.summary['gpkg']}, {result.summary['html']}")
    bad = sum(result.counts.get(s, 0) for s in ("failed", "error", "not run"))
    return EXIT_SOME_FAILED if bad else 0
