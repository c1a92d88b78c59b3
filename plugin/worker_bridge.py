"""Runs a core worker job from a Processing algorithm: progress, log and cancel to/from feedback."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from ..core.worker_client import WorkerCancelled, WorkerClient, WorkerCrashed, WorkerError
from .settings import MODEL_PATH_ENV, worker_interpreter, worker_model_path


def run_worker_job(
    job: str,
    params: dict[str, Any],
    feedback: QgsProcessingFeedback | None,
    *,
    cleanup: Iterable[str] = (),
    python: str | None = None,
) -> dict[str, Any]:
    """Run ``job`` in a worker process and return its result.

    Progress goes to ``feedback.setProgress`` (0-100) and ``setProgressText``, worker log lines to
    ``pushInfo`` / ``pushWarning`` / ``reportError``, and ``feedback.isCanceled()`` stops the
    worker process within a fraction of a second.

    Raises:
        QgsProcessingException: on cancel (after the worker is stopped and partial outputs are
            removed), on a job error, or when the worker crashed; QGIS itself stays up.
    """
    feedback = feedback or QgsProcessingFeedback()
    interpreter = python or worker_interpreter()

    def on_progress(fraction: float, message: str) -> None:
        feedback.setProgress(100.0 * fraction)
        if message:
            feedback.setProgressText(message)

    def on_log(level: str, message: str) -> None:
        if level == "warning":
            feedback.pushWarning(message)
        elif level == "error":
            feedback.reportError(message, False)
        elif level == "debug":
            feedback.pushDebugInfo(message)
        else:
            feedback.pushInfo(message)

    model_path = worker_model_path()
    client = WorkerClient(python=interpreter, on_progress=on_progress, on_log=on_log,
                          is_cancelled=feedback.isCanceled, env={MODEL_PATH_ENV: model_path} if model_path else {})
    feedback.pushDebugInfo(f"sarcoreg worker: {' '.join(client.command())} (job '{job}')")
    if model_path:
        feedback.pushDebugInfo(f"{MODEL_PATH_ENV}={model_path}")
    t0 = time.monotonic()
    try:
        result = client.run(job, params, cleanup=cleanup)
    except WorkerCancelled as exc:
        feedback.pushWarning(str(exc))
        raise QgsProcessingException(f"sarcoreg {job}: {exc}") from None
    except WorkerError as exc:
        if exc.traceback:
            feedback.pushDebugInfo(exc.traceback)
        raise QgsProcessingException(f"sarcoreg {job} failed: {exc}") from None
    except WorkerCrashed as exc:
        also = " If memory was not the cause, check" if exc.signal == 9 else " Check"
        raise QgsProcessingException(
            f"sarcoreg {job}: {exc}\nQGIS is unaffected.{also} the worker interpreter in "
            "Settings > Options > Processing > Providers > SAR-Optical Co-registration, "
            "or run the Diagnostics algorithm."
        ) from None
    feedback.pushInfo(f"sarcoreg {job} finished in {time.monotonic() - t0:.1f} s (worker {interpreter})")
    return result
