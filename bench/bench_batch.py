"""Batch benchmark: ``sarcoreg batch`` serial vs a Dask LocalCluster, pairs per minute, sizing.

Usage::

    python bench/bench_batch.py [--pairs 40] [--size 384] [--modes serial,dask2] [--scale-sizes 2048,6144]
                                [--data DIR]

1. Writes ``--pairs`` real Sentinel-1/2 pairs: ``--size`` px crops of the ``s1s2/volkov-1024``
   scenes (Sentinel-2 RGB reference, Sentinel-1 VH target, 10 m), the SAR origin moved by a few
   pixels (``bench/batch_cases.py``), and runs the batch once per mode into a fresh folder,
   default options, every output written:

   * ``serial``: ``--workers 0``, the pairs one after another in this process (no Dask);
   * ``daskN``: a LocalCluster of N worker processes, one thread each.

   Each mode reports the wall time (start of the batch to the summary written, cluster start
   included), pairs per minute, the median engine time and CPU time per pair and the speed-up
   over serial. The pairs run in ``--rounds`` parts, the modes taking turns on each part, so
   that on a shared machine every mode meets the same load.
2. Measures the cost of one large pair at each of ``--scale-sizes`` (the 10 m optical-like /
   SAR-like pair of ``bench_scale.py``, made of real WHU optical cells, run serially through the
   batch with every output written) and fits ``CPU seconds = a + b * megapixels`` through them
   (CPU time of the process over the pair, all its threads: what a worker with a core of its
   own needs, and much less disturbed than the wall time by other work on a shared machine): at
   these sizes the automatic grid holds about 1000 candidates whatever the size, so the matching
   is the constant ``a`` and reading, overviews and writing grow with the pixels (``b``). That
   projects the cost of a Sentinel-1 IW GRD scene (about 25,000 x 16,700 px at 10 m) and the time
   of 10,000 scenes on N workers (one core each).

Results go to ``bench/results/batch.json`` and ``bench/results/batch.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from batch_cases import volkov_batch_cases  # noqa: E402
from engine_cases import BENCH_ROOT, DATA  # noqa: E402
from sarcoreg.core.batch import BatchOptions, load_pairs, run_batch  # noqa: E402

#: A Sentinel-1 IW GRD scene at 10 m: about 250 km x 167 km.
S1_SCENE_PX = (25_000, 16_700)
#: Scenes of the sizing table.
N_SCENES = 10_000
#: Workers of the sizing table.
SIZING_WORKERS = (1, 2, 8, 32, 128, 512)


def _scene_ids() -> list[str]:
    return [e["id"] for e in json.loads((DATA / "s1s2" / "volkov-1024" / "index.json").read_text())]


def _cases(folder: Path, n: int, size: int) -> Path:
    """``n`` crops (cycling through the scenes, offsets from a seeded draw); returns the CSV table."""
    from batch_cases import write_table
    from engine_cases import volkov_truth

    ids = [i for i in _scene_ids() if volkov_truth(i) is not None]
    rng = np.random.default_rng(0)
    offsets = [(round(float(x), 2), round(float(y), 2)) for x, y in rng.uniform(-5, 5, size=(n, 2))]
    scenes = [ids[i % len(ids)] for i in range(n)]
    origin = max(0, (1024 - size) // 2)
    cases = []
    for k in range(0, n, len(ids)):  # a scene may come back with another offset: another folder
        chunk = volkov_batch_cases(folder / f"set{k // len(ids)}", scenes[k:k + len(ids)], size, origin,
                                   offsets[k:k + len(ids)])
        for c in chunk:
            c.id = f"{c.id}-{k // len(ids)}"
        cases += chunk
    return write_table(cases, folder / "pairs.csv")


def _process_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _run(table: Path, out: Path, workers: int) -> dict[str, Any]:
    """Run every pair of ``table`` in one batch (the large pairs, in this process).

    ``process_cpu_s`` is the CPU time of this whole process over the batch (every thread: GDAL's
    too), which is what a worker with a core of its own spends on the pairs.
    """
    pairs = load_pairs(table)
    t0, cpu0 = time.perf_counter(), _process_cpu()
    res = run_batch(pairs, out, BatchOptions(workers=workers, redo=True, dashboard_address=None))
    stats = _stats(res.rows, time.perf_counter() - t0, workers)
    return {**stats, "process_cpu_s": round(_process_cpu() - cpu0, 1)}


def _stats(rows: list[dict[str, Any]], wall: float, workers: int) -> dict[str, Any]:
    runtimes = [r["runtime_s"] for r in rows if r.get("runtime_s")]
    cpu = [r["cpu_s"] for r in rows if r.get("cpu_s")]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "mode": "serial" if workers == 0 else f"dask{workers}",
        "workers": max(workers, 1),
        "pairs": len(rows),
        "wall_s": round(wall, 1),
        "pairs_per_min": round(60.0 * len(rows) / wall, 2),
        "engine_s_median": round(statistics.median(runtimes), 2) if runtimes else None,
        "engine_s_sum": round(sum(runtimes), 1),
        "cpu_s_median": round(statistics.median(cpu), 2) if cpu else None,
        "cpu_s_sum": round(sum(cpu), 1),
        "counts": counts,
    }


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} cores"


def _projection(points: list[tuple[float, float]], efficiency: float) -> dict[str, Any]:
    """Per-scene cost of a Sentinel-1 scene from ``seconds = a + b * Mpx`` (least squares through
    ``points`` = ``[(Mpx, seconds), ...]``), and the sizing table."""
    mpx = np.array([p[0] for p in points])
    sec = np.array([p[1] for p in points])
    b, a = np.polyfit(mpx, sec, 1) if len(points) > 1 else (sec[0] / mpx[0], 0.0)
    b, a = max(float(b), 0.0), max(float(a), 0.0)
    mp_scene = S1_SCENE_PX[0] * S1_SCENE_PX[1] / 1e6
    per_scene = a + b * mp_scene
    rows = []
    for n in SIZING_WORKERS:
        hours = N_SCENES * per_scene / (n * (1.0 if n == 1 else efficiency)) / 3600.0
        rows.append({"workers": n, "hours": round(hours, 1), "days": round(hours / 24.0, 2)})
    return {"a_s": round(a, 2), "b_s_per_mpx": round(b, 3), "s1_scene_mpx": round(mp_scene, 1),
            "s_per_scene": round(per_scene, 1), "efficiency": round(efficiency, 2), "sizing": rows,
            "points": [[round(m, 2), round(t, 1)] for m, t in points]}


def _large_pair(folder: Path, size: int) -> Path:
    """One ``size`` px pair of ``bench_scale.py``'s generator; returns its CSV table."""
    from bench_scale import generate

    ref, tgt = generate(folder, size)
    table = folder / "pairs.csv"
    table.write_text(f"reference,target,id\n{ref},{tgt},scale{size}\n", encoding="utf-8")
    return table


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}", "",
             "| mode | workers | pairs | wall s | pairs / min | engine s per pair (median) | CPU s per pair (median) "
             "| speed-up | statuses |",
             "|---|---|---|---|---|---|---|---|---|"]
    serial = next((r for r in results["modes"] if r["mode"] == "serial"), None)
    for r in results["modes"]:
        speed = f"{serial['wall_s'] / r['wall_s']:.2f}x" if serial else ""
        lines.append(f"| {r['mode']} | {r['workers']} | {r['pairs']} | {r['wall_s']} | {r['pairs_per_min']} | "
                     f"{r['engine_s_median']} | {r['cpu_s_median']} | {speed} | {r['counts']} |")
    p = results.get("projection")
    if p:
        lines += ["", f"Large pairs (Mpx, CPU s): {p['points']}; cost {p['a_s']} s + {p['b_s_per_mpx']} s/Mpx -> "
                  f"{p['s_per_scene']} s for a "
                  f"{p['s1_scene_mpx']} Mpx Sentinel-1 scene; sizing at parallel efficiency {p['efficiency']} "
                  f"(one core per worker; measured here: {p.get('efficiency_here', '-')})", "",
                  f"| workers | {N_SCENES} scenes, hours | days |", "|---|---|---|"]
        lines += [f"| {r['workers']} | {r['hours']} | {r['days']} |" for r in p["sizing"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--size", type=int, default=384, help="crop side of the pairs, px")
    ap.add_argument("--modes", default="serial,dask2", help="serial and/or daskN, comma separated")
    ap.add_argument("--rounds", type=int, default=2,
                    help="run the pairs in this many parts, the modes taking turns on each part, so that every "
                    "mode meets the same load of a shared machine (default 2)")
    ap.add_argument("--scale-sizes", default="2048,6144", help="large pair sizes for the cost model ('': skip)")
    ap.add_argument("--data", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--results", type=Path, default=BENCH_ROOT / "results", help="where batch.json / .md go")
    a = ap.parse_args()

    scratch = a.data or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    print(f"writing {a.pairs} pairs of {a.size} px into {scratch}; {_load()}", flush=True)
    table = _cases(scratch / "pairs", a.pairs, a.size)
    results: dict[str, Any] = {"machine": _load(), "size": a.size, "modes": []}
    pairs = load_pairs(table)
    modes = [m for m in a.modes.split(",") if m]
    acc: dict[str, tuple[list[dict[str, Any]], float]] = {m: ([], 0.0) for m in modes}
    for k in range(a.rounds):
        part = pairs[k::a.rounds]
        for mode in modes if k % 2 == 0 else modes[::-1]:  # alternate which mode goes first
            workers = 0 if mode == "serial" else int(mode.removeprefix("dask"))
            print(f"round {k + 1}/{a.rounds}, {mode}: {len(part)} pairs ... ({_load()})", flush=True)
            t0 = time.perf_counter()
            res = run_batch(part, scratch / f"out-{mode}", BatchOptions(workers=workers, redo=True,
                                                                        dashboard_address=None))
            rows, wall = acc[mode]
            acc[mode] = (rows + res.rows, wall + time.perf_counter() - t0)
    for mode in modes:
        row = _stats(*acc[mode], 0 if mode == "serial" else int(mode.removeprefix("dask")))
        results["modes"].append(row)
        print(f"{mode}: {row}", flush=True)
    sizes = [int(v) for v in a.scale_sizes.split(",") if v.strip()]
    points = []
    for size in sizes:
        print(f"cost of a {size} x {size} px pair: generating and running it serially ...", flush=True)
        row = _run(_large_pair(scratch / f"scale{size}", size), scratch / f"out-scale{size}", 0)
        results.setdefault("scale", []).append({**row, "size": size})
        points.append((size * size / 1e6, row["process_cpu_s"]))
    if points:
        # The sizing assumes one core per worker (pairs share nothing); what a second worker
        # gained on this machine is recorded beside it (here it competes for the cores).
        results["projection"] = _projection(points, 1.0)
        serial = next((r for r in results["modes"] if r["mode"] == "serial"), None)
        parallel = [r for r in results["modes"] if r["workers"] > 1]
        if serial and parallel:
            results["projection"]["efficiency_here"] = round(
                serial["wall_s"] / parallel[-1]["wall_s"] / parallel[-1]["workers"], 2)
    results["machine_end"] = _load()
    out = a.results
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md = _markdown(results)
    (out / "batch.md").write_text(md, encoding="utf-8")
    print(md)
    return 0 if all(math.isfinite(r["wall_s"]) for r in results["modes"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
