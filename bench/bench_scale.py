"""Scale benchmark: a Sentinel-2-sized 10980 x 10980 pair, time and peak memory of one run.

Usage::

    python bench/bench_scale.py [--size 10980] [--spacing 512] [--data DIR] [--no-outputs]

1. Generates, strip by strip (the generator stays within a few hundred MB), two tiled GeoTIFFs:
   an optical-like uint16 reference (cells of the real WHU-OPT-SAR optical image, each cell
   flipped / rotated at random so the scene is not periodic, under a slow brightness field) and
   a SAR-like float32 linear-intensity target (:func:`sarcoreg.core.synthetic.sar_like`
   radiometry of the same scene, 4-look speckle) whose geotransform origin is moved by a known
   sub-pixel offset. The truth is the identity in pixels.
2. Co-registers them in a child process with the default options and ``--spacing``, writing
   every output (unless ``--no-outputs``), and reports the wall time, the child's peak RSS
   (``ru_maxrss`` from ``os.wait4`` of that child alone) and the corner error. The generator
   runs in a child of its own, measured the same way.

Results go to ``bench/results/scale.json``; the generated data to ``--data`` (default: a
temporary folder, removed afterwards; an existing folder with both files is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_cases import BENCH_ROOT, DATA  # noqa: E402

OFFSET_PX = (23.37, -17.62)
_ORIGIN = (300000.0, 5100000.0)
_PIXEL = 10.0
_CELL = 1000


def _source_cells(seed: int) -> list[np.ndarray]:
    """The 8 flips / rotations of the WHU optical image as gray float32 in [0, 1]."""
    path = DATA / "sar-optical" / "whu-opt-sar" / "data" / "optical" / "WHU-OPT-SAR.tif"
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read {path}")
    img = img[:_CELL, :_CELL].astype(np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5])
    g = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    out = []
    for k in range(4):
        r = np.rot90(g, k)
        out += [np.ascontiguousarray(r), np.ascontiguousarray(r[:, ::-1])]
    return out


def _create(path: Path, size: int, dtype: int, origin: tuple[float, float]) -> Any:
    from osgeo import gdal, osr

    opts = ["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "BIGTIFF=IF_SAFER", "COMPRESS=LZW"]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 1, dtype, opts)
    ds.SetGeoTransform((origin[0], _PIXEL, 0.0, origin[1], 0.0, -_PIXEL))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    ds.SetProjection(srs.ExportToWkt())
    return ds


def _scene_block(cells: list[np.ndarray], pick: np.ndarray, ya: int, yb: int, xa: int, xb: int) -> np.ndarray:
    """Gray scene values of rows ``ya:yb`` and columns ``xa:xb``, float32 ``(yb - ya, xb - xa)``."""
    rows, cols = np.arange(ya, yb), np.arange(xa, xb)
    gray = np.empty((len(rows), len(cols)), np.float32)
    for ci in np.unique(rows // _CELL):
        rsel = rows[(rows // _CELL) == ci]
        for cj in np.unique(cols // _CELL):
            csel = cols[(cols // _CELL) == cj]
            cell = cells[int(pick[ci, cj])]
            gray[np.ix_(rsel - ya, csel - xa)] = cell[np.ix_(rsel % _CELL, csel % _CELL)]
    # Slow brightness field (period ~7 km), so that no two cells look the same.
    gain = 0.85 + 0.15 * np.sin(cols[None, :] / 1100.0 + 0.7) * np.cos(rows[:, None] / 1300.0 - 0.3)
    return np.clip(gray * gain.astype(np.float32), 0.0, 1.0)


def generate(folder: Path, size: int, seed: int = 0, strip: int = 512,
             block_cols: int = 2048) -> tuple[Path, Path]:
    """Write ``reference.tif`` (uint16) and ``target.tif`` (float32) of ``size`` x ``size``.

    Works block by block (``strip`` rows x ``block_cols`` columns plus a 16 px halo, which the
    filters of :func:`sar_like` do not reach beyond), so memory stays in the low hundreds of MB;
    one transfer curve (one seed) for the whole scene.

    Returns:
        ``(reference path, target path)``.
    """
    from osgeo import gdal
    from sarcoreg.core.synthetic import gamma_speckle, sar_like

    folder.mkdir(parents=True, exist_ok=True)
    ref_path, tgt_path = folder / "reference.tif", folder / "target.tif"
    cells = _source_cells(seed)
    rng = np.random.default_rng(seed)
    n_cells = -(-size // _CELL)
    pick = rng.integers(0, len(cells), size=(n_cells, n_cells))
    ref = _create(ref_path, size, gdal.GDT_UInt16, _ORIGIN)
    tgt_origin = (_ORIGIN[0] + OFFSET_PX[0] * _PIXEL, _ORIGIN[1] - OFFSET_PX[1] * _PIXEL)
    tgt = _create(tgt_path, size, gdal.GDT_Float32, tgt_origin)
    halo = 16
    for y0 in range(0, size, strip):
        y1 = min(size, y0 + strip)
        for x0 in range(0, size, block_cols):
            x1 = min(size, x0 + block_cols)
            ya, yb = max(0, y0 - halo), min(size, y1 + halo)
            xa, xb = max(0, x0 - halo), min(size, x1 + halo)
            gray = _scene_block(cells, pick, ya, yb, xa, xb)
            inner = (slice(y0 - ya, y1 - ya), slice(x0 - xa, x1 - xa))
            ref.GetRasterBand(1).WriteArray((1.0 + 9000.0 * gray[inner]).astype(np.uint16), x0, y0)
            sar = sar_like(gray, seed=seed, speckle=False)[inner]
            sar *= gamma_speckle(sar.shape, 4.0, np.random.default_rng([seed, y0, x0]))
            tgt.GetRasterBand(1).WriteArray(sar.astype(np.float32), x0, y0)
    ref.FlushCache()
    tgt.FlushCache()
    ref = tgt = None
    return ref_path, tgt_path


def child(reference: str, target: str, out_dir: str | None, spacing: int) -> dict[str, Any]:
    """Co-register with the default options and ``spacing`` (runs in the child process)."""
    from sarcoreg.core.engine import CoregOptions, coregister
    from sarcoreg.core.synthetic import corner_error

    t0 = time.perf_counter()
    res = coregister(reference, target, out_dir, CoregOptions(spacing=spacing))
    wall = time.perf_counter() - t0
    w, h = res.report["target"]["size"]
    ace = corner_error(res.target_to_reference, lambda xy: np.asarray(xy, float), float(w), float(h))
    rep = res.report
    return {"wall_s": wall, "ace_px": ace, "rmse_px": rep["rmse_px"], "n_inliers": rep["n_inliers"],
            "n_candidates": rep["n_candidates"], "timings_s": rep["timings_s"],
            "engine_peak_rss_mb": rep["peak_rss_mb"], "median_shift_px": rep["median_shift_px"],
            "modalities": [rep["reference"]["modality"], rep["target"]["modality"]],
            "coarse": rep["coarse"], "outputs": sorted(str(p) for p in res.outputs.values())}


def run_measured(args: list[str]) -> tuple[str, float, float]:
    """Run this script with ``args`` in a fresh interpreter and measure that process alone.

    Returns:
        ``(stdout, wall seconds, peak RSS in MB)``; the peak comes from ``wait4`` of that one
        child (``ru_maxrss``), so neither this process nor other children count.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} child failed ({proc.returncode}):\n{err.read()[-3000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024.0


def run_child(reference: Path, target: Path, out_dir: Path | None, spacing: int) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter; adds its peak RSS and total wall time."""
    stdout, total, peak = run_measured(["--child", str(reference), str(target),
                                        str(out_dir) if out_dir else "-", "--spacing", str(spacing)])
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result.update(process_s=total, child_peak_rss_mb=peak)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns 0 when the run meets the targets (< 120 s, < 3 GB)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--spacing", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="keep/reuse the generated pair here")
    parser.add_argument("--no-outputs", action="store_true", help="compute only, write no outputs")
    parser.add_argument("--out", type=Path, default=BENCH_ROOT / "results")
    parser.add_argument("--child", nargs=3, metavar=("REF", "TGT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_into:
        generate(args.generate_into, args.size, args.seed)
        return 0
    if args.child:
        ref, tgt, out = args.child
        print(json.dumps(child(ref, tgt, None if out == "-" else out, args.spacing)))
        return 0

    tmp = None
    folder = args.data
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="sarcoreg-scale-")
        folder = Path(tmp)
    try:
        ref, tgt = folder / "reference.tif", folder / "target.tif"
        gen_s, gen_peak = float("nan"), float("nan")
        if not (ref.exists() and tgt.exists()):
            _, gen_s, gen_peak = run_measured(["--generate-into", str(folder), "--size", str(args.size),
                                               "--seed", str(args.seed)])
        out_dir = None if args.no_outputs else folder / "outputs"
        res = run_child(ref, tgt, out_dir, args.spacing)
        res.update(size=args.size, spacing=args.spacing, offset_px=list(OFFSET_PX), generate_s=gen_s,
                   generator_peak_rss_mb=gen_peak, outputs_written=not args.no_outputs,
                   date=time.strftime("%Y-%m-%d"))
        from bench_engine import machine

        res["machine"] = machine()
        ok = res["wall_s"] < 120.0 and res["child_peak_rss_mb"] < 3072.0
        lines = [
            f"sarcoreg scale benchmark - {res['date']} - {res['machine']}",
            f"  pair: {args.size} x {args.size} uint16 optical-like + float32 SAR-like, tiled GTiff; "
            f"offset in the target origin {OFFSET_PX} px",
            f"  generator (own process): {gen_s:.1f} s, peak RSS {gen_peak:.0f} MB "
            "(nan: reused existing files)",
            f"  coregister (default options, spacing {args.spacing}, outputs "
            f"{'written' if out_dir else 'not written'}): {res['wall_s']:.1f} s in the engine, "
            f"{res['process_s']:.1f} s with the interpreter start",
            f"  child peak RSS: {res['child_peak_rss_mb']:.0f} MB",
            f"  stages (s): {res['timings_s']}",
            f"  tie points: {res['n_inliers']} inliers of {res['n_candidates']} candidates; "
            f"RMSE {res['rmse_px']:.3f} px; ACE {res['ace_px']:.3f} px; median shift {res['median_shift_px']}",
            f"  targets (< 120 s, < 3 GB): {'met' if ok else 'NOT met'}",
        ]
        print("\n".join(lines))
        args.out.mkdir(parents=True, exist_ok=True)
        name = "scale-no-outputs" if args.no_outputs else "scale"
        (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
        return 0 if ok else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
