r"""Ship a trained shared-modality model: two ONNX files and a card (``method = "shared"``).

Usage::

    python -m sarcoreg.training.shared_card --run /tmp/shared-runs/v2 --name shared-v2 \\
        --licence "..." --notes "..."

Reads ``best.pt`` and ``summary.json`` of a ``sarcoreg-train shared`` run, exports the SAR and the
optical network to ``<folder>/<name>-sar.onnx`` and ``<folder>/<name>-optical.onnx`` (float16
weights when ONNX Runtime still agrees with torch), measures the paper's Table-1 similarity
(RMSE, PSNR, SSIM between the shared images) of the *exported* model on the run's held-out real
pairs next to "no transform", and writes ``<folder>/cards/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
from sarcoreg.models.registry import MODELS_DIR, ModelCard, save_card, sha256_of
from sarcoreg.models.safe_load import load_torch_weights

__all__ = ["main", "table1", "write_shared_card"]


def _held_out(summary: dict[str, Any]) -> list[Any]:
    from sarcoreg.training.shared_data import load_spec, split_holdout

    cfg = summary["config"]["model"]
    sar, opt = tuple(cfg["sar_bands"]), tuple(cfg["optical_bands"])
    scenes = []
    for src in summary["data"]["sources"]:
        scenes += split_holdout(load_spec(src["data"], len(sar), len(opt), sar, opt))[1]
    return scenes


def table1(model: Any, scenes: list[Any]) -> dict[str, Any]:
    """Table-1 metrics of ``model`` (a :class:`SharedModalityModel`) and of "no transform" on ``scenes``.

    Each scene is reflect-padded to multiples of 32, transformed whole, and compared on its valid
    pixels. Returns ``{"none": {...}, "model": {...}}`` with means over scenes and per source. The
    model rows also give the spread (standard deviation over valid pixels and channels) of both
    shared images: Table-1 similarity alone also rewards degenerate, nearly constant outputs.
    ``model_stretched``: the same after a 0.5 / 99.5 percentile stretch of each shared image (what
    the paper did for its low-contrast criterion-v1 images before computing Table 1).
    """
    import torch
    from sarcoreg.models.shared_modality import normalise
    from sarcoreg.training.shared_data import pad_to_multiple
    from sarcoreg.training.shared_losses import image_metrics
    from sarcoreg.training.shared_train import _baseline_images, _summarise

    rows, base, stretched = [], [], []
    for sc in scenes:
        sar, opt, valid = pad_to_multiple(sc)
        s = torch.from_numpy(model.transform(sar[None], "sar"))
        o = torch.from_numpy(model.transform(opt[None], "optical"))
        v = torch.from_numpy(valid[None, None].astype(np.float32))
        m = valid.astype(bool)
        spread = {"std_sar_shared": float(s[0][:, m].std()), "std_optical_shared": float(o[0][:, m].std())}
        rows.append(image_metrics(s, o, v) | spread | {"source": sc.source})
        s_n = torch.from_numpy(normalise(s[0].numpy(), "sar", valid=m)[None])
        o_n = torch.from_numpy(normalise(o[0].numpy(), "optical", valid=m)[None])
        stretched.append(image_metrics(s_n, o_n, v) | {"source": sc.source})
        a, b = _baseline_images(torch.from_numpy(sar[None]), torch.from_numpy(opt[None]), model.channels)
        base.append(image_metrics(a, b, v) | {"source": sc.source})
    return {"none": _summarise(base), "model": _summarise(rows), "model_stretched": _summarise(stretched)}


def _rounded(d: Any, nd: int = 4) -> Any:
    if isinstance(d, dict):
        return {k: _rounded(v, nd) for k, v in d.items()}
    if isinstance(d, float):
        return round(d, nd)
    return d


def write_shared_card(
    run: Path,
    name: str,
    licence: str,
    notes: str,
    data_note: str = "",
    folder: Path = MODELS_DIR,
    measure: bool = True,
    checkpoint: str = "best",
) -> ModelCard:
    """Export ``run/best.pt`` to two ONNX files in ``folder`` and write ``folder/cards/<name>.json``.

    Args:
        run: The ``sarcoreg-train shared`` run folder.
        name: Model name (card and file names).
        licence: Licence line of the card.
        notes: Free text (how it was trained, limits).
        data_note: Free text on the data.
        folder: Model folder (``models/`` of the package, or one in ``SARCOREG_MODEL_PATH``).
        measure: Measure Table-1 metrics of the exported model on the held-out pairs.
        checkpoint: ``"best"`` (lowest validation loss, ``best.pt``) or ``"last"`` (``last.pt``).
    """
    from sarcoreg.models.shared_modality import SharedConfig, export_onnx, load_shared_model, make_nets
    from sarcoreg.training.shared_losses import LossWeights

    run = Path(run)
    summary: dict[str, Any] = json.loads((run / "summary.json").read_text())
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    ckpt = load_torch_weights(run / f"{checkpoint}.pt", "checkpoint")
    config = SharedConfig.from_dict(ckpt["config"]["model"])
    train_cfg = ckpt["config"]["train"]
    nets = make_nets(config)
    nets.load_state_dict(ckpt["model"])
    nets.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from sarcoreg.training.shared_data import pad_to_multiple

    scenes = _held_out(summary) if measure else []
    real = [pad_to_multiple(sc) for sc in scenes[:4]]  # real inputs for the ONNX agreement check
    exports = {
        "sar": export_onnx(nets.sar, folder / f"{name}-sar.onnx", len(config.sar_bands),
                           check_inputs=[r[0][None] for r in real]),
        "optical": export_onnx(nets.optical, folder / f"{name}-optical.onnx", len(config.optical_bands),
                               check_inputs=[r[1][None] for r in real]),
    }
    weights = LossWeights.paper(config.criterion, train_cfg["window"])
    inputs = {
        "sar_bands": list(config.sar_bands),
        "optical_bands": list(config.optical_bands),
        "rgb": list(config.rgb),
        "channels": config.channels,
        "criterion": config.criterion,
        "multiple": 32,
        "ssim_window": train_cfg["window"],
        "scale": {
            "sar": "dB (10 log10 of intensity); a single-band SAR raster is taken as the VV band",
            "optical": "any reflectance / digital-number scale; bands in the order of optical_bands "
            "(R, G, B = Sentinel-2 B04, B03, B02); a gray optical image is replicated to R = G = B",
        },
        "normalisation": {
            "low_percentile": 0.5,
            "high_percentile": 99.5,
            "per": "scene (whole raster or window, valid pixels only)",
            "bands": "joint over all bands of the modality (as the public code's PercentileLimiter)",
            "function": "sarcoreg.models.shared_modality.normalise(image, modality, 0.5, 99.5, valid)",
        },
        "sar": {"bands": list(config.sar_bands), "scale": "dB", "percentiles": [0.5, 99.5], "joint": True},
        "optical": {"bands": list(config.optical_bands), "percentiles": [0.5, 99.5], "joint": True,
                    "gray": "replicated to every band"},
        "onnx_input": "x (B, C, H, W) float32 in [0, 1], H and W multiples of 32",
        "onnx_output": "y (B, K, H, W) float32 in (0, 1)",
    }
    card_data: dict[str, Any] = {
        "name": name,
        "method": "shared",
        "file": f"{name}-sar.onnx",
        "sha256": sha256_of(folder / f"{name}-sar.onnx"),
        "licence": licence,
        "inputs": inputs,
        "training": {
            "data": summary["data"],
            "data_note": data_note,
            "recipe": f"Borisov et al. 2026, criterion {config.criterion}: U-Net EfficientNet-B0 (no pretrained "
            "weights), 5 levels, scSE decoder, sigmoid; NAdam, linear warm-up from 1e-8, random crops with flips "
            "and 90-degree rotations",
            "loss_weights": {"alpha": weights.alpha, "beta": weights.beta, "gamma": weights.gamma, "eta": weights.eta,
                             "v2_stop_gradient_on_sar": weights.v2_stop_gradient if config.criterion == "v2" else None},
            "reduced_cpu_run": True,
            "machine": f"{platform.system()} CPU ({platform.machine()}), {summary.get('threads')} torch thread(s), "
            "no GPU",
            "device": summary["device"],
            "crop": train_cfg["crop"],
            "batch_size": train_cfg["batch_size"],
            "lr": train_cfg["lr"],
            "warmup_steps": train_cfg["warmup_steps"],
            "steps": summary["steps"],
            "seconds": summary["seconds"],
            "stopped_by": summary["stopped_by"],
            "best_step": summary["best_step"],
            "shipped_checkpoint": checkpoint,
            "shipped_step": int(ckpt["step"]),
            "best_val_loss": summary["best_val_loss"],
            "history": json.loads((run / "history.json").read_text())["history"],
        },
        "metrics": {
            "onnx": {role: {k: e[k] for k in ("bytes", "fp16_weights", "max_abs_diff", "max_abs_diff_fp32",
                                              "max_abs_diff_fp16", "opset", "checked_batches")}
                     for role, e in exports.items()},
            "onnx_note": "float16 weight storage (2-D+ tensors) is used for a network only when ONNX Runtime "
            "then stays within 5e-3 (max abs, outputs in [0, 1]) of torch on 2 random and 4 real held-out "
            "inputs; otherwise the float32 file ships",
        },
        "notes": notes,
        "extra_files": {"optical": f"{name}-optical.onnx"},
        "extra_sha256": {"optical": sha256_of(folder / f"{name}-optical.onnx")},
    }
    card_path = save_card(card_data, folder)
    if measure:
        model = load_shared_model(card_path, device="cpu", backend="onnx")
        t1 = table1(model, scenes)
        torch_model = load_shared_model(run / f"{checkpoint}.pt", device="cpu")
        diffs = []
        for sar, opt, _ in real:
            diffs.append(float(np.abs(model.transform(sar[None], "sar")
                                      - torch_model.transform(sar[None], "sar")).max()))
            diffs.append(float(np.abs(model.transform(opt[None], "optical")
                                      - torch_model.transform(opt[None], "optical")).max()))
        card_data["metrics"]["table1_held_out"] = _rounded(t1)
        card_data["metrics"]["measured_on"] = (
            f"{len(scenes)} held-out real pairs ({', '.join(sorted({s.source for s in scenes}))}), whole scenes, "
            "valid pixels; model = the shipped ONNX files on ONNX Runtime CPU; SSIM Gaussian 11x11 sigma 1.5, "
            "k1 0.01, k2 0.03; PSNR MAX 1; 'none' = SAR band 1 repeated to K vs the optical bands, both normalised; "
            "'model_stretched' = shared images percentile-stretched (0.5/99.5) first, as the paper did for v1")
        card_data["metrics"]["onnx_vs_torch_real_pairs_max_abs_diff"] = max(diffs)
        save_card(card_data, folder)
    return ModelCard(**card_data)


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`write_shared_card`."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--licence", required=True)
    p.add_argument("--notes", default="")
    p.add_argument("--data-note", default="")
    p.add_argument("--folder", type=Path, default=MODELS_DIR)
    p.add_argument("--no-measure", action="store_true")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    a = p.parse_args(argv)
    card = write_shared_card(a.run, a.name, a.licence, a.notes, a.data_note, a.folder, measure=not a.no_measure,
                             checkpoint=a.checkpoint)
    print(json.dumps(card.metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
