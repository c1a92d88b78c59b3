#!/usr/bin/env bash
# Runs the test suite headless (offscreen Qt) with the project's virtual environment.
# Default: everything except tests marked slow or gpu. Extra arguments go to pytest, e.g.
#   ./run_tests.sh -m slow        # the slow tests
#   ./run_tests.sh -m gpu         # on a machine with CUDA
#   ./run_tests.sh tests/core -x  # a subset
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  echo "run_tests.sh: no .venv here; run ./setup.sh first" >&2
  exit 2
fi
export QT_QPA_PLATFORM=offscreen
export PYTHONDONTWRITEBYTECODE=1
export MPLBACKEND=Agg
# QGIS writes its profile under $HOME; keep test runs out of the user's real profile.
export QGIS_CUSTOM_CONFIG_PATH="${QGIS_CUSTOM_CONFIG_PATH:-$(mktemp -d -t sarcoreg-qgis-XXXX)}"
# Installed model packs of the user's real model folder stay out of test runs (an empty one per run).
export SARCOREG_MODELS="${SARCOREG_MODELS:-$(mktemp -d -t sarcoreg-models-XXXX)}"
MARK=(-m "not slow and not gpu")
for a in "$@"; do [ "$a" = "-m" ] && MARK=(); done
exec .venv/bin/python -m pytest "${MARK[@]}" "$@"
