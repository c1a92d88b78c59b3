"""Writes a run's output set: every format of the output-format list, one writer each.

:func:`write_outputs` hands one :class:`~sarcoreg.core.exports.artifacts.RunArtifacts` value to
the writers of the wanted formats (:mod:`sarcoreg.core.output_formats`): ``prepare`` hooks
first, then the formats in list order, those marked ``own_thread`` (the co-registered COG) in a
thread each beside the others, those marked ``last`` (``report.json``) once all others are
written. Every writer writes atomically into the staging folder of the engine's
:class:`~sarcoreg.core.output_set.OutputSet`, which moves the set in whole or not at all.

The names this module exported before the list existed stay importable from here.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .exports.artifacts import OutputSettings, RunArtifacts
from .exports.cog import COG_OPTIONS, CoregisteredRecipe, coregistered_recipe, write_coregistered
from .exports.formats.report_json import write_report_json
from .exports.report_images import REPORT_MAPS, tiepoint_map_images
from .methods import resolve
from .output_formats import OutputFormat, output_formats
from .output_set import final_folder
from .progress import Progress

__all__ = ["COG_OPTIONS", "REPORT_MAPS", "CoregisteredRecipe", "OutputSettings", "RunArtifacts",
           "coregistered_recipe", "tiepoint_map_images", "write_coregistered", "write_outputs",
           "write_report_json"]

log = logging.getLogger("sarcoreg.outputs")


def _formats(wanted: list[str] | tuple[str, ...]) -> list[OutputFormat]:
    """The formats of ``wanted`` in writing order: list order, those marked ``last`` at the end.

    Raises:
        ValueError: A wanted key is not in the list.
    """
    formats = output_formats()
    unknown = sorted(set(wanted) - {f.key for f in formats})
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; known: {', '.join(f.key for f in formats)}")
    chosen = [f for f in formats if f.key in wanted]
    return [f for f in chosen if not f.last] + [f for f in chosen if f.last]


def write_outputs(out_dir: Path, artifacts: RunArtifacts, progress: Progress) -> dict[str, Path]:
    """Write the formats of ``artifacts.keys`` into ``out_dir``; returns key -> path of what was written.

    :func:`sarcoreg.core.engine.coregister` passes the staging folder of its
    :class:`~sarcoreg.core.output_set.OutputSet`; ``report["outputs"]`` names the final paths.
    A writer that raises fails the whole call (an ``own_thread`` writer's error too, once its
    thread is done); the engine then drops the staged set.

    Args:
        out_dir: The folder to write into (created).
        artifacts: What the writers need; ``artifacts.keys`` are the formats to write.
        progress: Progress of the writing ("writing NAME" per format).

    Returns:
        Output key -> written path, in writing order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = _formats(artifacts.keys)
    paths = {f.key: out_dir / f.file_name for f in formats}
    for f in formats:
        if f.prepare is not None:
            resolve(f.prepare)(artifacts)
    threaded = [f for f in formats if f.own_thread]
    pool: ThreadPoolExecutor | None = None
    running: list[Future[None]] = []
    if threaded:
        # Large GDAL-only outputs: written by threads of their own (GDAL runs without the GIL, on
        # dataset handles of their own) while the other outputs are made here.
        pool = ThreadPoolExecutor(max_workers=len(threaded), thread_name_prefix="sarcoreg-output")
        running = [pool.submit(resolve(f.writer), artifacts, paths[f.key]) for f in threaded]
    try:
        for i, f in enumerate(formats):
            progress.report(i / len(formats), f"writing {f.file_name}")
            if f.own_thread:
                continue  # being written by its thread; waited for below
            if f.last:
                for future in running:
                    future.result()  # written last, once every other file is there
            resolve(f.writer)(artifacts, paths[f.key])
        for future in running:
            future.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)  # never leave a thread writing into a folder being cleaned up
    # Where the files end up once the engine moves the staged set in (final_folder).
    artifacts.report["outputs"] = {k: str(final_folder(out_dir) / p.name) for k, p in paths.items()}
    progress.report(1.0, "outputs written")
    return paths
