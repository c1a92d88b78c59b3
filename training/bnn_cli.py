r"""``sarcoreg-train bnn-moco`` and ``sarcoreg-train bnn``: MoCo pre-training and BNN training.

Example (MoCo-BNN, VGG11, on the real S1/S2 pairs plus one synthetic SAR partner per patch)::

    sarcoreg-train bnn-moco --data ../shared/data/s1s2/bigearthnet-configilm --synthetic 1 \\
        --backbone vgg11 --out runs/bnn-moco-vgg11 --epochs 70
    sarcoreg-train bnn --data ../shared/data/s1s2/bigearthnet-configilm --synthetic 1 \\
        --backbone vgg11 --init moco --moco-dir runs/bnn-moco-vgg11 --out runs/bnn-vgg11-moco
    sarcoreg-train bnn ... --init np --out runs/bnn-vgg11-np        # the paper's NP-BNN baseline

``--data`` takes, repeatedly, the forms of :func:`sarcoreg.training.pair_datasets.load_source`
(``qxs:ROOT``, ``sen12:ROOT``, ``sen12-spring:ROOT``, ``sarptical:ROOT``, ``folders:SAR,OPT`` or the
S1/S2 ``.npz`` folder). Pools are split into training and validation *by source scene*
(``--val-fraction``, same seed in both commands, so MoCo never sees the validation scenes).

Hard negatives for dense search (issue 17): ``--hard-negatives F`` (default 0.5) makes a share
``F`` of the BNN's negatives the same place shifted by 2-8 px (``--min-shift`` / ``--max-shift``);
the pools then keep ``--margin`` px of context around each patch (default: ``--max-shift`` when
``F > 0``, else 0; pass ``--margin 8`` with ``F = 0`` to get the near-shift validation metrics
too). ``bnn-moco`` takes ``--margin`` too (default 8) so that it reads the very same
pools; MoCo sees their centre crops. ``--hard-negatives 0`` (margin 0) reproduces runs made before.
On the 1024 px ``volkov`` scenes use ``--crops-per-scene 300``::

    sarcoreg-train bnn-moco --data volkov --crops-per-scene 300 --width 16 --out runs/moco-volkov
    sarcoreg-train bnn --data volkov --crops-per-scene 300 --width 16 --hard-negatives 0.5 \
        --hard-warmup-steps 1300 --init moco --moco-dir runs/moco-volkov --out runs/bnn-volkov-moco
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sarcoreg.training.distributed import main_print, write_summary
from sarcoreg.training.pair_datasets import (
    AlignedPatches,
    concat_pools,
    load_source,
    split_pool,
    synthetic_pool,
)

__all__ = ["bnn_main", "data_pools", "moco_main"]


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", action="append", required=True, help="training source (repeatable), see module doc")
    p.add_argument("--val", action="append", help="validation source (repeatable); default: --val-fraction")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of source scenes held out")
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="at most this many image pairs per file source")
    p.add_argument("--crops-per-scene", type=int, default=8, help="random crops per S1/S2 .npz scene")
    p.add_argument("--mosaics", action="store_true", help="S1/S2 folder: also its mosaic scenes (training side "
                   "or validation side together with the patches inside them)")
    p.add_argument("--margin", type=int, default=None, help="context px kept around each patch (hard negatives); "
                   "default: bnn --max-shift when --hard-negatives > 0, else 0; bnn-moco 8")
    p.add_argument("--synthetic", type=int, default=0, help="SAR-like partners per training optical patch")
    p.add_argument("--backbone", choices=("vgg11", "resnet50", "darknet53"), default="vgg11")
    p.add_argument("--width", type=int, default=64, help="first-stage width of VGG11 (64 = VGG11; small for CPU)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--resume", help="last.pt of an earlier run ('auto' for bnn-moco: OUT/<modality>/last.pt)")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--no-progress", action="store_true")


def data_pools(a: argparse.Namespace) -> tuple[AlignedPatches, AlignedPatches, dict[str, object]]:
    """Training and validation pools of the parsed ``--data`` / ``--val`` / ``--synthetic`` / ``--margin`` options."""
    margin = int(getattr(a, "margin", 0) or 0)
    pools = [load_source(s, a.patch_size, a.limit, a.seed, a.crops_per_scene, a.mosaics, margin) for s in a.data]
    pool = concat_pools(pools)
    if a.val:
        val_pools = [load_source(s, a.patch_size, a.limit, a.seed + 1, a.crops_per_scene, a.mosaics, margin)
                     for s in a.val]
        train, val = pool, concat_pools(val_pools)
    else:
        train, val = split_pool(pool, a.val_fraction, a.seed)
    info: dict[str, object] = {"sources": list(a.data), "val_sources": a.val, "real_train_pairs": len(train),
                               "val_pairs": len(val), "margin": margin,
                               "train_scenes": len(np.unique(train.groups)), "val_scenes": len(np.unique(val.groups))}
    if a.synthetic > 0:
        # simulated partners keep their scene's group: never a negative of their own scene
        syn = [synthetic_pool(train.opt, seed=1000 * (k + 1), groups=train.groups) for k in range(a.synthetic)]
        parts = [train, *syn]
        train = AlignedPatches(np.concatenate([x.sar for x in parts]), np.concatenate([x.opt for x in parts]),
                               np.concatenate([x.groups for x in parts]), [n for x in parts for n in x.names],
                               train.margin)
        info["synthetic_train_pairs"] = sum(len(x) for x in syn)
    return train, val, info


def moco_main(argv: list[str]) -> int:
    """``sarcoreg-train bnn-moco``: pre-train the SAR and / or optical encoder."""
    from sarcoreg.training.moco import MoCoConfig, pretrain_moco

    p = argparse.ArgumentParser(prog="sarcoreg-train bnn-moco", description="MoCo pre-training of BNN encoders.")
    _add_data_args(p)
    p.add_argument("--modality", choices=("sar", "opt", "both"), default="both")
    p.add_argument("--epochs", type=int, default=70)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--lr-drop-epoch", type=int, default=None, help="multiply lr by 0.5 from this epoch (QXS: 250)")
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--shuffle-groups", type=int, default=4, help="sub-batches of the single-device shuffled BN")
    a = p.parse_args(argv)
    if a.margin is None:
        a.margin = 8
    train, _, info = data_pools(a)
    train = train.centre()
    main_print(f"MoCo on {len(train)} training patches per modality ({train.patch_size} px centre crops)")
    cfg = MoCoConfig(backbone=a.backbone, width=a.width, queue_size=a.queue_size, shuffle_groups=a.shuffle_groups,
                     epochs=a.epochs, steps_per_epoch=a.steps_per_epoch, batch_size=a.batch_size, lr=a.lr,
                     lr_drop_epoch=a.lr_drop_epoch, device=a.device, threads=a.threads,
                     max_minutes=a.max_minutes, max_steps=a.max_steps, seed=a.seed)
    summary: dict[str, object] = {"data": info}
    for mod in (("sar", "opt") if a.modality == "both" else (a.modality,)):
        out = Path(a.out) / mod
        resume = a.resume
        if a.resume == "auto":
            resume = str(out / "last.pt") if (out / "last.pt").is_file() else None
        elif a.resume and a.modality == "both":
            p.error("with --modality both use --resume auto (each modality resumes from OUT/<modality>/last.pt)")
        res = pretrain_moco(train.sar if mod == "sar" else train.opt, out, mod, cfg, resume=resume,
                            progress=not a.no_progress, log=main_print)
        summary[mod] = {k: v for k, v in res.__dict__.items() if k != "history"}
    write_summary(a.out, summary)
    return 0


def bnn_main(argv: list[str]) -> int:
    """``sarcoreg-train bnn``: train NP-BNN or MoCo-BNN."""
    from sarcoreg.training.bnn_train import BNNTrainConfig, train_bnn

    p = argparse.ArgumentParser(prog="sarcoreg-train bnn", description="Train the BNN on aligned patch pairs.")
    _add_data_args(p)
    p.add_argument("--init", choices=("np", "moco"), default="np", help="np: from scratch; moco: MoCo encoders")
    p.add_argument("--moco-dir", help="output folder of bnn-moco (sar/encoder_sar.pt, opt/encoder_opt.pt)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--augment", action="store_true", help="RRL-Net style jitter and joint flips / rotations "
                   "(with --hard-negatives > 0 without the per-patch scale / shift jitter)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the forward pass (weights stay fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format (with --bf16 about 2x faster per CPU step here)")
    p.add_argument("--hard-negatives", type=float, default=0.5,
                   help="share of the negatives that are the same place shifted (0: other scenes only, as before)")
    p.add_argument("--min-shift", type=int, default=2, help="smallest shift of a hard negative (larger axis), px")
    p.add_argument("--max-shift", type=int, default=8, help="largest shift of a hard negative (larger axis), px")
    p.add_argument("--hard-warmup-steps", type=int, default=0,
                   help="far negatives only for this many first steps, then --hard-negatives")
    a = p.parse_args(argv)
    if a.margin is None:
        a.margin = a.max_shift if a.hard_negatives > 0 else 0
    if a.hard_negatives > 0 and a.margin < a.max_shift:
        p.error(f"--margin {a.margin} is smaller than --max-shift {a.max_shift}")
    train, val, info = data_pools(a)
    main_print(f"training pairs {len(train)}, validation pairs {len(val)}")
    moco_sar = moco_opt = None
    if a.init == "moco":
        if not a.moco_dir:
            p.error("--init moco needs --moco-dir (the --out folder of sarcoreg-train bnn-moco)")
        moco_sar = str(Path(a.moco_dir) / "sar" / "encoder_sar.pt")
        moco_opt = str(Path(a.moco_dir) / "opt" / "encoder_opt.pt")
    cfg = BNNTrainConfig(backbone=a.backbone, width=a.width, init=a.init, moco_sar=moco_sar, moco_opt=moco_opt,
                         epochs=a.epochs, steps_per_epoch=a.steps_per_epoch, batch_size=a.batch_size, lr=a.lr,
                         augment=a.augment, bf16=a.bf16,
                         channels_last=a.channels_last, hard_negatives=a.hard_negatives, min_shift=a.min_shift,
                         max_shift=a.max_shift, hard_warmup_steps=a.hard_warmup_steps,
                         device=a.device, threads=a.threads, max_minutes=a.max_minutes, max_steps=a.max_steps,
                         seed=a.seed)
    res = train_bnn(train, val, a.out, cfg, resume=a.resume, progress=not a.no_progress, log=main_print)
    write_summary(a.out, {"data": info, **{k: v for k, v in res.__dict__.items() if k != "history"}})
    return 0
