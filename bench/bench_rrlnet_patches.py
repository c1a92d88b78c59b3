"""Patch-matching benchmark in the style of the RRL-Net paper's Table VI (FPR95 per subset).

Usage::

    python bench/bench_rrlnet_patches.py --scorer ncc|cfog|sift-desc
    python bench/bench_rrlnet_patches.py --model rrlnet-visnir [--pairs-per-image 200] [--limit 20]
        [--subsets field,water] [--seed 0] [--threads 1] [--tag TEXT]

The published VIS-NIR patch set cannot be downloaded here, so the patches are cut from the eight
test subsets of ``vis-nir/registration`` (20 image pairs each): the RGB image is warped into the
NIR frame with the ground-truth affine (``cv2.warpAffine(rgb, M, size)``), both are cropped to
the rectangle where both hold image data, and ``training.patches.build_patch_pairs`` cuts
64 x 64 matching (same SIFT keypoint in both) and non-matching (another keypoint, at least 12 px
away) pairs, 50/50, seeded. Patch ``a`` is the RGB (optical) one, ``b`` the NIR one, as in the
patch-model contract. Prints FPR95 (%) and AUC per subset and their mean; writes
``bench/results/rrlnet_patches_<scorer>[_<tag>].json|md``.

These are not the paper's test patches (those come from all 50-ish images of each subset of the
original scene set, about 1.6 M pairs); numbers compare scorers with each other here, and only
roughly with Table VI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rrlnet_registration import fmt, load_scorer, machine, set_threads, table  # noqa: E402
from patch_scorers import CLASSICAL_SCORERS  # noqa: E402
from registration_protocol import DATA_ROOT, TEST_SUBSETS, RegistrationPair, list_pairs, load_pair  # noqa: E402
from sarcoreg.training.metrics import auc, fpr95  # noqa: E402
from sarcoreg.training.patches import AlignedPair, PatchSet, build_patch_pairs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Table VI of the paper, FPR95 (%) per subset: Field Forest Indoor Mountain Oldbuilding Street Urban Water Mean.
PAPER_RRLNET_FPR95 = {"field": 2.16, "forest": 0.04, "indoor": 0.86, "mountain": 0.59, "oldbuilding": 0.41,
                      "street": 0.26, "urban": 0.14, "water": 1.65, "mean": 0.76}


def aligned_crop(pair: RegistrationPair, margin: int = 2) -> AlignedPair:
    """The RGB warped into the NIR frame, both cropped to where both hold image data.

    Args:
        pair: A registration test pair.
        margin: Extra pixels trimmed inside the common valid rectangle (resampling edges).

    Returns:
        ``AlignedPair(a=warped RGB, b=NIR)`` on one grid.
    """
    h, w = pair.reference.shape
    warped = cv2.warpAffine(pair.target, pair.m_gt, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.ones_like(pair.target), pair.m_gt, (w, h), flags=cv2.INTER_NEAREST) > 0.5
    valid &= pair.reference > 0.0
    r0, r1, c0, c1 = 0, h, 0, w
    while r1 - r0 > 64 and c1 - c0 > 64 and not valid[r0:r1, c0:c1].all():
        r0, r1, c0, c1 = r0 + 2, r1 - 2, c0 + 2, c1 - 2
    r0, r1, c0, c1 = r0 + margin, r1 - margin, c0 + margin, c1 - margin
    return AlignedPair(a=np.ascontiguousarray(warped[r0:r1, c0:c1]),
                       b=np.ascontiguousarray(pair.reference[r0:r1, c0:c1]), name=pair.pair_id)


def subset_patches(subset: str, limit: int | None, pairs_per_image: int, seed: int, root: Path = DATA_ROOT) -> PatchSet:
    """Matching / non-matching pairs (50/50) cut from one test subset."""
    aligned = [aligned_crop(load_pair(s, n, root)) for s, n in list_pairs(root, [subset], limit)]
    return build_patch_pairs(aligned, pairs_per_image=pairs_per_image, patch_size=64, seed=seed)


def score_set(scorer: Any, ps: PatchSet, batch_size: int = 1024) -> np.ndarray:
    """``(N,)`` scores of a patch set (a = ``images[:, 0]``, b = ``images[:, 1]``)."""
    out = []
    for s in range(0, len(ps), batch_size):
        x = ps.images[s:s + batch_size].astype(np.float32) / np.float32(255.0)
        out.append(np.asarray(scorer.score(x[:, 0], x[:, 1]), dtype=np.float64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="patch model name or path for sarcoreg.models.load")
    src.add_argument("--scorer", choices=sorted(CLASSICAL_SCORERS))
    ap.add_argument("--subsets", default=",".join(TEST_SUBSETS))
    ap.add_argument("--limit", type=int, help="image pairs per subset")
    ap.add_argument("--pairs-per-image", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA_ROOT)
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    set_threads(args.threads)
    scorer, label, _ = load_scorer(args)
    subsets = [s.strip() for s in args.subsets.split(",") if s.strip()]
    rows: list[dict[str, Any]] = []
    for subset in subsets:
        ps = subset_patches(subset, args.limit, args.pairs_per_image, args.seed, args.data)
        t0 = time.perf_counter()
        s = score_set(scorer, ps)
        dt = time.perf_counter() - t0
        row = {"subset": subset, "n": len(ps), "fpr95_pct": 100.0 * fpr95(ps.labels, s), "auc": auc(ps.labels, s),
               "pairs_per_s": len(ps) / max(dt, 1e-9), "paper_rrlnet_fpr95": PAPER_RRLNET_FPR95.get(subset)}
        rows.append(row)
        print(" ".join(f"{k}={fmt(v)}" for k, v in row.items()), flush=True)
    mean = {"subset": "mean", "n": int(sum(r["n"] for r in rows)),
            "fpr95_pct": float(np.mean([r["fpr95_pct"] for r in rows])),
            "auc": float(np.mean([r["auc"] for r in rows])),
            "pairs_per_s": float(np.mean([r["pairs_per_s"] for r in rows])),
            "paper_rrlnet_fpr95": PAPER_RRLNET_FPR95["mean"] if len(rows) == len(TEST_SUBSETS) else None}
    rows.append(mean)
    cols = ["subset", "n", "fpr95_pct", "auc", "pairs_per_s", "paper_rrlnet_fpr95"]
    text = "\n".join([f"## Patch matching (Table VI style), {label}", "",
                      f"Machine: {machine()}, {args.threads} thread(s); {args.pairs_per_image} pairs per image "
                      f"pair (50/50), seed {args.seed}, limit {args.limit}.", "", table(rows, cols)])
    print("\n" + text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = f"rrlnet_patches_{label}" + (f"_{args.tag}" if args.tag else "")
        payload = {"scorer": label, "rows": rows, "pairs_per_image": args.pairs_per_image, "seed": args.seed,
                   "limit": args.limit, "machine": machine(), "threads": args.threads}
        (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
        (RESULTS / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
        print(f"\nwrote {RESULTS / stem}.json|md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
