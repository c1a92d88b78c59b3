r"""Ship a trained AAE: copy its three ONNX graphs into a model folder and write its card.

Usage::

    python -m sarcoreg.training.aae_card --run runs/aae-s100 --name aae-sar-optical \\
        --licence "..." --notes "..." [--evaluation runs/aae-eval/evaluation.json --label s100] \\
        [--compare runs/aae-s25]

Reads ``summary.json`` and ``history.json`` of a ``sarcoreg-train aae`` run, copies ``best.onnx``
(the pair model: ``score(a, b)``) to ``<folder>/<name>.onnx`` and its two encoder graphs to
``<folder>/<name>-optical-encoder.onnx`` / ``<name>-sar-encoder.onnx``, checks ONNX Runtime
against torch on ``best.pt`` (pair scores and descriptors), and writes ``<folder>/cards/<name>.json``
(method ``aae``) with the encoders in the card's ``extra_files`` (checksums in ``extra_sha256``), the validation
metrics of the run, the matching errors of ``sarcoreg-train aae-eval`` (``--evaluation``) and,
with ``--compare``, the validation metrics of another run (e.g. the 25 % supervision run).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from sarcoreg.models.registry import MODELS_DIR, ModelCard, save_card, sha256_of

__all__ = ["main", "onnx_vs_torch", "write_aae_card"]


def onnx_vs_torch(run: Path, onnx_path: Path, patch_size: int, n: int = 32) -> dict[str, float]:
    """Largest |ONNX Runtime - torch| of pair scores (every card's check) and descriptors over ``n`` random pairs."""
    from sarcoreg.models.descriptor_model import load_descriptor_model
    from sarcoreg.training.model_card import onnx_vs_torch as score_check
    from sarcoreg.training.model_card import random_patch_pairs

    a, b = random_patch_pairs(n, patch_size)
    d_onnx = load_descriptor_model(onnx_path, device="cpu")
    d_torch = load_descriptor_model(run / "best.pt", device="cpu")
    return {
        "score_max_abs_diff": score_check(onnx_path, run / "best.pt", patch_size, n),
        "optical_descriptor_max_abs_diff": float(np.abs(d_onnx.embed_optical(a) - d_torch.embed_optical(a)).max()),
        "sar_descriptor_max_abs_diff": float(np.abs(d_onnx.embed_sar(b) - d_torch.embed_sar(b)).max()),
    }


def _val_metrics(run: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run / "summary.json").read_text())
    hist: dict[str, Any] = json.loads((run / "history.json").read_text())
    best: dict[str, Any] = next((h for h in hist["history"] if h["epoch"] == summary["best_epoch"]), {})
    out = {"val_fpr95": round(float(summary["best_fpr95"]), 4), "val_auc": round(float(summary["best_auc"]), 4),
           "best_epoch": summary["best_epoch"], "supervision": summary.get("supervision")}
    if "val_matching_error_px" in best:
        out["val_mean_matching_error_px_stride4"] = round(float(best["val_matching_error_px"]), 3)
    return out


def write_aae_card(run: Path, name: str, licence: str, notes: str = "", evaluation: Path | None = None,
                   label: str | None = None, compare: Path | None = None, folder: Path = MODELS_DIR) -> ModelCard:
    """Copy the run's ONNX graphs into ``folder`` and write ``folder/cards/<name>.json``.

    Args:
        run: Output folder of ``sarcoreg-train aae`` (``best.onnx``, its encoder graphs, ``best.pt``,
            ``summary.json``, ``history.json``).
        name: Model name (file stem and card name).
        licence: Licence text of the weights.
        notes: Free text for the card.
        evaluation: ``evaluation.json`` of ``sarcoreg-train aae-eval``; its entries go into the metrics.
        label: The entry of ``evaluation`` that is this run (default: all entries are copied).
        compare: Another AAE run whose validation metrics go into the card (e.g. 25 % supervision).
        folder: Model folder (default the package's ``models/``).

    Raises:
        FileNotFoundError: A file of the run is missing.
    """
    from sarcoreg.models.aae import encoder_paths

    summary: dict[str, Any] = json.loads((run / "summary.json").read_text())
    hist: dict[str, Any] = json.loads((run / "history.json").read_text())
    cfg: dict[str, Any] = hist["config"]
    src = run / "best.onnx"
    src_opt, src_sar = encoder_paths(src)
    for f in (src, src_opt, src_sar, run / "best.pt"):
        if not f.is_file():
            raise FileNotFoundError(f"{run}: {f.name} is missing (did the run finish and export?)")
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}.onnx"
    dest_opt, dest_sar = encoder_paths(dest)
    for s, d in ((src, dest), (src_opt, dest_opt), (src_sar, dest_sar)):
        shutil.copyfile(s, d)
    p = int(cfg["patch_size"])
    metrics: dict[str, Any] = {
        **_val_metrics(run),
        "measured_on": f"validation search patches of held-out image pairs ({summary['data'].get('val_image_pairs')} "
        f"pairs, {summary['data'].get('val_patches')} patches): centre crops = positives, off-centre SAR crops "
        f"(>= {cfg['min_negative_offset']} px) = negatives",
        "onnx_vs_torch": onnx_vs_torch(run, dest, p),
    }
    if evaluation is not None:
        ev: dict[str, Any] = json.loads(Path(evaluation).read_text())
        entries = {k: v for k, v in ev.items() if isinstance(v, dict) and (label is None or k == label)}
        metrics["matching_errors"] = entries
        metrics["matching_errors_protocol"] = ev.get("protocol", "sarcoreg-train aae-eval")
    if compare is not None:
        metrics["compared_run"] = {"run": str(compare), **_val_metrics(compare)}
    roles = (("optical_encoder", dest_opt), ("sar_encoder", dest_sar))
    card = ModelCard(
        name=name,
        method="aae",
        file=dest.name,
        sha256=sha256_of(dest),
        licence=licence,
        inputs={
            "patch_size": p,
            "channels": 1,
            "scaling": "float32 in [0, 1]; a = reference / optical gray, b = target SAR (dB, stretched) as the "
            "engine prepares them; each encoder standardises with the paper's statistics",
            "onnx_inputs": [f"a (N, 1, {p}, {p})", f"b (N, 1, {p}, {p})"],
            "onnx_output": "score (N,): cosine similarity of the two L2-normalised descriptors, in [-1, 1]",
            "encoders": f"x (N, 1, {p}, {p}) -> descriptor (N, {cfg['latent_dim']}) unit length",
        },
        training={
            "data": summary["data"],
            "config": cfg,
            "lr_range": hist.get("lr_range"),
            "epochs_run": summary["epochs_run"],
            "steps": summary["steps"],
            "seconds": summary["seconds"],
            "seconds_per_step": round(float(summary["seconds_per_step"]), 4),
            "stopped_by_budget": summary["stopped_by_budget"],
            "history": hist["history"],
        },
        metrics=metrics,
        notes=notes,
        extra_files={role: d.name for role, d in roles},
        extra_sha256={role: sha256_of(d) for role, d in roles},
    )
    save_card(card, folder)
    return card


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`write_aae_card`."""
    p = argparse.ArgumentParser(description="Ship a trained AAE (three ONNX graphs + card).")
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--licence", required=True)
    p.add_argument("--notes", default="")
    p.add_argument("--evaluation", type=Path, help="evaluation.json of sarcoreg-train aae-eval")
    p.add_argument("--label", help="the evaluation entry of this run (default all)")
    p.add_argument("--compare", type=Path, help="another aae run whose validation metrics go into the card")
    p.add_argument("--folder", type=Path, default=MODELS_DIR, help="model folder (default: the package's models/)")
    a = p.parse_args(argv)
    card = write_aae_card(a.run, a.name, a.licence, a.notes, a.evaluation, a.label, a.compare, a.folder)
    print(json.dumps(card.metrics, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
