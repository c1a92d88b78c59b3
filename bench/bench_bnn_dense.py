"""BNN for registration on held-out scenes: near-shifted negatives and template matching (issue 17).

Usage (all scenes of the source are evaluation scenes; never pass a training source)::

    python bench/bench_bnn_dense.py --model NP=runs/bnn-np/best_inference.pt \\
        --model NP-hard=runs/bnn-np-hard/best_inference.pt --data volkov-heldout --threads 1

Two parts, per model:

* **Pairs**: ``--crops-per-scene`` random ``P`` x ``P`` crops per scene (``P`` = the model's patch
  size, cut with 8 px of context). Each crop is scored once as a positive, once against a crop of
  another scene (*far*, :func:`~sarcoreg.training.pair_datasets.eval_pairs`) and once against its
  own optical crop moved by 2-8 px (*near*, :func:`~sarcoreg.training.pair_datasets.eval_pairs_near`).
  AUC and FPR95 of positives vs far, vs near and vs both (*mixed*); score = ``-h``.
* **Template matching**: ``--cases-per-scene`` optical templates of ``P`` px against SAR search
  windows of ``--search`` px with a known integer shift (uniform up to ``(S - P) / 2 - 2`` per
  axis), the full distance map, its sub-pixel minimum
  (:func:`sarcoreg.training.bnn_dense.dense_matching`); share of windows within 1 / 2 / 3 px.

Writes ``bench/results/bnn_dense.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def pair_metrics(h_pos: np.ndarray, h_far: np.ndarray, h_near: np.ndarray) -> dict[str, float]:
    """AUC / FPR95 of positives ``(M,)`` against far, near and both negatives (score ``-h``)."""
    from sarcoreg.training.metrics import auc, fpr95

    out: dict[str, float] = {}
    for name, neg in (("far", h_far), ("near", h_near), ("mixed", np.r_[h_far, h_near])):
        y = np.r_[np.ones(len(h_pos)), np.zeros(len(neg))]
        s = -np.r_[h_pos, neg]
        out[f"{name}_auc"], out[f"{name}_fpr95"] = auc(y, s), fpr95(y, s)
    out.update({"h_pos": float(h_pos.mean()), "h_far": float(h_far.mean()), "h_near": float(h_near.mean())})
    return out


def evaluate_model(path: str, pairs: list[Any], a: argparse.Namespace) -> dict[str, Any]:
    """Pair metrics and template matching of one ``best_inference.pt`` on the image pairs."""
    import torch
    from sarcoreg.models.bnn import module_from_state
    from sarcoreg.models.safe_load import load_torch_weights
    from sarcoreg.training.bnn_dense import dense_matching
    from sarcoreg.training.bnn_train import distances, pair_distances
    from sarcoreg.training.pair_datasets import eval_pairs, eval_pairs_near, with_margin
    from sarcoreg.training.real_pairs import crop_pool

    net, size = module_from_state(load_torch_weights(path))
    dev = torch.device("cpu")
    t0 = time.perf_counter()
    pool = with_margin(crop_pool(pairs, size + 2 * a.margin, a.crops_per_scene, a.seed), a.margin)
    s_idx, o_idx, labels = eval_pairs(pool, a.seed)
    h = distances(net, pool, s_idx, o_idx, dev)
    sar, opt, _ = eval_pairs_near(pool, a.seed, 2, a.margin)
    h_near = pair_distances(net, sar, opt, dev)
    res: dict[str, Any] = {"model": path, "pairs": len(pool), **pair_metrics(h[labels > 0.5], h[labels < 0.5], h_near)}
    t1 = time.perf_counter()
    dm = dense_matching(net, [(p.a, p.b) for p in pairs], size, a.search, a.cases_per_scene, seed=a.seed, device=dev)
    res.update({"cases": dm.cases, "within_1px": dm.within["1"], "within_2px": dm.within["2"],
                "within_3px": dm.within["3"], "median_error_px": dm.median_error, "peak_on_border": dm.on_border,
                "seconds_pairs": t1 - t0, "seconds_dense": time.perf_counter() - t1})
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=PATH",
                   help="best_inference.pt, repeatable")
    p.add_argument("--data", action="append", default=None, help="evaluation source(s), default volkov-heldout")
    p.add_argument("--crops-per-scene", type=int, default=100)
    p.add_argument("--cases-per-scene", type=int, default=20)
    p.add_argument("--search", type=int, default=96, help="SAR search window side, px")
    p.add_argument("--margin", type=int, default=8, help="context of the pair crops = largest near shift")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    import torch
    from sarcoreg.training.real_pairs import pairs_from_spec

    torch.set_num_threads(a.threads)
    pairs = []
    for spec in a.data or ["volkov-heldout"]:
        got = pairs_from_spec(spec)
        if got is None:
            p.error(f"--data {spec}: not an image-pair source (srif:, osmnet:, whu:, volkov, volkov-heldout)")
        pairs += got
    rows: dict[str, Any] = {"data": a.data or ["volkov-heldout"], "scenes": [x.name for x in pairs],
                            "search": a.search, "crops_per_scene": a.crops_per_scene,
                            "cases_per_scene": a.cases_per_scene, "seed": a.seed}
    print(f"{len(pairs)} evaluation scenes; {a.crops_per_scene} crops and {a.cases_per_scene} search windows "
          f"({a.search} px) each")
    print("| model | far AUC / FPR95 | near AUC / FPR95 | mixed AUC / FPR95 | within 1 / 2 / 3 px | median err |\n"
          "|---|---|---|---|---|---|")
    for spec in a.model:
        label, _, path = spec.rpartition("=")
        label = label or Path(path).parent.name
        r = evaluate_model(path, pairs, a)
        rows[label] = r
        print(f"| {label} | {r['far_auc']:.3f} / {100 * r['far_fpr95']:.1f} % | {r['near_auc']:.3f} / "
              f"{100 * r['near_fpr95']:.1f} % | {r['mixed_auc']:.3f} / {100 * r['mixed_fpr95']:.1f} % | "
              f"{100 * r['within_1px']:.1f} / {100 * r['within_2px']:.1f} / {100 * r['within_3px']:.1f} % | "
              f"{r['median_error_px']:.2f} px |", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "bnn_dense.json").write_text(json.dumps(rows, indent=1, default=str))
    print(f"wrote {a.out / 'bnn_dense.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
