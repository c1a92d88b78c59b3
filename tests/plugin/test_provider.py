"""The Processing provider in a real QGIS: registration, algorithms, Diagnostics, cancel, crash."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

pytestmark = pytest.mark.qgis


def test_plugin_import_is_light() -> None:
    """Importing the plugin package and its classFactory must not pull torch/rasterio/onnxruntime."""
    import subprocess
    import sys

    code = (
        "import sys, sarcoreg, sarcoreg.plugin, sarcoreg.core, sarcoreg.core.worker_client;"
        "heavy=[m for m in ('torch','rasterio','onnxruntime','cv2','numpy') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_provider_registers_with_its_algorithms(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    provider = QgsApplication.processingRegistry().providerById("sarcoreg")
    assert provider is not None and provider.name() == "SAR-Optical Co-registration"
    ids = {alg.id() for alg in provider.algorithms()}
    assert "sarcoreg:diagnostics" in ids
    alg = QgsApplication.processingRegistry().algorithmById("sarcoreg:diagnostics")
    assert alg.shortHelpString() and alg.displayName() == "Diagnostics"


def test_class_factory_plugin_object(qgis_processing) -> None:  # type: ignore[no-untyped-def]
    """classFactory(None) works as under qgis_process: initProcessing adds, unload removes."""
    import sarcoreg

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("sarcoreg")
    if existing is not None:
        registry.removeProvider(existing)
    plugin = sarcoreg.classFactory(None)
    plugin.initProcessing()
    assert registry.providerById("sarcoreg") is not None
    plugin.unload()
    assert registry.providerById("sarcoreg") is None
    from sarcoreg.plugin.provider import SarcoregProvider

    registry.addProvider(SarcoregProvider())  # leave the session as we found it


class _Recorder(QgsProcessingFeedback):
    def __init__(self, cancel_after_progress: bool = False) -> None:
        super().__init__()
        self.progress: list[float] = []
        self.infos: list[str] = []
        self.cancel_after_progress = cancel_after_progress
        self.cancelled_at: float | None = None
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value: float) -> None:
        self.progress.append(value)
        if self.cancel_after_progress and self.cancelled_at is None:
            self.cancelled_at = time.monotonic()
            self.cancel()

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.infos.append(info)
        super().pushInfo(info)


def test_diagnostics_through_processing_run(sarcoreg_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import processing

    feedback = _Recorder()
    out = tmp_path / "diag.html"
    result = processing.run("sarcoreg:diagnostics", {"OUTPUT_HTML": str(out)}, feedback=feedback)
    text = result["REPORT"]
    for needle in (
        "qgis: 3.",
        "gdal (QGIS)",
        "proj (QGIS)",
        "worker python",
        "torch",
        "onnxruntime",
        "execution providers: ",
        "CPUExecutionProvider",
        "CUDA devices",
        "shipped models",
    ):
        assert needle in text, needle
    assert type(text) is str
    html = out.read_text(encoding="utf-8")
    assert "<table>" in html and "onnxruntime" in html
    assert feedback.progress and max(feedback.progress) == pytest.approx(100.0)
    assert feedback.progress == sorted(feedback.progress)


def test_cancel_stops_the_worker_within_a_second(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    from sarcoreg.plugin.worker_bridge import run_worker_job

    feedback = _Recorder()
    threading.Timer(0.8, feedback.cancel).start()
    pid_box: list[int] = []
    feedback.pushInfo = lambda m: (
        pid_box.append(int(m.split("pid ")[1].split(",")[0])) if "selftest: pid" in m else None
    )  # type: ignore[method-assign]
    t0 = time.monotonic()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run_worker_job("selftest", {"seconds": 60}, feedback)
    assert time.monotonic() - t0 < 0.8 + 1.0
    assert pid_box, "the worker never reported its pid"
    with pytest.raises(ProcessLookupError):
        os.kill(pid_box[0], 0)


def test_cancel_diagnostics_algorithm(sarcoreg_provider) -> None:  # type: ignore[no-untyped-def]
    import processing

    feedback = _Recorder(cancel_after_progress=True)
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("sarcoreg:diagnostics", {}, feedback=feedback)
    assert feedback.cancelled_at is not None and time.monotonic() - feedback.cancelled_at < 1.0


def test_crashing_worker_gives_a_clear_error_and_qgis_stays_up(
    sarcoreg_provider, tmp_path: Path, worker_python: str
) -> None:  # type: ignore[no-untyped-def]
    import processing
    from processing.core.ProcessingConfig import ProcessingConfig

    # An "interpreter" that starts the real worker and then dies of a segfault mid-job.
    fake = tmp_path / "crashing-python"
    fake.write_text(
        f"#!/bin/sh\n(sleep 1; echo 'native library blew up' >&2; kill -SEGV $$) &\nexec {worker_python} \"$@\"\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    ProcessingConfig.setSettingValue("SARCOREG_PYTHON", str(fake))
    try:
        with pytest.raises(QgsProcessingException) as info:
            processing.run("sarcoreg:diagnostics", {}, feedback=QgsProcessingFeedback())
        message = str(info.value)
        assert "killed by signal 11" in message and "native library blew up" in message
        assert "QGIS is unaffected" in message
    finally:
        ProcessingConfig.setSettingValue("SARCOREG_PYTHON", "")
    # QGIS is still fine: the same algorithm runs again with the real interpreter.
    result = processing.run("sarcoreg:diagnostics", {}, feedback=QgsProcessingFeedback())
    assert "worker python" in result["REPORT"]
