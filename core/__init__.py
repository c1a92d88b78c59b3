"""sarcoreg core: QGIS-free co-registration of SAR and optical rasters.

Importing this package is cheap (no numpy, GDAL or torch): the QGIS plugin imports the worker
client from here. The heavy parts load on first use::

    from sarcoreg.core import coregister
    result = coregister("optical.tif", "sar.tif", "out/")
"""

from __future__ import annotations

from typing import Any

__all__ = ["coregister", "CoregOptions", "CoregResult", "CoregistrationFailed"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'sarcoreg.core' has no attribute '{name}'")
