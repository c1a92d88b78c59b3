"""Many pairs at once: ``sarcoreg batch`` on Dask distributed (one task per pair), resumable.

Importing this package is cheap; Dask, numpy and GDAL load when a batch runs::

    from sarcoreg.core.batch import BatchOptions, load_pairs, run_batch
    pairs = load_pairs("s1/*.tif", reference="s2_mosaic.tif", defaults={"transform": "shift"})
    result = run_batch(pairs, "out/", BatchOptions(workers=4))
    print(result.counts, result.summary["html"])

Modules: :mod:`.pairs` (the pairs: a CSV table or a reference and targets), :mod:`.task` (one
pair on a worker), :mod:`.runner` (the Dask cluster, resume, faults, cancel), :mod:`.rows` and
:mod:`.summary` (``summary.csv`` / ``.gpkg`` / ``.html``), :mod:`.footprints`, :mod:`.folders`
(standard library only: paths and the clean-up of unfinished pairs, used by the QGIS plugin),
:mod:`.job` (the worker-process job behind the QGIS algorithm).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchOptions", "BatchResult", "Pair", "load_pairs", "run_batch"]

_WHERE = {"BatchOptions": "runner", "BatchResult": "runner", "run_batch": "runner", "Pair": "pairs",
          "load_pairs": "pairs"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'sarcoreg.core.batch' has no attribute '{name}'")
