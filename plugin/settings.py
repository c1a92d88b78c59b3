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


#: Processing setting: extra model folders (separated like PATH), passed to the worker as
#: ``SARCOREG_MODEL_PATH`` so that models trained with "Train a model" are found by name.
SETTING_MODEL_FOLDERS = "SARCOREG_MODEL_FOLDERS"
MODEL_PATH_ENV = "SARCOREG_MODEL_PATH"


def model_folders() -> list[str]:
    """The model folders of the Processing setting (empty list when unset or Processing is absent)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(SETTING_MODEL_FOLDERS)
    except Exception:  # Processing not initialised
        value = None
    return [p.strip() for p in str(value or "").split(os.pathsep) if p.strip()]


def add_model_folder(folder: str) -> list[str]:
    """Append ``folder`` to the "model folders" setting (once) and return the new list."""
    folders = model_folders()
    resolved = str(Path(folder).expanduser().resolve())
    if resolved not in [str(Path(f).expanduser().resolve()) for f in folders]:
        folders.append(resolved)
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.setSettingValue(SETTING_MODEL_FOLDERS, os.pathsep.join(folders))
    return folders


def worker_model_path() -> str:
    """``SARCOREG_MODEL_PATH`` for the worker: the setting's folders, then the inherited variable."""
    parts = model_folders() + [p for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p.strip()]
    return os.pathsep.join(dict.fromkeys(parts))
