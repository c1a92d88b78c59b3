"""NP-BNN vs MoCo-BNN on held-out real SAR / optical patch pairs (the paper's Tables 1-3 metrics).

Usage (the data options must be those of the training runs, so the held-out scenes are the same)::

    python bench/bench_bnn_pairs.py --model NP-BNN=runs/bnn-np/best_inference.pt \\
        --model MoCo-BNN=runs/bnn-moco/best_inference.pt \\
        --data ../shared/data/s1s2/bigearthnet-configilm --mosaics --data srif:../shared/data/sar-optical/srif \\
        [--val-fraction 0.2 --seed 100 --patch-size 64 --crops-per-scene 8]

The validation pool of ``sarcoreg-train bnn`` (real pairs only: synthetic partners are added to
the training side alone) is rebuilt, and its scenes are cut in two halves by group: the decision
threshold is chosen on the *calibration* half (best accuracy) and accuracy, precision and recall
are measured on the *test* half, then the other way round; the table gives the mean of the two
folds. FPR95 and AUC need no threshold and are computed on the whole held-out set. Every pair
is scored once as a positive and once with a partner of another scene as a negative
(:func:`sarcoreg.training.pair_datasets.eval_pairs`). Writes ``bench/results/bnn_pairs.json`` and
``bench/results/bnn_roc.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _source(name: str) -> str:
    for prefix in ("srif", "osmnet", "whu"):
        if name.startswith(prefix + "/"):
            return prefix
    return "s1s2"


def _clf(labels: np.ndarray, scores: np.ndarray, t: float) -> dict[str, float]:
    y, pred = labels > 0.5, scores >= t
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    return {"accuracy": float((pred == y).mean()), "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0}


def _best_t(labels: np.ndarray, scores: np.ndarray) -> float:
    s = np.sort(np.unique(scores))
    cands = np.r_[s[0] - 1e-6, (s[1:] + s[:-1]) / 2.0, s[-1] + 1e-6]
    return float(cands[int(np.argmax([_clf(labels, scores, t)["accuracy"] for t in cands]))])


def evaluate(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, seed: int) -> dict[str, Any]:
    """Two-fold calibration / test metrics (see the module docstring)."""
    from sarcoreg.training.metrics import auc, fpr95

    ids = np.random.default_rng(seed).permutation(np.unique(groups))
    half = np.isin(groups, ids[: len(ids) // 2])
    folds = []
    for calib in (half, ~half):
        t = _best_t(labels[calib], scores[calib])
        folds.append({"threshold": t, **_clf(labels[~calib], scores[~calib], t)})
    out: dict[str, Any] = {k: float(np.mean([f[k] for f in folds])) for k in ("accuracy", "precision", "recall")}
    out.update({"fpr95": fpr95(labels, scores), "auc": auc(labels, scores), "folds": folds,
                "pairs": int(len(labels))})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=PATH", help="repeatable")
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--mosaics", action="store_true")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--crops-per-scene", type=int, default=8)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    from sarcoreg.models import load
    from sarcoreg.training.bnn_cli import data_pools
    from sarcoreg.training.pair_datasets import eval_pairs

    ns = argparse.Namespace(data=a.data, val=None, val_fraction=a.val_fraction, patch_size=a.patch_size, limit=None,
                            crops_per_scene=a.crops_per_scene, synthetic=0, seed=a.seed, mosaics=a.mosaics)
    _, val, info = data_pools(ns)
    s_idx, o_idx, labels = eval_pairs(val, a.seed)
    groups = val.groups[s_idx]
    sources = np.array([_source(val.names[i]) for i in s_idx])
    sar = val.sar[s_idx].astype(np.float32) / 255.0
    opt = val.opt[o_idx].astype(np.float32) / 255.0
    rows: dict[str, Any] = {"data": info, "held_out_pairs": int(len(val)),
                            "held_out_scenes": int(len(np.unique(val.groups))),
                            "sources": {s: int((sources[: len(val)] == s).sum()) for s in np.unique(sources)}}
    curves = {}
    print(f"held-out real pairs: {len(val)} from {rows['held_out_scenes']} scenes {rows['sources']}; "
          f"{len(labels)} scored pairs (half positives)")
    print("| model | accuracy | precision | recall | FPR95 | AUC |\n|---|---|---|---|---|---|")
    for spec in a.model:
        label, _, path = spec.rpartition("=")
        label = label or Path(path).stem
        model = load(path, device="cpu", backend="torch" if path.endswith(".pt") else "auto")
        import torch

        torch.set_num_threads(a.threads)
        scores = model.score(opt, sar)
        res = evaluate(labels, scores, groups, a.seed)
        res["per_source"] = {s: evaluate(labels[sources == s], scores[sources == s], groups[sources == s], a.seed)
                             for s in np.unique(sources) if len(np.unique(groups[sources == s])) >= 2}
        res["model"] = path
        rows[label] = res
        curves[label] = scores
        print(f"| {label} | {100 * res['accuracy']:.1f} % | {100 * res['precision']:.1f} % | "
              f"{100 * res['recall']:.1f} % | {100 * res['fpr95']:.1f} % | {res['auc']:.3f} |", flush=True)
        for s, r in res["per_source"].items():
            print(f"|   {label} on {s} | {100 * r['accuracy']:.1f} % | {100 * r['precision']:.1f} % | "
                  f"{100 * r['recall']:.1f} % | {100 * r['fpr95']:.1f} % | {r['auc']:.3f} |")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "bnn_pairs.json").write_text(json.dumps(rows, indent=1, default=str))
    from sarcoreg.core.exports.plots import new_figure, save_png
    from sarcoreg.training.metrics import roc_curve

    fig = new_figure(4.5, 4.5)
    ax = fig.subplots()
    for label, scores in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        r = rows[label]
        ax.plot(fpr, tpr, lw=1.5, label=f"{label}: AUC {r['auc']:.3f}, FPR95 {100 * r['fpr95']:.1f} %")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("BNN on held-out real pairs")
    ax.legend(loc="lower right", fontsize=7)
    save_png(fig, a.out / "bnn_roc.png")
    print(f"wrote {a.out / 'bnn_pairs.json'} and {a.out / 'bnn_roc.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
