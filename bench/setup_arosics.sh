#!/usr/bin/env bash
# The AROSICS bench environment (.venv-arosics, git-ignored) for bench/bench_arosics.py.
#
# A venv of Debian's Python with --system-site-packages (so it uses Debian's GDAL 3.6 bindings,
# numpy 1.x, scipy and matplotlib), AROSICS and its two sister packages without their declared
# dependencies, the light dependencies they really import, and sarcoreg itself (editable, no
# dependencies) so that one process runs both tools. geoarray >= 0.18 and py_tools_ds >= 0.22
# need GDAL >= 3.8 (datasets as context managers): the last releases that run on GDAL 3.6 are
# pinned. Idempotent: a second run with nothing to do takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-arosics
if [ ! -x "$VENV/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PIP=("$VENV/bin/pip" install -q -c constraints.txt)
"${PIP[@]}" --no-deps "arosics==1.13.2" "geoarray==0.17.2" "py_tools_ds==0.21.1"
"${PIP[@]}" "pandas<3.1" "shapely>=2,<2.3" "geopandas>=1.0,<1.2" "scikit-image<0.27" "joblib" "dill" \
    "spectral" "geojson" "pyproj>=3.6" "opencv-python-headless<4.12" "tqdm"
"${PIP[@]}" --no-deps -e .
"$VENV/bin/python" - <<'EOF'
import arosics, geoarray, py_tools_ds
from osgeo import gdal
from sarcoreg.core.engine import coregister  # noqa: F401
print(f"AROSICS {arosics.__version__}, geoarray {geoarray.__version__}, py_tools_ds {py_tools_ds.__version__}, "
      f"GDAL {gdal.__version__}: ready ({__import__('sys').prefix})")
EOF
