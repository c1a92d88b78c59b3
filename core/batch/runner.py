"""Run a batch of pairs on Dask distributed: one task per pair, resumable, fault tolerant.

* **Cluster**: a ``LocalCluster`` of worker processes (``workers``, ``threads_per_worker``) or an
  existing scheduler (``scheduler="tcp://host:8786"``: a cluster on Kubernetes, SLURM through
  dask-jobqueue, Coiled ...; its workers need this package installed). ``workers=0`` runs the
  pairs one after another in this process, without Dask.
* **Resumable**: a pair whose folder holds a complete output set of the same inputs and options
  is not run again; neither is a pair whose recorded result (a failed verdict, a bad input) has
  the same fingerprint. ``redo`` runs everything again, ``retry_failed`` the failed pairs.
* **Fault tolerant**: a pair that fails becomes a row with its error; a worker process that dies
  (killed, out of memory) has its pair retried on another worker up to ``worker_failures`` times
  (Dask's ``distributed.scheduler.allowed-failures``), then the pair is recorded as an error.
* **Stopping** (Ctrl-C, ``progress.cancel()``): running pairs are told to stop, the cluster is
  closed, what they left in their folders is removed, and the summary lists them as ``not run``.

Dask is imported here, never by ``import sarcoreg.core`` or the QGIS plugin.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..output_set import read_output_set, refuse_input_overwrite
from ..progress import Cancelled, Progress
from .folders import SUMMARY_FILES, pair_folder, read_record, remove_unfinished, write_record
from .pairs import Pair
from .rows import STATUSES, error_row, fingerprint, not_run_row, row_from_report
from .summary import write_summary

__all__ = ["BatchOptions", "BatchResult", "run_batch"]

log = logging.getLogger("sarcoreg.batch")

RowCallback = Callable[[dict[str, Any], int, int], None]
"""``on_row(row, done, total)``: called once per pair as it finishes (or is reused)."""


@dataclass
class BatchOptions:
    """How a batch runs.

    Attributes:
        workers: Worker processes of the local cluster (None: one per CPU core, at most one per
            pair to run; 0: no Dask, the pairs run one after another in this process).
        threads_per_worker: Pairs each worker process runs at once (each with one thread).
        scheduler: Address of a running Dask scheduler (``tcp://host:8786``) instead of a local
            cluster; its workers must be able to import ``sarcoreg`` and read the rasters.
        redo: Run every pair again, even those with a complete result.
        retry_failed: Run again the pairs whose recorded result is ``failed`` or ``error``.
        worker_failures: How many times a pair may kill its worker process before it is recorded
            as an error (Dask's ``allowed-failures``; applies to the local cluster, an external
            scheduler keeps its own setting).
        dashboard_address: Where the local cluster serves its dashboard (``":8787"``; None: off).
        memory_limit: Memory limit per worker process of the local cluster (Dask's syntax).
    """

    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    redo: bool = False
    retry_failed: bool = False
    worker_failures: int = 2
    dashboard_address: str | None = ":8787"
    memory_limit: str | float | None = "auto"


@dataclass
class BatchResult:
    """What :func:`run_batch` returns.

    Attributes:
        rows: One summary row per pair, in the order of the pairs.
        summary: ``{"csv", "gpkg", "qml", "html"}`` paths.
        dashboard: The Dask dashboard address (None without Dask).
        computed: Pairs run by this batch.
        reused: Pairs whose earlier result was kept.
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Path]
    dashboard: str | None = None
    computed: int = 0
    reused: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _reusable(pair: Pair, out_dir: Path, opts: BatchOptions) -> dict[str, Any] | None:
    """The row of an earlier result of ``pair`` that stands, or None when the pair must run."""
    if opts.redo:
        return None
    folder = pair_folder(out_dir, pair.id)
    record = read_record(out_dir, pair.id)
    same = record is not None and record.get("fingerprint") == fingerprint(pair)
    manifest = read_output_set(folder)
    if same and record is not None and record["row"].get("status") in ("failed", "error"):
        # The latest result of these inputs and options (a failed verdict leaves an earlier set as it was).
        if opts.retry_failed:
            return None
        row = dict(record["row"])
    elif manifest is not None and (record is None or same) and \
            (manifest.get("reference"), manifest.get("target")) == (pair.reference, pair.target):
        try:
            report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        runtime = record["row"].get("runtime_s") if record is not None else None
        row = row_from_report(pair, folder, report, runtime)
        row["cpu_s"] = record["row"].get("cpu_s") if record is not None else None
    else:
        return None
    row["reused"] = True
    row.pop("worker", None)
    return row


def _start(opts: BatchOptions, n_tasks: int) -> tuple[Any, Any, str]:
    """Start (or connect to) the cluster: ``(client, local cluster or None, dashboard message)``."""
    import dask
    from distributed import Client, LocalCluster

    if opts.scheduler:
        client = Client(opts.scheduler, timeout="30s")
        cluster = None
    else:
        n = opts.workers or max(1, (os.cpu_count() or 1) // max(1, opts.threads_per_worker))
        n = max(1, min(n, n_tasks))
        with dask.config.set({"distributed.scheduler.allowed-failures": int(opts.worker_failures)}):
            cluster = LocalCluster(
                n_workers=n, threads_per_worker=max(1, opts.threads_per_worker), processes=True,
                dashboard_address=opts.dashboard_address, memory_limit=opts.memory_limit,
            )
        client = Client(cluster)
    link = client.dashboard_link if opts.dashboard_address or opts.scheduler else ""
    if not link:
        message = "Dask dashboard: off"
    elif importlib.util.find_spec("bokeh") is None and not opts.scheduler:
        message = f"Dask dashboard: not served (install bokeh>=3.1 to see it at {link})"
    else:
        message = f"Dask dashboard: {link}"
    return client, cluster, message


def _row_of_failure(pair: Pair, folder: Path, exc: BaseException, opts: BatchOptions) -> dict[str, Any]:
    """The row of a task that Dask could not complete (the worker kept dying, or it was cancelled)."""
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        return error_row(pair, folder, "error",
                         f"the worker process died while running this pair (killed, or out of memory), "
                         f"{opts.worker_failures + 1} times: Dask gave up ({exc})")
    name = type(exc).__name__
    if name == "CancelledError":
        return not_run_row(pair, folder)
    return error_row(pair, folder, "error", f"{name}: {exc}")


def _is_final(row: dict[str, Any]) -> bool:
    """Whether a row is a result worth keeping across runs (not a dead worker or a cancel)."""
    return row.get("status") != "not run" and "worker process died" not in str(row.get("error") or "")


def run_batch(
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike[str],
    options: BatchOptions | None = None,
    progress: Progress | None = None,
    on_row: RowCallback | None = None,
    on_message: Callable[[str], None] | None = None,
) -> BatchResult:
    """Co-register every pair into ``<out_dir>/<id>/`` and write the summary files.

    Args:
        pairs: The pairs (:func:`~sarcoreg.core.batch.pairs.load_pairs`).
        out_dir: The batch output folder (created).
        options: :class:`BatchOptions`.
        progress: Progress over pairs; ``progress.cancel()`` stops the batch (raises
            :class:`~sarcoreg.core.progress.Cancelled` after clean-up and the summary).
        on_row: Called as each pair finishes or is reused.
        on_message: Receives one-line messages (the dashboard address, the cluster in use).

    Returns:
        :class:`BatchResult`.

    Raises:
        Cancelled: ``progress`` was cancelled; KeyboardInterrupt passes through. In both cases
            the cluster is closed, unfinished pair folders are cleaned and the summary is written.
        InputOverwriteError: a summary file would overwrite an input raster.
        OSError: the output folder cannot be created.
    """
    opts = options or BatchOptions()
    root = Path(out_dir).expanduser().resolve()
    say = on_message or (lambda text: log.info("%s", text))
    refuse_input_overwrite(
        [("the batch output folder", root)] + [(f"the batch summary {n}", root / n) for n in SUMMARY_FILES],
        [(f"pair {p.id} {role} raster", path) for p in pairs for role, path in
         (("reference", p.reference), ("target", p.target))],
    )
    root.mkdir(parents=True, exist_ok=True)
    total = len(pairs)
    rows: dict[str, dict[str, Any]] = {}
    done = 0

    def finish(pair: Pair, row: dict[str, Any]) -> None:
        nonlocal done
        rows[pair.id] = row
        done += 1
        if on_row is not None:
            on_row(row, done, total)
        if progress is not None:
            progress.report(done / max(total, 1), f"{done}/{total} pairs; {pair.id}: {row['status']}")

    to_run = []
    for pair in pairs:
        row = _reusable(pair, root, opts)
        if row is None:
            to_run.append(pair)
        else:
            finish(pair, row)
    if to_run:
        say(f"{len(to_run)} of {total} pairs to run ({total - len(to_run)} already done)")
    dashboard: str | None = None
    t0 = time.perf_counter()
    try:
        if to_run and opts.workers == 0 and not opts.scheduler:
            _run_here(to_run, root, progress, finish)
        elif to_run:
            dashboard = _run_on_dask(to_run, root, opts, progress, finish, say)
    finally:
        unfinished = [p.id for p in to_run if p.id not in rows]
        if unfinished:
            cleaned = remove_unfinished(root, unfinished)
            if cleaned:
                say(f"removed what {len(cleaned)} unfinished pair(s) left in their folders")
        ordered = [rows.get(p.id) or not_run_row(p, pair_folder(root, p.id)) for p in pairs]
        counts = {s: sum(1 for r in ordered if r["status"] == s) for s in STATUSES}
        info = {"pairs": total, "run now": len(to_run) - len(unfinished), "reused": total - len(to_run),
                "wall time": f"{time.perf_counter() - t0:.1f} s",
                "cluster": opts.scheduler or ("this process" if opts.workers == 0 else "local")}
        summary = write_summary(ordered, root, info)
    return BatchResult(ordered, summary, dashboard, computed=len(to_run), reused=total - len(to_run),
                       counts=counts)


def _record(root: Path, pair: Pair, row: dict[str, Any]) -> None:
    if _is_final(row):
        write_record(root, {k: v for k, v in row.items() if k != "worker"}, fingerprint(pair))


def _run_here(pairs: Sequence[Pair], root: Path, progress: Progress | None,
              finish: Callable[[Pair, dict[str, Any]], None]) -> None:
    """Run the pairs one after another in this process (``workers=0``)."""
    from .task import run_pair

    for pair in pairs:
        if progress is not None:
            progress.check()
        row = run_pair(pair.to_dict(), str(root))
        if row["status"] == "not run":
            raise Cancelled("cancelled by the user")
        _record(root, pair, row)
        finish(pair, row)


def _run_on_dask(pairs: Sequence[Pair], root: Path, opts: BatchOptions, progress: Progress | None,
                 finish: Callable[[Pair, dict[str, Any]], None], say: Callable[[str], None]) -> str:
    """Submit one task per pair and collect the rows as they finish; returns the dashboard address."""
    from distributed import Event, wait

    from .task import run_pair

    client, cluster, message = _start(opts, len(pairs))
    say(message)
    n_workers = len(client.scheduler_info().get("workers", {}))
    say(f"Dask cluster: {opts.scheduler or 'local'}, {n_workers} worker(s)")
    token = secrets.token_hex(4)
    cancel = Event(f"sarcoreg-batch-cancel-{token}", client=client)
    by_key: dict[str, Pair] = {}
    futures = []
    for i, pair in enumerate(pairs):
        fut = client.submit(run_pair, pair.to_dict(), str(root), cancel.name, 1,
                            key=f"sarcoreg-pair-{pair.id}-{token}", pure=False, priority=-i)
        by_key[fut.key] = pair
        futures.append(fut)
    pending = set(futures)
    try:
        while pending:
            if progress is not None:
                progress.check()
            try:
                finished, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            for fut in finished:
                pair = by_key[fut.key]
                try:
                    row = fut.result()
                except BaseException as exc:  # KilledWorker, CancelledError, a worker-side import error
                    row = _row_of_failure(pair, pair_folder(root, pair.id), exc, opts)
                _record(root, pair, row)
                finish(pair, row)
    except BaseException:
        _stop_running(client, cancel, pending, opts)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return str(client.dashboard_link or "")


def _stop_running(client: Any, cancel: Any, pending: set[Any], opts: BatchOptions) -> None:
    """Tell running pairs to stop (they write nothing), cancel queued ones, wait a little for the running.

    A running Dask task cannot be interrupted from outside; the pairs watch the batch's cancel
    event and stop at their next progress report (within a second or so), leaving their folders
    as they were. A local cluster is closed right after anyway; an external one keeps running,
    so its running pairs get up to 10 s to stop.
    """
    try:
        cancel.set()
        running = {key for keys in client.processing().values() for key in keys}
        client.cancel([f for f in pending if f.key not in running])
        t_end = time.monotonic() + (10.0 if opts.scheduler else 3.0)
        while time.monotonic() < t_end and any(f.key in running and f.status == "pending" for f in pending):
            time.sleep(0.2)
        client.cancel(list(pending))
    except Exception as exc:  # the cluster may already be going down (Ctrl-C reaches its processes too)
        log.debug("cancelling the batch's tasks: %s", exc)
