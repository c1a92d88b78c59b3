"""Diagnostics: what QGIS and the sarcoreg worker environment have (versions, devices, models)."""

from __future__ import annotations

import html
import platform
import sys
from typing import Any

from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsProcessingOutputString,
    QgsProcessingParameterFileDestination,
    QgsProjUtils,
)

from ..settings import worker_interpreter
from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm


class DiagnosticsAlgorithm(SarcoregAlgorithm):
    """Diagnostics of QGIS and of the worker environment.

    Reports QGIS / GDAL / PROJ / Python, the worker's interpreter, torch, ONNX Runtime and its
    execution providers, CUDA devices and whether each model loads, and where it comes from.
    """

    OUTPUT_HTML = "OUTPUT_HTML"
    REPORT = "REPORT"
    _name = "diagnostics"
    _display = "Diagnostics"
    _group = "Tools"
    _group_id = "tools"
    _help = (
        "Checks the environment sarcoreg runs in and writes a report: QGIS, GDAL, PROJ and Python "
        "versions of QGIS; the worker's Python interpreter and its numpy, OpenCV, GDAL, torch and "
        "ONNX Runtime versions; ONNX Runtime execution providers; CUDA devices; and whether each "
        "model file is present, matches its checksum and loads, and where it comes from (the plugin's "
        "models/ folder, the user's model folder of installed model packs, or a model folder setting).<br><br>"
        "Run it first when something does not work, and attach the HTML report to bug reports. "
        "The worker interpreter is set in Settings > Options > Processing > Providers > "
        "SAR-Optical Co-registration."
    )

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Diagnostics report"), self.tr("HTML files (*.html)"),
            optional=True))
        self.addOutput(QgsProcessingOutputString(self.REPORT, self.tr("Diagnostics (text)")))

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict[str, Any]:  # noqa: N802
        qgis_side = {
            "qgis": Qgis.QGIS_VERSION,
            "gdal (QGIS)": gdal.__version__,
            "proj (QGIS)": f"{QgsProjUtils.projVersionMajor()}.{QgsProjUtils.projVersionMinor()}",
            "python (QGIS)": f"{platform.python_version()} ({sys.executable})",
            "worker interpreter": worker_interpreter(),
        }
        for k, v in qgis_side.items():
            feedback.pushInfo(f"{k}: {v}")
        worker = run_worker_job("diagnostics", {}, feedback)
        text = self._text(qgis_side, worker)
        out_html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        result: dict[str, Any] = {self.REPORT: text}
        if out_html:
            with open(out_html, "w", encoding="utf-8") as f:
                f.write(self._html(qgis_side, worker))
            result[self.OUTPUT_HTML] = out_html
        feedback.pushInfo(text)
        return result

    @staticmethod
    def _rows(worker: dict[str, Any]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        py = worker.get("python", {})
        rows.append(("worker python", f"{py.get('version')} ({py.get('executable')})"))
        for key in ("numpy", "scipy", "opencv", "gdal", "torch", "torchvision", "kornia", "onnxruntime"):
            info = worker.get(key, {})
            if not info.get("ok"):
                rows.append((key, f"not available: {info.get('error', '?')}"))
                continue
            value = str(info.get("version"))
            if key == "gdal":
                value += f" (PROJ {info.get('proj')})"
            if key == "torch":
                devices = info.get("devices") or []
                value += f"; CUDA build {info.get('cuda_build')}; CUDA available: {info.get('cuda_available')}"
                rows.append(("CUDA devices", ", ".join(f"cuda:{d['index']} {d['name']} "
                                                       f"({d['memory_gib']} GiB)" for d in devices) or "none"))
            if key == "onnxruntime":
                value += "; execution providers: " + ", ".join(info.get("providers", []))
            rows.append((key, value))
        models = worker.get("models", [])
        rows.append(("shipped models", ", ".join(str(m.get("name")) for m in models if not m.get("shadowed"))
                     or "none registered (install model packs: Models > Install model pack)"))
        for m in models:
            where = f" ({m.get('origin')}: {m.get('folder')})" if m.get("origin") else ""
            state = "loads" if m.get("ok") else f"FAILS: {m.get('error')}"
            if m.get("shadowed"):
                state = "not used, a folder searched earlier has this name"
            rows.append((f"model {m.get('name')}", state + where))
        methods = worker.get("methods")
        if isinstance(methods, list):  # the worker's method catalog
            rows.append(("methods", ", ".join(str(m.get("name")) for m in methods)))
            for m in methods:
                if m.get("default_model"):
                    rows.append((f"method {m.get('name')}",
                                 f"default model {m.get('default_model')}: {m.get('model_state')}"))
        return rows

    def _text(self, qgis_side: dict[str, str], worker: dict[str, Any]) -> str:
        rows = list(qgis_side.items()) + self._rows(worker)
        return "\n".join(f"{k}: {v}" for k, v in rows)

    def _html(self, qgis_side: dict[str, str], worker: dict[str, Any]) -> str:
        rows = list(qgis_side.items()) + self._rows(worker)
        body = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>sarcoreg diagnostics</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}</style>"
            f"</head><body><h1>sarcoreg diagnostics</h1><table>{body}</table></body></html>"
        )
