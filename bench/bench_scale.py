"""Scale benchmark: Sentinel-2-sized pairs, the engine beside a GDAL-only reference, time and peak memory.

Usage::

    python bench/bench_scale.py [--sizes 10980,5490,2745] [--repeats 3] [--spacing 512] [--data DIR]
                                [--no-outputs] [--warp-reference]

1. Generates, strip by strip (the generator stays within a few hundred MB), two tiled GeoTIFFs
   per size: an optical-like uint16 reference (cells of the real WHU-OPT-SAR optical image, each
   cell flipped / rotated at random so the scene is not periodic, under a slow brightness field)
   and a SAR-like float32 linear-intensity target (:func:`sarcoreg.core.synthetic.sar_like`
   radiometry of the same scene, 4-look speckle) whose geotransform origin is moved by a known
   sub-pixel offset. The truth is the identity in pixels.
2. For each size, ``--repeats`` times and interleaved (so that the load of a shared machine hits
   both alike): co-registers the pair in a child process with the default options and
   ``--spacing``, writing every output (unless ``--no-outputs``), and runs the GDAL-only
   reference in another child: ``gdal.Translate`` of the target into a COG with the engine's
   creation options (:data:`sarcoreg.core.outputs.COG_OPTIONS`), what writing the co-registered
   raster of a shift / affine result costs at the least (read the target once, write it once);
   with ``--warp-reference`` also a ``gdal.Warp`` of it onto the reference grid into a COG (the
   least a non-affine result costs). Each figure is the minimum over the repeats, with the
   process's CPU seconds (all threads) beside the wall time and the 1-minute load average
   (``os.getloadavg``) before each run, since on a busy machine wall times follow the load.
   Peak RSS is the child's ``ru_maxrss`` (``os.wait4`` of that child alone).

Results go to ``bench/results/scale.json`` (the full-size figures at the top level: ``wall_s``,
``engine_peak_rss_mb``, ``gdal_reference_s``, ``ratio_to_gdal``; every size under ``sizes``);
the generated data to ``--data`` (default: a temporary folder, removed afterwards; an existing
``DIR/s<size>`` folder with both files is reused).
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

    t0, c0 = time.perf_counter(), time.process_time()
    res = coregister(reference, target, out_dir, CoregOptions(spacing=spacing))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    w, h = res.report["target"]["size"]
    ace = corner_error(res.target_to_reference, lambda xy: np.asarray(xy, float), float(w), float(h))
    rep = res.report
    return {"wall_s": wall, "cpu_s": cpu, "ace_px": ace, "rmse_px": rep["rmse_px"], "n_inliers": rep["n_inliers"],
            "n_candidates": rep["n_candidates"], "timings_s": rep["timings_s"],
            "timings_cpu_s": rep.get("timings_cpu_s"), "status": rep.get("status"),
            "engine_peak_rss_mb": rep["peak_rss_mb"], "median_shift_px": rep["median_shift_px"],
            "modalities": [rep["reference"]["modality"], rep["target"]["modality"]],
            "coarse": rep["coarse"], "outputs": sorted(str(p) for p in res.outputs.values())}


def gdal_reference(reference: str, target: str, out_dir: str, warp: bool) -> dict[str, Any]:
    """The GDAL-only reference (runs in a child process): the target into a COG, timed.

    ``warp`` False: ``gdal.Translate`` (the co-registered raster of a shift / affine result is the
    target's pixels under a new geotransform); True: ``gdal.Warp`` onto the reference grid
    (bilinear, multi-threaded) into a COG, the least a non-affine result costs.
    """
    from osgeo import gdal
    from sarcoreg.core.outputs import COG_OPTIONS

    gdal.UseExceptions()
    out = Path(out_dir) / ("gdal-warp.tif" if warp else "gdal-translate.tif")
    t0, c0 = time.perf_counter(), time.process_time()
    ds: Any
    if warp:
        ref = gdal.Open(reference)
        x0, dx, _, y0, _, dy = ref.GetGeoTransform()
        bounds = (x0, y0 + dy * ref.RasterYSize, x0 + dx * ref.RasterXSize, y0)
        ds = gdal.Warp(str(out), target, format="COG", outputBounds=bounds, width=ref.RasterXSize,
                       height=ref.RasterYSize, resampleAlg="bilinear", multithread=True,
                       warpOptions=["NUM_THREADS=ALL_CPUS"], creationOptions=COG_OPTIONS)
    else:
        ds = gdal.Translate(str(out), target, format="COG", creationOptions=COG_OPTIONS)
    del ds  # closing writes the file
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = out.stat().st_size
    out.unlink()
    return {"wall_s": wall, "cpu_s": cpu, "bytes": size}


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


def run_reference(reference: Path, target: Path, out_dir: Path, warp: bool) -> dict[str, Any]:
    """Run :func:`gdal_reference` in a fresh interpreter; adds its peak RSS."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stdout, _, peak = run_measured(["--gdal-reference", str(reference), str(target), str(out_dir),
                                    *(["--warp-reference"] if warp else [])])
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak
    return result


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def measure_size(folder: Path, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Generate (or reuse) the ``size`` pair in ``folder`` and time the engine and the GDAL reference."""
    ref, tgt = folder / "reference.tif", folder / "target.tif"
    gen_s, gen_peak = float("nan"), float("nan")
    if not (ref.exists() and tgt.exists()):
        _, gen_s, gen_peak = run_measured(["--generate-into", str(folder), "--size", str(size),
                                           "--seed", str(args.seed)])
    engine: list[dict[str, Any]] = []
    translate: list[dict[str, Any]] = []
    warp: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        out_dir = None if args.no_outputs else folder / "outputs"
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)
        load = _load()
        engine.append({**run_child(ref, tgt, out_dir, args.spacing), "load": load})
        load = _load()
        translate.append({**run_reference(ref, tgt, folder / "gdal", False), "load": load})
        if args.warp_reference:
            load = _load()
            warp.append({**run_reference(ref, tgt, folder / "gdal", True), "load": load})
    best = min(engine, key=lambda r: r["wall_s"])
    res: dict[str, Any] = {k: best[k] for k in ("ace_px", "rmse_px", "n_inliers", "n_candidates", "status",
                                                "timings_s", "timings_cpu_s", "median_shift_px", "modalities",
                                                "coarse")}
    res.update(
        size=size,
        wall_s=best["wall_s"],
        cpu_s=min(r["cpu_s"] for r in engine),
        process_s=best["process_s"],
        engine_peak_rss_mb=max(r["child_peak_rss_mb"] for r in engine),
        gdal_reference_s=min(r["wall_s"] for r in translate),
        gdal_reference_cpu_s=min(r["cpu_s"] for r in translate),
        gdal_reference_peak_rss_mb=max(r["peak_rss_mb"] for r in translate),
        runs={"engine": [{k: r[k] for k in ("wall_s", "cpu_s", "load", "child_peak_rss_mb", "ace_px")}
                         for r in engine],
              "gdal_translate": translate, "gdal_warp": warp},
        generate_s=gen_s, generator_peak_rss_mb=gen_peak,
    )
    res["ratio_to_gdal"] = res["wall_s"] / res["gdal_reference_s"]
    res["cpu_ratio_to_gdal"] = res["cpu_s"] / res["gdal_reference_cpu_s"]
    if warp:
        res["gdal_warp_reference_s"] = min(r["wall_s"] for r in warp)
        res["gdal_warp_reference_cpu_s"] = min(r["cpu_s"] for r in warp)
    return res


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns 0 when the full-size pair meets the targets (<= 2x GDAL, <= 1.5 GB)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10980,5490,2745", help="pair sizes, the first is the full-size one")
    parser.add_argument("--size", type=int, default=None, help="one size only (same as --sizes SIZE)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size (the minimum is kept)")
    parser.add_argument("--spacing", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="keep/reuse the generated pairs here (DIR/s<size>)")
    parser.add_argument("--no-outputs", action="store_true", help="compute only, write no outputs")
    parser.add_argument("--warp-reference", action="store_true", help="also time a gdal.Warp reference")
    parser.add_argument("--out", type=Path, default=BENCH_ROOT / "results")
    parser.add_argument("--child", nargs=3, metavar=("REF", "TGT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--gdal-reference", nargs=3, metavar=("REF", "TGT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate_into:
        generate(args.generate_into, args.size or 10980, args.seed)
        return 0
    if args.child:
        ref, tgt, out = args.child
        print(json.dumps(child(ref, tgt, None if out == "-" else out, args.spacing)))
        return 0
    if args.gdal_reference:
        ref, tgt, out = args.gdal_reference
        print(json.dumps(gdal_reference(ref, tgt, out, args.warp_reference)))
        return 0

    sizes = [args.size] if args.size else [int(v) for v in args.sizes.split(",") if v.strip()]
    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.mkdtemp(prefix="sarcoreg-scale-")
        root = Path(tmp)
    try:
        from bench_engine import machine

        per_size = []
        for size in sizes:
            res = measure_size(root / f"s{size}", size, args)
            per_size.append(res)
            print(_describe(res, args), flush=True)
        full = per_size[0]
        result: dict[str, Any] = {
            **{k: full[k] for k in ("size", "wall_s", "cpu_s", "engine_peak_rss_mb", "gdal_reference_s",
                                    "gdal_reference_cpu_s", "ratio_to_gdal", "cpu_ratio_to_gdal", "ace_px",
                                    "rmse_px", "n_inliers", "n_candidates", "timings_s", "timings_cpu_s")},
            "spacing": args.spacing, "repeats": args.repeats, "offset_px": list(OFFSET_PX),
            "outputs_written": not args.no_outputs, "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(), "sizes": {str(r["size"]): r for r in per_size},
        }
        ok = full["ratio_to_gdal"] <= 2.0 and full["engine_peak_rss_mb"] <= 1536.0
        lines = [f"sarcoreg scale benchmark - {result['date']} - {result['machine']}", "",
                 "| size | engine wall | engine CPU | GDAL wall | GDAL CPU | ratio wall | ratio CPU | peak RSS | "
                 "inliers | ACE | load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in per_size:
            loads = [x["load"] for x in r["runs"]["engine"]]
            lines.append(f"| {r['size']} | {r['wall_s']:.1f} s | {r['cpu_s']:.1f} s | {r['gdal_reference_s']:.1f} s | "
                         f"{r['gdal_reference_cpu_s']:.1f} s | {r['ratio_to_gdal']:.2f} | "
                         f"{r['cpu_ratio_to_gdal']:.2f} | {r['engine_peak_rss_mb']:.0f} MB | "
                         f"{r['n_inliers']}/{r['n_candidates']} | {r['ace_px']:.3f} px | "
                         f"{min(loads):.1f}-{max(loads):.1f} |")
        lines.append(f"targets for {full['size']} (<= 2x GDAL, <= 1.5 GB): {'met' if ok else 'NOT met'}; "
                     f"<= 15 s: {'met' if full['wall_s'] <= 15.0 else 'NOT met'}")
        print("\n".join(lines))
        args.out.mkdir(parents=True, exist_ok=True)
        name = "scale-no-outputs" if args.no_outputs else "scale"
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
        return 0 if ok else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _runs(runs: list[dict[str, Any]]) -> list[tuple[float, float, float]]:
    return [(round(r["wall_s"], 1), round(r["cpu_s"], 1), r["load"]) for r in runs]


def _describe(res: dict[str, Any], args: argparse.Namespace) -> str:
    """A few lines on one size."""
    runs = res["runs"]
    return "\n".join([
        f"{res['size']} x {res['size']}: engine {res['wall_s']:.1f} s ({res['cpu_s']:.1f} s CPU), GDAL translate "
        f"{res['gdal_reference_s']:.1f} s ({res['gdal_reference_cpu_s']:.1f} s CPU) -> ratio "
        f"{res['ratio_to_gdal']:.2f} (CPU {res['cpu_ratio_to_gdal']:.2f}); peak RSS {res['engine_peak_rss_mb']:.0f} MB"
        + (f"; GDAL warp {res['gdal_warp_reference_s']:.1f} s" if "gdal_warp_reference_s" in res else ""),
        f"  engine runs (wall, CPU, load): {_runs(runs['engine'])}",
        f"  GDAL runs (wall, CPU, load): {_runs(runs['gdal_translate'])}",
        f"  stages wall (s): {res['timings_s']}",
        f"  stages CPU (s): {res['timings_cpu_s']}",
        f"  tie points: {res['n_inliers']} inliers of {res['n_candidates']}; RMSE {res['rmse_px']:.3f} px; "
        f"ACE {res['ace_px']:.3f} px; {res['status']}; outputs {'not ' if args.no_outputs else ''}written",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
