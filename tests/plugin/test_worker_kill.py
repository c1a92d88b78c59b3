"""A worker killed with SIGKILL under a Processing run: the memory hint and the interpreter hint (issue 12)."""

from __future__ import annotations

import os
import signal

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback


class _KillOnProgress(QgsProcessingFeedback):
    """Feedback that sends SIGKILL to the worker (pid from its log line) once it reports progress."""

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None
        self.killed = False

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS API name)
        if "selftest: pid" in info:
            self.pid = int(info.split("pid ")[1].split(",")[0])
        super().pushInfo(info)

    def setProgress(self, progress: float) -> None:  # noqa: N802 (QGIS API name)
        if progress > 10 and self.pid is not None and not self.killed:
            self.killed = True
            os.kill(self.pid, signal.SIGKILL)
        super().setProgress(progress)


def test_sigkilled_worker_names_memory_and_the_interpreter(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    from sarcoreg.plugin.worker_bridge import run_worker_job

    feedback = _KillOnProgress()
    with pytest.raises(QgsProcessingException) as info:
        run_worker_job("selftest", {"seconds": 30}, feedback)
    message = str(info.value)
    assert feedback.killed
    assert "SIGKILL" in message and "ran out of memory" in message and "at its peak" in message
    assert "QGIS is unaffected" in message and "worker interpreter" in message
