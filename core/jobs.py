"""The jobs the worker can run, by name.

A job is ``fn(params: dict, progress: Progress) -> dict``: JSON-able parameters in, a JSON-able
result out, progress and cancel through :class:`~sarcoreg.core.progress.Progress`, log messages
through the ``sarcoreg`` logger. Heavy imports happen inside the job functions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from .progress import Progress

__all__ = ["JOBS", "get_job"]

Job = Callable[[dict[str, Any], Progress], dict[str, Any]]
log = logging.getLogger("sarcoreg.jobs")


def diagnostics_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Versions, devices and model status of this interpreter (see :mod:`.diagnostics`)."""
    from .diagnostics import collect

    return collect(progress=progress)


def selftest_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Exercise the worker plumbing: progress ticks, cancel, and (on request) a failure.

    Params:
        seconds (float): how long to run, reporting progress every 50 ms (default 1).
        fail (str): "" (default), "exception" (raise), "abort" (kill the process hard, as a
            native crash in a library would) or "exit" (exit with code 7 without a result).
    """
    seconds = float(params.get("seconds", 1.0))
    fail = str(params.get("fail", ""))
    log.info("selftest: pid %d, %.2f s, fail=%r", os.getpid(), seconds, fail)
    t0 = time.monotonic()
    steps = max(1, round(seconds / 0.05))
    for i in range(steps):
        time.sleep(0.05)
        progress.report((i + 1) / steps, f"tick {i + 1}/{steps}")
        if fail and i >= steps // 2:
            if fail == "exception":
                raise RuntimeError("selftest failure requested")
            if fail == "abort":
                os.abort()
            if fail == "exit":
                os._exit(7)
    return {"pid": os.getpid(), "steps": steps, "elapsed_s": time.monotonic() - t0}


def coregister_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Co-register ``params["target"]`` onto ``params["reference"]`` (see :mod:`.engine`)."""
    from .engine import run_from_params

    return run_from_params(params, progress)


def export_gcps_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Tie points -> ``.points``, GCP VRT and ``-gcp`` text (see :mod:`.tiepoint_ops`)."""
    from .tiepoint_ops import export_gcps_from_params

    return export_gcps_from_params(params, progress)


def warp_tiepoints_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Warp a raster with a transform fitted to tie points (see :mod:`.tiepoint_ops`)."""
    from .tiepoint_ops import warp_from_params

    return warp_from_params(params, progress)


def evaluate_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Check-point errors of a raster's georeferencing (see :mod:`.tiepoint_ops`)."""
    from .tiepoint_ops import evaluate_from_params

    return evaluate_from_params(params, progress)


def correspondence_map_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Similarity maps around points, as a GeoTIFF (see :mod:`.correspondence_maps`)."""
    from .correspondence_maps import run_from_params

    return run_from_params(params, progress)


def shared_layers_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Shared-modality layers of a SAR and/or an optical raster (see :mod:`.shared_layers`)."""
    from .shared_layers import shared_layers_job as run

    return run(params, progress)


def train_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Run ``sarcoreg-train`` in-process and write the model card (``sarcoreg.training.job``).

    The training side is started by name (:data:`.train_job.TRAIN_JOB`): the core imports no
    training code.
    """
    from .methods import resolve
    from .train_job import TRAIN_JOB

    run: Job = resolve(TRAIN_JOB)
    return run(params, progress)


def batch_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Co-register many pairs on Dask distributed (see :mod:`.batch.job`)."""
    from .batch.job import batch_from_params

    return batch_from_params(params, progress)


def install_model_pack_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Install a model pack into the user's model folder (see :mod:`sarcoreg.models.packs`).

    Params:
        pack (str): the pack (``NAME.zip``).
        force (bool): replace an installed model of the same name with other files (default False).

    Returns:
        :meth:`~sarcoreg.models.packs.InstallResult.to_dict` (name, method, folder, status, files,
        shadowed_by).
    """
    from ..models.packs import install_pack

    progress.report(0.0, f"checking {params['pack']}")
    result = install_pack(str(params["pack"]), force=bool(params.get("force", False)))
    log.info("model %s (%s): %s in %s", result.name, result.method, result.status, result.folder)
    if result.shadowed_by:
        log.warning("a model called %s in %s is found first and is the one used", result.name, result.shadowed_by)
    progress.report(1.0, result.status)
    return result.to_dict()


JOBS: dict[str, Job] = {
    "diagnostics": diagnostics_job,
    "selftest": selftest_job,
    "coregister": coregister_job,
    "shared_layers": shared_layers_job,
    "export_gcps": export_gcps_job,
    "warp_tiepoints": warp_tiepoints_job,
    "evaluate": evaluate_job,
    "correspondence_map": correspondence_map_job,
    "train": train_job,
    "batch": batch_job,
    "install_model_pack": install_model_pack_job,
}


def get_job(name: str) -> Job:
    """The job called ``name``; ValueError naming the known jobs otherwise."""
    try:
        return JOBS[name]
    except KeyError:
        raise ValueError(f"unknown worker job '{name}'; known jobs: {', '.join(sorted(JOBS))}") from None
