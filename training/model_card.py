r"""Ship a trained model: copy its ONNX file into ``models/`` and write its card.

Usage::

    python -m sarcoreg.training.model_card --run runs/visnir --name rrlnet-visnir \\
        --licence "..." --notes "..." [--data-note "..."]

Reads ``summary.json`` and ``history.json`` of a ``sarcoreg-train`` run, copies ``best.onnx`` to
``models/<name>.onnx``, checks that ONNX Runtime matches torch on the best checkpoint, and writes
``models/cards/<name>.json`` with checksum, training facts and measured validation metrics.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from sarcoreg.models.registry import MODELS_DIR, ModelCard, save_card, sha256_of

__all__ = ["main", "onnx_vs_torch", "random_patch_pairs", "write_card"]


def random_patch_pairs(n: int, patch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random patch pairs ``(a (n, P, P), b (n, P, P))`` float32 in [0, 1] for the ONNX-vs-torch checks."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, patch_size, patch_size), dtype=np.float32)
    b = rng.random((n, patch_size, patch_size), dtype=np.float32)
    return a, b


def onnx_vs_torch(onnx_path: Path, torch_path: Path, patch_size: int, n: int = 32) -> float:
    """Largest |ONNX Runtime - torch| pair score over ``n`` random patch pairs: the check every card states.

    Args:
        onnx_path: The shipped graph.
        torch_path: The same network as a torch file (``best_inference.pt``, ``best.pt``).
        patch_size: ``P``.
        n: Pairs.
    """
    from sarcoreg.models import load

    a, b = random_patch_pairs(n, patch_size)
    s_onnx = load(onnx_path, device="cpu").score(a, b)
    s_torch = load(torch_path, device="cpu").score(a, b)
    return float(np.abs(s_onnx - s_torch).max())


def write_card(
    run: Path, name: str, licence: str, notes: str, data_note: str = "", folder: Path = MODELS_DIR
) -> ModelCard:
    """Copy ``run/best.onnx`` to ``<folder>/<name>.onnx`` and write ``<folder>/cards/<name>.json``.

    ``folder`` is a model folder: ``models/`` of the package (shipping), or any folder listed in
    ``SARCOREG_MODEL_PATH`` (a user's own models).
    """
    summary: dict[str, Any] = json.loads((run / "summary.json").read_text())
    hist: dict[str, Any] = json.loads((run / "history.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}.onnx"
    shutil.copyfile(run / "best.onnx", dest)
    cfg = hist["config"]
    best = next(h for h in hist["history"] if h["epoch"] == summary["best_epoch"])
    card = ModelCard(
        name=name,
        method="rrlnet",
        file=dest.name,
        sha256=sha256_of(dest),
        licence=licence,
        inputs={
            "patch_size": 64,
            "channels": 1,
            "scaling": "float32 in [0, 1]; a = reference / optical gray, b = target (SAR dB or NIR) "
            "percentile-stretched as the engine prepares it",
            "onnx_inputs": ["a (N, 1, 64, 64)", "b (N, 1, 64, 64)"],
            "onnx_output": "score (N,): match probability",
        },
        training={
            "data": summary["data"],
            "data_note": data_note,
            "recipe": "RRL-Net (Yu et al. 2024): 6 BCE + 2 reconstruction terms, Nadam, batch 64, "
            "augmentations of the public code",
            "reduced_cpu_run": True,
            "device": summary.get("device", "CPU, 2 threads (shared machine)"),
            "lr": cfg["lr"],
            "batch_size": cfg["batch_size"],
            "perceptual": cfg["perceptual"],
            "epochs_run": summary["epochs_run"],
            "steps": summary["steps"],
            "steps_per_epoch": cfg["steps_per_epoch"],
            "seconds": summary["seconds"],
            "best_epoch": summary["best_epoch"],
            "bn_recalibrate_batches": cfg.get("bn_recalibrate_batches", 0),
            "history": hist["history"],
        },
        metrics={
            "fpr95": round(float(best["val_fpr95"]), 4),
            "auc": round(float(best["val_auc"]), 4),
            "measured_on": f"validation pairs held out by image pair ({summary['data'].get('val_patch_pairs')} "
            "patch pairs, 50 % matching)",
            "onnx_vs_torch_max_abs_diff": onnx_vs_torch(dest, run / "best_inference.pt", 64, n=64),
            "parameters": 9394105,
            "parameters_keras_count": 9404025,
        },
        notes=notes,
    )
    save_card(card, folder)
    return card


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`write_card`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--licence", required=True)
    p.add_argument("--notes", default="")
    p.add_argument("--data-note", default="")
    p.add_argument("--folder", type=Path, default=MODELS_DIR,
                   help="model folder to write into (default: the package's models/)")
    a = p.parse_args(argv)
    card = write_card(a.run, a.name, a.licence, a.notes, a.data_note, a.folder)
    print(json.dumps(card.metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
