"""AROSICS (global COREG and local COREG_LOCAL) and sarcoreg on the same Sentinel-2 pairs with a known shift.

Usage (AROSICS lives in its own environment, see ``bench/setup_arosics.sh``)::

    bench/setup_arosics.sh                       # once: .venv-arosics
    .venv-arosics/bin/python bench/bench_arosics.py [--scenes 003,050,157] [--spacing 64] [--repeats 3]

The pairs are built from real Sentinel-2 L1C scenes of ``shared/data/s1s2/volkov-1024``
(1024 x 1024, 10 m, natural colour, georeferenced in EPSG:3395 by its ``index.json``), as
GeoTIFFs:

* reference: band B4 (red) of the scene, on the scene's own grid;
* target: band B2 (blue) of the same scene, cropped by 32 px on every side (a different footprint)
  and with a geotransform whose origin is moved by a known ``OFFSET_PX`` (sub-pixel, in reference
  pixels). The truth: the correct target geotransform is the scene's, cropped.

Optical to optical on purpose: AROSICS does not do SAR to optical. Each tool runs in this one
process, one after the other, ``--repeats`` times (minimum kept), with the 1-minute load
average recorded before each run (the machine is shared):

* AROSICS ``COREG`` (one phase correlation in a 256 x 256 window, the global shift);
* AROSICS ``COREG_LOCAL`` (a grid of such windows every ``--spacing`` target pixels, outlier
  filtering level 3, ``CPUs=None`` = every core);
* sarcoreg ``coregister`` with the ``structural`` matcher, transform ``shift`` and ``affine``,
  grid spacing ``--spacing``, every output written.

Error: the corrected target's origin against the true one, in reference pixels (all three
correct a shift here; AROSICS local's tie points are reported by their median shift, which is
what a shift correction from them gives). Tie points: valid ones (AROSICS local: not flagged as
outliers, ``OUTLIER == False``; sarcoreg: inliers of the robust fit). Results go to
``bench/results/arosics.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_cases import BENCH_ROOT, DATA  # noqa: E402

#: Known error put into the target's georeferencing, reference pixels (x right, y down).
OFFSET_PX = (3.4, -2.6)
_CROP = 32
VOLKOV = DATA / "s1s2" / "volkov-1024"


def build_pair(scene: str, folder: Path) -> tuple[Path, Path, tuple[float, ...]]:
    """Write ``reference.tif`` and ``target.tif`` of one volkov scene; returns them and the true target geotransform."""
    import cv2
    from osgeo import gdal, osr

    entry = next(e for e in json.loads((VOLKOV / "index.json").read_text()) if e["id"] == scene)
    img = cv2.imread(str(VOLKOV / "opt" / f"{scene}.webp"), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read the Sentinel-2 scene {scene} under {VOLKOV}")
    blue, red = img[..., 0], img[..., 2]  # OpenCV gives B, G, R
    ulx, uly = float(entry["ulx"]), float(entry["uly"])
    px, py = float(entry["pixel_size_x"]), float(entry["pixel_size_y"])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3395)
    folder.mkdir(parents=True, exist_ok=True)

    def write(path: Path, data: np.ndarray, gt: tuple[float, ...]) -> None:
        ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[1], data.shape[0], 1, gdal.GDT_Byte,
                                                  ["TILED=YES", "COMPRESS=DEFLATE"])
        ds.SetGeoTransform(gt)
        ds.SetProjection(srs.ExportToWkt())
        ds.GetRasterBand(1).WriteArray(data)
        ds = None

    ref_path, tgt_path = folder / "reference.tif", folder / "target.tif"
    write(ref_path, red, (ulx, px, 0.0, uly, 0.0, py))
    true_gt = (ulx + _CROP * px, px, 0.0, uly + _CROP * py, 0.0, py)
    wrong_gt = (true_gt[0] + OFFSET_PX[0] * px, px, 0.0, true_gt[3] + OFFSET_PX[1] * py, 0.0, py)
    write(tgt_path, blue[_CROP:-_CROP, _CROP:-_CROP], wrong_gt)
    return ref_path, tgt_path, true_gt


def _origin_error_px(gt: tuple[float, ...] | list[float], true_gt: tuple[float, ...]) -> float:
    return float(np.hypot((gt[0] - true_gt[0]) / true_gt[1], (gt[3] - true_gt[3]) / true_gt[5]))


def run_arosics_global(ref: Path, tgt: Path, true_gt: tuple[float, ...], out: Path) -> dict[str, Any]:
    """AROSICS COREG: global shift from one matching window, and the corrected target written (GTiff)."""
    from arosics import COREG

    t0 = time.perf_counter()
    cr = COREG(str(ref), str(tgt), path_out=str(out / "arosics_global.tif"), fmt_out="GTIFF", q=True,
               progress=False)
    cr.calculate_spatial_shifts()
    t_shift = time.perf_counter() - t0
    cr.correct_shifts()
    wall = time.perf_counter() - t0
    info = cr.coreg_info
    gt = _updated_gt(info["updated map info"]) if cr.success else None
    return {"tool": "AROSICS COREG (global)", "wall_s": wall, "shift_s": t_shift, "tie_points": 1 if cr.success else 0,
            "error_px": _origin_error_px(gt, true_gt) if gt else float("nan"), "success": bool(cr.success),
            "shift_px": [float(cr.x_shift_px), float(cr.y_shift_px)] if cr.success else None}


def _updated_gt(map_info: list[Any]) -> tuple[float, ...]:
    from py_tools_ds.geo.map_info import mapinfo2geotransform

    return tuple(float(v) for v in mapinfo2geotransform(map_info))


def run_arosics_local(ref: Path, tgt: Path, true_gt: tuple[float, ...], out: Path, spacing: int) -> dict[str, Any]:
    """AROSICS COREG_LOCAL: a tie-point grid every ``spacing`` px, and the corrected target written."""
    from arosics import COREG_LOCAL

    t0 = time.perf_counter()
    crl = COREG_LOCAL(str(ref), str(tgt), grid_res=spacing, path_out=str(out / "arosics_local.tif"), fmt_out="GTIFF",
                      q=True, progress=False, CPUs=None)
    crl.calculate_spatial_shifts()
    t_shift = time.perf_counter() - t0
    table = crl.CoRegPoints_table
    valid = table[(table["OUTLIER"] == False) & (table["ABS_SHIFT"] != crl.outFillVal)]  # noqa: E712
    crl.correct_shifts()
    wall = time.perf_counter() - t0
    px = true_gt[1]
    if len(valid):
        # X/Y_SHIFT_M: the correction of the target at that point in map units (added to its
        # coordinates; the global COREG's x/y_shift_px have the same sense).
        med = np.median(valid[["X_SHIFT_M", "Y_SHIFT_M"]].to_numpy(float), axis=0)
        wrong = (true_gt[0] + OFFSET_PX[0] * px, true_gt[3] + OFFSET_PX[1] * true_gt[5])
        gt = (wrong[0] + med[0], px, 0.0, wrong[1] + med[1], 0.0, true_gt[5])
        err = _origin_error_px(gt, true_gt)
    else:
        err = float("nan")
    return {"tool": "AROSICS COREG_LOCAL", "wall_s": wall, "shift_s": t_shift, "tie_points": int(len(valid)),
            "candidates": int(len(table)), "error_px": err, "success": bool(len(valid))}


def run_sarcoreg(ref: Path, tgt: Path, true_gt: tuple[float, ...], out: Path, spacing: int,
                 transform: str) -> dict[str, Any]:
    """sarcoreg with the structural matcher: every output written; the error from ``coregistered.tif``."""
    from osgeo import gdal
    from sarcoreg.core.engine import CoregOptions, coregister

    folder = out / f"sarcoreg-{transform}"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    res = coregister(ref, tgt, folder, CoregOptions(method="structural", transform=transform, spacing=spacing))
    wall = time.perf_counter() - t0
    ds = gdal.Open(str(res.outputs["coregistered"]))
    gt = ds.GetGeoTransform()
    ds = None
    rep = res.report
    # The origin of an affine result also absorbs its small rotation / scale terms; the error at
    # the target's centre is the fairer figure for it, and equals the origin error for a shift.
    w, h = rep["target"]["size"]
    centre = np.array([w / 2.0, h / 2.0])
    got = np.array([gt[0] + gt[1] * centre[0] + gt[2] * centre[1], gt[3] + gt[4] * centre[0] + gt[5] * centre[1]])
    want = np.array([true_gt[0] + true_gt[1] * centre[0], true_gt[3] + true_gt[5] * centre[1]])
    err = float(np.hypot(*((got - want) / np.array([true_gt[1], true_gt[5]]))))
    return {"tool": f"sarcoreg structural ({transform})", "wall_s": wall, "shift_s": rep["timings_s"]["match"],
            "tie_points": int(rep["n_inliers"]), "candidates": int(rep["n_candidates"]), "error_px": err,
            "success": rep["status"] == "ok", "status": rep["status"]}


#: The runs of one scene, in order.
TOOLS = ("arosics-global", "arosics-local", "sarcoreg-shift", "sarcoreg-affine")


def _run_tool(name: str, ref: Path, tgt: Path, true_gt: tuple[float, ...], folder: Path,
              spacing: int) -> dict[str, Any]:
    """One run of one of :data:`TOOLS`, with the load average before it; a failure is a row, not a crash."""
    load = round(os.getloadavg()[0], 2)
    try:
        if name == "arosics-global":
            row = run_arosics_global(ref, tgt, true_gt, folder)
        elif name == "arosics-local":
            row = run_arosics_local(ref, tgt, true_gt, folder, spacing)
        else:
            row = run_sarcoreg(ref, tgt, true_gt, folder, spacing, name.split("-")[1])
    except Exception as exc:  # noqa: BLE001 - a tool that fails on a scene is a result
        row = {"tool": name, "wall_s": float("nan"), "tie_points": 0, "error_px": float("nan"), "success": False,
               "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    row["load"] = load
    return row


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default="003,050,157", help="volkov-1024 scene ids")
    parser.add_argument("--spacing", type=int, default=64, help="tie-point grid spacing (both tools), pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH_ROOT / "results")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sarcoreg-arosics-") as tmp:
        for scene in [s.strip() for s in args.scenes.split(",") if s.strip()]:
            folder = Path(tmp) / scene
            ref, tgt, true_gt = build_pair(scene, folder)
            runs: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.repeats):
                for name in TOOLS:
                    runs.setdefault(name, []).append(_run_tool(name, ref, tgt, true_gt, folder, args.spacing))
            for rs in runs.values():
                best = dict(min(rs, key=lambda r: r["wall_s"] if np.isfinite(r["wall_s"]) else np.inf))
                best.update(scene=scene, wall_min_s=best.pop("wall_s"), loads=[r["load"] for r in rs],
                            walls_s=[round(r["wall_s"], 3) for r in rs])
                rows.append(best)
                print(f"{scene} {best['tool']:34s} {best['wall_min_s']:7.2f} s  {best['tie_points']:4d} tie points  "
                      f"error {best['error_px']:.3f} px  load {best['loads']}", flush=True)
    lines = ["| scene | tool | time (min of runs) | tie points | error | load |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['tool']} | {r['wall_min_s']:.2f} s | {r['tie_points']} | "
                     f"{r['error_px']:.3f} px | {min(r['loads']):.1f}-{max(r['loads']):.1f} |")
    print("\n".join(lines))
    import arosics
    from bench_engine import machine

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "arosics.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "arosics": arosics.__version__,
         "offset_px": list(OFFSET_PX), "spacing": args.spacing, "repeats": args.repeats, "rows": rows},
        indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
