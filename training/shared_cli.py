r"""``sarcoreg-train shared``: train the shared-modality networks (criterion v1 or v2).

Example (the shipped ``shared-v2``, reduced CPU run)::

    sarcoreg-train shared --criterion v2 --data bigearthnet-configilm --data bigearthnet-examples \\
        --data srif --data osmnet --data whu --synthetic 1 --crop 96 --batch-size 4 \\
        --threads 1 --max-minutes 33 --out /tmp/shared-v2

``--data`` specs: see :mod:`sarcoreg.training.shared_data` (``bigearthnet-configilm[:DIR]``,
``bigearthnet-examples``, ``srif[:DIR]``, ``osmnet[:DIR]``, ``whu[:DIR]``, ``multisenge:DIR``,
``sen12:DIR``, ``pairs:DIR:SAR_PATTERN:OPT_PATTERN``). Each source marks its own held-out pairs
(validation and the Table-1 metrics); ``--synthetic K`` adds K SAR-like partners per training
optical scene. ``--epochs E`` (with ``--steps-per-epoch S``, default 200) is another way of saying
``--max-steps E*S --eval-every S`` (what the QGIS *Train a model* job passes).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["shared_main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sarcoreg-train shared",
                                description="Train shared-modality U-Nets (Borisov et al. 2026).")
    p.add_argument("--data", action="append", required=True, help="data source (repeatable), see module doc")
    p.add_argument("--out", required=True, help="run folder (last.pt, best.pt, history.json, summary.json)")
    p.add_argument("--criterion", choices=("v1", "v2"), default="v2")
    p.add_argument("--sar-bands", default="VV", help="comma-separated SAR band names (dB), e.g. VV or VV,VH")
    p.add_argument("--optical-bands", default="R,G,B",
                   help="comma-separated optical band names, e.g. R,G,B or B02,B03,B04,B08")
    p.add_argument("--rgb", default="", help="indices of the optical bands whose mean is v2's gray (default: all)")
    p.add_argument("--channels", type=int, default=3, help="K, channels of the shared images")
    p.add_argument("--window", default="gaussian11", help="SSIM window: gaussian11 or uniformW (e.g. uniform5)")
    p.add_argument("--synthetic", type=int, default=0, help="SAR-like partners per training optical scene")
    p.add_argument("--crop", type=int, default=96, help="crop side, a multiple of 32")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default 200)")
    p.add_argument("--epochs", type=int, default=None, help="with --steps-per-epoch: max steps = epochs x steps")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--bn-recalibrate", type=int, default=8, metavar="BATCHES",
                   help="re-estimate BatchNorm statistics on this many batches before each validation (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", help="last.pt of an earlier run")
    p.add_argument("--no-progress", action="store_true")
    return p


def shared_main(argv: list[str]) -> int:
    """Entry point of ``sarcoreg-train shared``."""
    a = _parser().parse_args(argv)
    from sarcoreg.models.shared_modality import SharedConfig
    from sarcoreg.training.distributed import main_print
    from sarcoreg.training.shared_data import load_spec, split_holdout, synthetic_partners
    from sarcoreg.training.shared_train import SharedTrainConfig, train_shared

    sar_bands = tuple(b.strip() for b in a.sar_bands.split(",") if b.strip())
    optical_bands = tuple(b.strip() for b in a.optical_bands.split(",") if b.strip())
    rgb = tuple(int(i) for i in a.rgb.split(",") if i.strip())
    model = SharedConfig(sar_bands=sar_bands, optical_bands=optical_bands, channels=a.channels,
                         criterion=a.criterion, rgb=rgb)
    scenes, sources = [], []
    for spec in a.data:
        got = load_spec(spec, len(sar_bands), len(optical_bands), sar_bands, optical_bands)
        tr, ho = split_holdout(got)
        sources.append({"data": spec, "scenes": len(got), "train": len(tr), "held_out": len(ho)})
        scenes += got
    train, val = split_holdout(scenes)
    info: dict[str, object] = {"sources": sources, "held_out": [s.name for s in val]}
    if a.synthetic > 0:
        syn = synthetic_partners(train, len(sar_bands), copies=a.synthetic, seed=a.seed + 1000)
        train += syn
        info["synthetic_scenes"] = len(syn)
    info["train_scenes"], info["val_scenes"] = len(train), len(val)
    info["train_pixels"] = int(sum(int(s.valid.sum()) for s in train))
    main_print(f"training scenes {len(train)}, held-out scenes {len(val)}")
    eval_every = a.eval_every or a.steps_per_epoch or 200
    max_steps = a.max_steps or (a.epochs * eval_every if a.epochs else 100000)
    cfg = SharedTrainConfig(model=model, window=a.window, crop=a.crop, batch_size=a.batch_size, lr=a.lr,
                            warmup_steps=a.warmup_steps, max_steps=max_steps, max_minutes=a.max_minutes,
                            eval_every=eval_every, threads=a.threads, device=a.device, seed=a.seed,
                            bn_recalibrate_batches=a.bn_recalibrate)
    res = train_shared(train, val, a.out, cfg, resume=a.resume, progress=not a.no_progress, log=main_print,
                       data_info=info)
    main_print(json.dumps({"steps": res.steps, "seconds": res.seconds, "best_step": res.best_step,
                           "best_val_loss": res.best_val_loss, "stopped_by": res.stopped_by}))
    return 0 if res.steps > 0 else 1
