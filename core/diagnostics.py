"""What this interpreter can do: versions, compute devices, the methods and the state of the shipped models.

Runs in the worker (so it describes the environment that really does the work) and from
``sarcoreg diagnostics``. Every probe is guarded: a broken library is reported, not raised.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from typing import Any

from .progress import Progress

__all__ = ["collect", "format_text"]


def _version(module: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # a missing or broken package is a finding, not a failure
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    version = getattr(mod, "__version__", None) or getattr(mod, "VERSION", None)
    return {"ok": True, "version": str(version), "import_s": round(time.perf_counter() - t0, 3)}


def _gdal() -> dict[str, Any]:
    try:
        from osgeo import gdal, osr
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    proj = f"{osr.GetPROJVersionMajor()}.{osr.GetPROJVersionMinor()}.{osr.GetPROJVersionMicro()}"
    return {"ok": True, "version": str(gdal.__version__), "proj": proj,
            "cog_driver": gdal.GetDriverByName("COG") is not None}


def _torch() -> dict[str, Any]:
    info = _version("torch")
    if not info["ok"]:
        return info
    import torch

    info["cuda_build"] = str(torch.version.cuda)
    info["cuda_available"] = bool(torch.cuda.is_available())
    info["devices"] = [
        {"index": i, "name": torch.cuda.get_device_name(i),
         "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
        for i in range(torch.cuda.device_count())
    ] if info["cuda_available"] else []
    info["threads"] = torch.get_num_threads()
    return info


def _onnxruntime() -> dict[str, Any]:
    info = _version("onnxruntime")
    if not info["ok"]:
        return info
    import onnxruntime as ort

    from ..models.safe_load import ort_telemetry_status

    info["providers"] = list(ort.get_available_providers())
    info["device"] = str(ort.get_device())
    info["telemetry"] = ort_telemetry_status()["detail"]
    return info


def _models() -> list[dict[str, Any]]:
    """Each model the lookup finds: whether it loads, and where it comes from (package / user / path folder)."""
    from ..models.packs import installed_models
    from ..models.registry import check_card, scan_cards

    cards, skipped = scan_cards()
    where = {row["name"]: row for row in installed_models() if row["active"]}
    rows = []
    for card in cards:
        row = check_card(card)
        found = where.get(card.name, {})
        row.update({k: found[k] for k in ("origin", "folder", "source") if k in found})
        rows.append(row)
    shadowed = [{"name": row["name"], "file": row["file"], "ok": True, "origin": row["origin"],
                 "folder": row["folder"], "shadowed": True} for row in installed_models() if not row["active"]]
    return rows + shadowed + [
        {"name": path.name, "file": str(path), "ok": False, "error": f"card skipped: {why}"} for path, why in skipped
    ]


def _methods(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every method of the catalog, and for a learned one whether its default model is there and loads."""
    from .methods import methods

    state = {str(m.get("name")): m for m in models if not m.get("shadowed")}
    rows = []
    for spec in methods():
        row: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "learned": spec.learned,
                               "trainable": spec.trainable, "default_model": spec.default_model}
        if spec.default_model:
            found = state.get(spec.default_model)
            row["ok"] = bool(found and found.get("ok"))
            if found is None:
                row["model_state"] = "not installed"
            else:
                row["model_state"] = "loads" if row["ok"] else f"FAILS: {found.get('error')}"
        else:
            row["ok"] = True
        rows.append(row)
    return rows


def collect(progress: Progress | None = None) -> dict[str, Any]:
    """Everything the diagnostics report shows, as a JSON-able dict."""
    progress = progress or Progress()
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": platform.platform()},
    }
    steps = [
        ("numpy", lambda: _version("numpy")),
        ("scipy", lambda: _version("scipy")),
        ("opencv", lambda: _version("cv2")),
        ("gdal", _gdal),
        ("torch", _torch),
        ("torchvision", lambda: _version("torchvision")),
        ("kornia", lambda: _version("kornia")),
        ("onnxruntime", _onnxruntime),
        ("models", _models),
    ]
    for i, (name, probe) in enumerate(steps):
        progress.report(i / len(steps), f"checking {name}")
        try:
            report[name] = probe()
        except Exception as exc:
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        report["methods"] = _methods(report["models"] if isinstance(report["models"], list) else [])
    except Exception as exc:
        report["methods"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    progress.report(1.0, "done")
    return report


def _model_state(m: dict[str, Any]) -> str:
    """``loads (user: FOLDER)`` / ``FAILS: why (package: FOLDER)`` / ``shadowed ...`` for one model row."""
    where = f" ({m.get('origin')}: {m.get('folder')})" if m.get("origin") else ""
    if m.get("shadowed"):
        return f"not used, a folder searched earlier has this name{where}"
    return ("loads" if m.get("ok") else f"FAILS: {m.get('error')}") + where


def format_text(report: dict[str, Any]) -> str:
    """A short plain-text rendering of :func:`collect`'s result."""
    lines = []
    for key, value in report.items():
        if key == "models":
            from ..models.card import user_models_dir

            lines.append(f"models: {sum(1 for m in value if not m.get('shadowed'))} found "
                         f"(user model folder: {user_models_dir()})")
            for m in value:
                lines.append(f"  {m.get('name')}: {_model_state(m)}")
        elif key == "methods" and isinstance(value, list):
            lines.append(f"methods: {', '.join(str(m.get('name')) for m in value)}")
            for m in value:
                if m.get("default_model"):
                    lines.append(f"  {m.get('name')}: default model {m.get('default_model')} ({m.get('model_state')})")
        elif isinstance(value, dict):
            if value.get("ok") is False:
                lines.append(f"{key}: NOT AVAILABLE ({value.get('error')})")
            else:
                extra = {k: v for k, v in value.items() if k not in ("ok", "version", "import_s")}
                ver = value.get("version", "")
                lines.append(f"{key}: {ver} {extra if extra else ''}".rstrip())
    return "\n".join(lines)
