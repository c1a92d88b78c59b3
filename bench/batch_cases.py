"""Real Sentinel-1/2 pairs with known offsets for the batch tests and ``bench_batch.py``.

Each pair is a crop of a ``s1s2/volkov-1024`` scene (Sentinel-2 RGB reference, Sentinel-1 VH
target, 10 m, EPSG:3395) written as two GeoTIFFs; the SAR's origin is moved by a known offset,
so its georeferencing is wrong by that much. The truth of the correction the engine should find
combines that offset with the scene's own residual alignment (the refined alignment of
``training/data/volkov_alignment.json``, :func:`engine_cases.volkov_truth`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from engine_cases import _moved, _write_gt_tiff, volkov_scene, volkov_truth

__all__ = ["BatchCase", "GOOD_SCENES", "OFFSETS", "no_overlap_case", "volkov_batch_cases", "write_table"]

#: Scenes whose 384 px crop the engine registers ``ok`` within 0.6 px of the truth (measured).
GOOD_SCENES: tuple[str, ...] = ("020", "021", "048", "060", "014", "049")
#: Offsets put into the SAR georeferencing, pixels (one per case, cycled).
OFFSETS: tuple[tuple[float, float], ...] = ((4.3, -3.6), (-3.2, 2.7), (2.5, 3.9), (-4.1, -2.2), (3.7, 1.4),
                                            (-2.6, -4.4))
#: Options of the test pairs: a coarser grid than the default and only the report written, for speed.
FAST_OPTIONS: dict[str, str] = {"spacing": "24", "write_outputs": "report_json report_html"}


@dataclass
class BatchCase:
    """One pair and its truth.

    Attributes:
        id: Pair id.
        reference: Reference GeoTIFF (optical).
        target: Target GeoTIFF (SAR, origin moved by ``offset``).
        offset: Offset put into the target's georeferencing, pixels ``(dx, dy)``.
        truth_shift: The correction at the overlap centre the engine should find, reference
            pixels ``(dx, dy)`` (None for a pair that must fail).
    """

    id: str
    reference: Path
    target: Path
    offset: tuple[float, float]
    truth_shift: tuple[float, float] | None


def _truth_at_centre(truth: Callable[[np.ndarray], np.ndarray], size: int, origin: int,
                     offset: tuple[float, float]) -> tuple[float, float]:
    """Correction at the centre of the overlap of a crop whose target origin moved by ``offset``.

    The target pixel ``p`` sits at ``q = p + offset`` on the reference grid; its content belongs
    at the reference pixel ``truth(p + origin) - origin`` (crop of the same window of both).
    """
    ox, oy = offset
    q = np.array([[size / 2.0 + ox / 2.0, size / 2.0 + oy / 2.0]])
    target_px = q - np.array([[ox, oy]])
    ref = truth(target_px + origin) - origin
    d = (ref - q)[0]
    return float(d[0]), float(d[1])


def volkov_batch_cases(folder: Path, scenes: Sequence[str] = GOOD_SCENES, size: int = 384, origin: int = 256,
                       offsets: Sequence[tuple[float, float]] = OFFSETS) -> list[BatchCase]:
    """Crops ``[origin, origin + size)`` of each scene as a reference / moved-target GeoTIFF pair."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for i, sid in enumerate(scenes):
        truth = volkov_truth(sid)
        if truth is None:
            raise ValueError(f"volkov scene {sid} has no refined alignment: no truth for it")
        opt, sar, gt = volkov_scene(sid)
        crop_gt = [gt[0] + origin * gt[1], gt[1], 0.0, gt[3] + origin * gt[5], 0.0, gt[5]]
        off = offsets[i % len(offsets)]
        win = (slice(origin, origin + size), slice(origin, origin + size))
        ref = _write_gt_tiff(folder / f"s2_{sid}.tif", opt[:, win[0], win[1]], crop_gt, "EPSG:3395")
        tgt = _write_gt_tiff(folder / f"s1_{sid}.tif", sar[win], _moved(crop_gt, off), "EPSG:3395")
        cases.append(BatchCase(f"v{sid}", ref, tgt, off, _truth_at_centre(truth, size, origin, off)))
    return cases


def no_overlap_case(folder: Path, like: BatchCase) -> BatchCase:
    """A deliberately bad pair: ``like``'s SAR georeferenced 100 km away from its reference."""
    from osgeo import gdal

    src = gdal.Open(str(like.target))
    gt = list(src.GetGeoTransform())
    gt[0] += 100_000.0
    target = _write_gt_tiff(folder / "s1_far_away.tif", src.ReadAsArray(), gt, "EPSG:3395")
    src = None
    return BatchCase("far_away", like.reference, target, (0.0, 0.0), None)


def write_table(cases: Sequence[BatchCase], path: Path, options: dict[str, str] | None = None) -> Path:
    """The CSV table of ``sarcoreg batch`` for ``cases`` (paths relative to the table's folder)."""
    cols = list(options or {})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["reference", "target", "id", *cols])
        for c in cases:
            w.writerow([os.path.relpath(c.reference, path.parent), os.path.relpath(c.target, path.parent), c.id,
                        *[(options or {})[k] for k in cols]])
    return path
