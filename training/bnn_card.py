r"""Ship a trained BNN: copy its ONNX file into ``models/`` and write its card.

Usage::

    python -m sarcoreg.training.bnn_card --run runs/bnn-vgg11-moco --name bnn-sar-optical \\
        --licence "..." --notes "..." [--compare runs/bnn-vgg11-np]

Reads ``summary.json`` and ``history.json`` of a ``sarcoreg-train bnn`` run, copies ``best.onnx`` to
``<folder>/<name>.onnx``, checks ONNX Runtime against torch on the best checkpoint, and writes
``<folder>/cards/<name>.json`` (method ``bnn``) with the validation metrics, the decision threshold
on ``h`` and on the score, and (``--compare``) the metrics of another run such as NP-BNN.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from sarcoreg.models.registry import MODELS_DIR, ModelCard, save_card, sha256_of
from sarcoreg.models.safe_load import load_torch_weights
from sarcoreg.training.model_card import onnx_vs_torch

__all__ = ["main", "write_bnn_card"]


def write_bnn_card(run: Path, name: str, licence: str, notes: str = "", compare: Path | None = None,
                   folder: Path = MODELS_DIR, evaluation: Path | None = None) -> ModelCard:
    """Copy ``run/best.onnx`` to ``folder/<name>.onnx`` and write ``folder/cards/<name>.json``.

    ``evaluation`` is a ``bnn_pairs.json`` of ``bench/bench_bnn_pairs.py``: its per-model metrics on
    the held-out real pairs (threshold chosen on one half of the scenes, measured on the other) go
    into the card as ``held_out_real_pairs``.
    """
    from sarcoreg.models.bnn import module_from_state

    summary: dict[str, Any] = json.loads((run / "summary.json").read_text())
    cfg: dict[str, Any] = json.loads((run / "history.json").read_text())["config"]
    net, p = module_from_state(load_torch_weights(run / "best_inference.pt"))
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}.onnx"
    shutil.copyfile(run / "best.onnx", dest)
    m = summary["best_metrics"]
    metrics: dict[str, Any] = {
        **{k: round(float(m[k]), 4) for k in ("accuracy", "precision", "recall", "fpr95", "auc")},
        "threshold_h": round(float(m["threshold"]), 4),
        "threshold_score": round(1.0 / (1.0 + float(m["threshold"])), 4),
        "measured_on": f"validation pairs held out by source scene ({summary['data'].get('val_pairs')} aligned "
        "pairs, each once as a positive and once with a negative partner)",
        "onnx_vs_torch_max_abs_diff": onnx_vs_torch(dest, run / "best_inference.pt", p),
        "parameters": int(sum(t.numel() for t in net.parameters())),
    }
    if compare is not None:
        other = json.loads((compare / "summary.json").read_text())
        metrics["compared_run"] = {"run": str(compare), **other["best_metrics"]}
    if evaluation is not None:
        ev: dict[str, Any] = json.loads(Path(evaluation).read_text())
        keys = ("accuracy", "precision", "recall", "fpr95", "auc", "pairs")
        metrics["held_out_real_pairs"] = {
            "protocol": "bench/bench_bnn_pairs.py: held-out real pairs, each once as a positive and once with a "
            "partner of another held-out scene; threshold on one half of the scenes, accuracy / precision / "
            "recall on the other (mean of both folds); FPR95 and AUC on all",
            "pairs": ev.get("held_out_pairs"), "scenes": ev.get("held_out_scenes"), "sources": ev.get("sources"),
            **{label: {k: round(float(v[k]), 4) for k in keys if k in v}
               for label, v in ev.items() if isinstance(v, dict) and "accuracy" in v},
        }
    card = ModelCard(
        name=name,
        method="bnn",
        file=dest.name,
        sha256=sha256_of(dest),
        licence=licence,
        inputs={
            "patch_size": p,
            "channels": 1,
            "scaling": "float32 in [0, 1]; a = reference / optical gray, b = target SAR (dB, stretched) as the "
            "engine prepares them; each patch is standardised inside the network",
            "onnx_inputs": [f"a (Na, 1, {p}, {p})", f"b (Nb, 1, {p}, {p}); Na == Nb or one of them 1"],
            "onnx_output": "score (N,): 1 / (1 + h), h = ||f(b) - g(a)|| / sqrt(50)",
        },
        training={"data": summary["data"], "config": cfg, "epochs_run": summary["epochs_run"],
                  "steps": summary["steps"], "seconds": summary["seconds"], "best_epoch": summary["best_epoch"]},
        metrics=metrics,
        notes=notes,
    )
    save_card(card, folder)
    return card


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`write_bnn_card`."""
    p = argparse.ArgumentParser(description="Ship a trained BNN (ONNX + card).")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--licence", required=True)
    p.add_argument("--notes", default="")
    p.add_argument("--compare", type=Path, help="another bnn run (e.g. NP-BNN) whose metrics go into the card")
    p.add_argument("--folder", type=Path, default=MODELS_DIR, help="model folder (default: the package's models/)")
    p.add_argument("--evaluation", type=Path, help="bnn_pairs.json of bench/bench_bnn_pairs.py")
    a = p.parse_args(argv)
    card = write_bnn_card(a.run, a.name, a.licence, a.notes, a.compare, a.folder, a.evaluation)
    print(json.dumps(card.metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
