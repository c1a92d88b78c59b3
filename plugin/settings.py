"""Plugin settings: which Python interpreter runs the core worker.

Resolution order (first hit wins):
1. The Processing setting "Python interpreter for the sarcoreg worker"
   (Settings > Options > Processing > Providers > SAR-Optical Co-registration).
2. The environment variable ``SARCOREG_PYTHON``.
3. ``~/.config/sarcoreg/interpreter``, written by the project's ``setup.sh``.
4. ``.venv/bin/python`` inside the plugin folder (a development checkout).
5. ``python3`` on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent
SETTING_PYTHON = "SARCOREG_PYTHON"
CONFIG_FILE = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "sarcoreg" / "interpreter"


def default_interpreter() -> str:
    """The interpreter used when the Processing setting is empty (steps 2-5 above)."""
    env = os.environ.get("SARCOREG_PYTHON", "").strip()
    if env:
        return env
    try:
        recorded = CONFIG_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    if recorded and Path(recorded).exists():
        return recorded
    dev = PLUGIN_DIR / ".venv" / "bin" / "python"
    if dev.exists():
        return str(dev)
    return shutil.which("python3") or "python3"


def worker_interpreter() -> str:
    """The interpreter the worker runs with, honouring the Processing setting first."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(SETTING_PYTHON)
    except Exception:  # Processing not initialised (plain PyQGIS scripts)
        value = None
    if value and str(value).strip():
        return str(value).strip()
    return default_interpreter()
