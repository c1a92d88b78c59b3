"""Accuracy benchmark of the co-registration engine: every case group x every matcher.

Usage::

    python bench/bench_engine.py [--quick] [--groups sar_like,srif] [--methods structural,ncc]
                                 [--seed 0] [--cases] [--model aae=runs/x/best.onnx]

Prints one summary table (success rate, average corner error, RMSE, time, peak memory per
group and matcher) and, with ``--cases``, one row per case and matcher. Writes
``bench/results/engine[-quick].json`` (every row) and ``.md`` (the tables) next to this file.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_cases import BENCH_ROOT, GROUPS, build_group, format_table, run_case, summarise, to_json  # noqa: E402
from sarcoreg.core.methods import method_names  # noqa: E402

SUMMARY_COLUMNS = ["group", "method", "n", "success", "success_pct", "thr_px", "ace_med", "ace_p90",
                   "rmse_med", "time_mean_s", "peak_mb", "failed_runs", "selfcons_med", "selfcons_ok",
                   "verdicts", "wrong_ok", "cv_ratio_med", "cp_rmse_med"]
CASE_COLUMNS = ["group", "case", "method", "ace_px", "success", "status", "wrong_ok", "rmse_px", "rmse_cv_px",
                "true_rmse_px", "cp_rmse_px", "cp_from", "n_inliers", "n_candidates",
                "time_s", "peak_rss_mb", "offset_px", "coarse_px", "selfcons_px", "angle_deg", "error"]


#: Learned matchers: benchmarked only when asked for (they need a trained model).
LEARNED = set(method_names(learned=True))

def machine() -> str:
    """One line naming the machine the numbers were measured on."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def run(groups: list[str], methods: list[str], quick: bool, seed: int,
        progress: bool = True, models: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Build and run the cases; returns one row per case and matcher.

    Args:
        groups: Case groups.
        methods: Matchers.
        quick: A few cases per group.
        seed: Case seed.
        progress: Print a line per run.
        models: ``method -> model`` (card name or file) for learned matchers; default their shipped model.
    """
    models = models or {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sarcoreg-bench-") as tmp:
        for group in groups:
            t0 = time.perf_counter()
            cases = build_group(group, Path(tmp), quick=quick, seed=seed)
            if progress:
                print(f"[{group}] {len(cases)} cases written in {time.perf_counter() - t0:.1f} s", flush=True)
            for case in cases:
                for method in methods:
                    extra = {"matcher_options": {"model": models[method]}} if method in models else {}
                    row = run_case(case, method, **extra)
                    rows.append(row)
                    if progress:
                        err = f"  ({row['error'][:90]})" if row["error"] else ""
                        print(f"  {case.name[:44]:44s} {method:10s} ACE {row['ace_px']:8.3f}  "
                              f"{row['time_s']:5.2f} s{err}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few cases per group (smoke run)")
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma list of: {', '.join(GROUPS)}")
    parser.add_argument(
        "--methods",
        default=",".join(m for m in sorted(method_names(kind="window")) if m not in LEARNED),
        help="comma list of matchers (default: the classical ones; a learned one needs a trained model)",
    )
    parser.add_argument("--model", action="append", default=[], metavar="METHOD=MODEL",
                        help="model of a learned matcher (card name or .onnx / .pt file); repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", action="store_true", help="also print one row per case")
    parser.add_argument("--out", type=Path, default=BENCH_ROOT / "results", help="results folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    groups = [g for g in args.groups.split(",") if g]
    methods = [m for m in args.methods.split(",") if m]
    t0 = time.perf_counter()
    models = dict(m.split("=", 1) for m in args.model)
    unknown = sorted(set(models) - set(methods))
    if unknown:
        parser.error(f"--model for {', '.join(unknown)}: not among --methods {','.join(methods)}")
    rows = run(groups, methods, args.quick, args.seed, models=models)
    total = time.perf_counter() - t0
    summary = summarise(rows)
    head = (f"sarcoreg engine benchmark ({'quick' if args.quick else 'full'}, seed {args.seed}) - "
            f"{time.strftime('%Y-%m-%d')} - {machine()} - total {total:.0f} s")
    print()
    print(head)
    print(format_table(summary, SUMMARY_COLUMNS))
    short = [{**r, "error": r["error"][:100]} for r in rows]
    if args.cases:
        print()
        print(format_table(short, CASE_COLUMNS))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "engine-quick" if args.quick else "engine"
    if set(groups) != set(GROUPS):
        stem += "-" + "-".join(groups)
    if models:
        stem += "-" + "-".join(f"{k}-{Path(v).stem}" for k, v in sorted(models.items()))
    (args.out / f"{stem}.json").write_text(to_json(rows))
    md = [f"# {head}", "", format_table(summary, SUMMARY_COLUMNS, markdown=True), "",
          "## Cases", "", format_table(short, CASE_COLUMNS, markdown=True), ""]
    (args.out / f"{stem}.md").write_text("\n".join(md))
    print(f"\nwrote {args.out / (stem + '.json')} and .md")
    ok = all(np.isfinite(r["ace_px"]) or r["error"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
