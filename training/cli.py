r"""``sarcoreg-train``: train the patch-matching networks.

Example (the shipped VIS-NIR model, reduced CPU run)::

    sarcoreg-train rrlnet --data ../shared/data/vis-nir/registration/country --out runs/visnir \\
        --max-minutes 20 --threads 2

``--data`` takes, repeatedly: a published patch file (``country.npy``, ``os_train_image.npy``
... with its ``*_label.npy``), a folder of aligned VIS-NIR pairs (``NNNN_rgb.jpg`` /
``NNNN_nir.jpg``), the ``s1s2/bigearthnet-configilm`` folder of real S1/S2 ``.npz`` pairs, or the
word ``bigearthnet-examples`` (the six S1/S2 pairs of the ``bigearthnet-common`` package), or a
real SAR / optical source of :func:`sarcoreg.training.real_pairs.pairs_from_spec` (``volkov``: the
refined Sentinel-1/2 training scenes; ``srif:ROOT``, ``osmnet:ROOT``, ``whu:ROOT``).
Image-pair sources are split *by image pair* into training and validation (``--val-fraction``);
``--synthetic K`` adds K SAR-like partners (:func:`sarcoreg.core.synthetic.sar_like_db`) per
training optical image.

Every method trains on :mod:`sarcoreg.training.loop`, so every command also runs on several
processes with torch DDP (``--batch-size`` stays the global batch; rank 0 logs and writes)::

    torchrun --nproc_per_node 2 -m sarcoreg.training.cli rrlnet --data DIR --out runs/visnir
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sarcoreg.training.distributed import main_print, write_summary
from sarcoreg.training.patches import (
    AlignedPair,
    PatchSet,
    build_patch_pairs,
    concat,
    load_npy,
    s1s2_pair,
    s1s2_pairs,
    synthetic_sar_pairs,
    visnir_pairs,
)

__all__ = ["bigearthnet_example_pairs", "build_datasets", "main"]


def bigearthnet_example_pairs() -> list[AlignedPair]:
    """The six S1/S2 pairs of ``bigearthnet-common`` prepared like :func:`s1s2_pairs`."""
    from osgeo import gdal
    from sarcoreg.core.sample_data import bigearthnet_pairs

    def read(path: Path) -> np.ndarray:
        ds = gdal.Open(str(path))
        return np.asarray(ds.ReadAsArray(), dtype=np.float32)

    out = []
    for p in bigearthnet_pairs():
        s1 = np.stack([read(p.s1["VV"]), read(p.s1["VH"])])
        rgb = np.stack([read(p.s2[b]) for b in ("B04", "B03", "B02")])
        out.append(s1s2_pair(s1, rgb, p.name))
    return out


def _image_pairs(spec: str) -> list[AlignedPair] | None:
    if spec == "bigearthnet-examples":
        return bigearthnet_example_pairs()
    p = Path(spec)
    if p.is_dir() and any(p.glob("*_rgb.jpg")):
        return visnir_pairs(p)
    if p.is_dir() and any(p.glob("benv*_pairs/*.npz")):
        return s1s2_pairs(p)
    if p.is_file() and p.suffix == ".npy":
        return None
    from sarcoreg.training.real_pairs import pairs_from_spec

    real = pairs_from_spec(spec)
    if real is not None:
        return real
    raise ValueError(
        f"--data {spec!r}: not a patch .npy file, a VIS-NIR pair folder, the S1/S2 npz folder or "
        "'bigearthnet-examples'"
    )


def build_datasets(
    specs: list[str],
    *,
    val_specs: list[str] | None = None,
    val_fraction: float = 0.1,
    pairs_per_image: int = 128,
    synthetic: int = 0,
    seed: int = 0,
) -> tuple[PatchSet, PatchSet, dict[str, object]]:
    """Training and validation patch sets from ``--data`` / ``--val`` sources.

    Returns:
        ``(train, val, info)``; ``info`` describes what went where (for the model card).
    """
    rng = np.random.default_rng(seed)
    train_sets, val_sets = [], []
    sources: list[dict[str, object]] = []
    val_images: list[str] = []
    info: dict[str, object] = {"sources": sources, "val_images": val_images}
    train_optical: list[np.ndarray] = []
    for spec in specs:
        pairs = _image_pairs(spec)
        if pairs is None:
            ps = load_npy(spec)
            if val_specs:
                train_sets.append(ps)
            else:
                perm = rng.permutation(len(ps))
                k = max(2, int(round(val_fraction * len(ps))))
                val_sets.append(ps.subset(np.sort(perm[:k])))
                train_sets.append(ps.subset(np.sort(perm[k:])))
            sources.append({"data": spec, "patch_pairs": len(ps)})
            continue
        if val_specs:
            tr, va = pairs, []
        else:
            perm = rng.permutation(len(pairs))
            k = max(1, int(round(val_fraction * len(pairs))))
            va = [pairs[i] for i in sorted(perm[:k])]
            tr = [pairs[i] for i in sorted(perm[k:])]
        train_sets.append(build_patch_pairs(tr, pairs_per_image=pairs_per_image, seed=seed))
        if va:
            val_sets.append(build_patch_pairs(va, pairs_per_image=pairs_per_image, seed=seed + 1))
        train_optical += [p.a for p in tr]
        sources.append({"data": spec, "image_pairs": len(pairs), "train": len(tr), "val": len(va)})
        val_images += [p.name for p in va]
    if synthetic > 0 and train_optical:
        syn = [p for k in range(synthetic) for p in synthetic_sar_pairs(train_optical, seed=1000 * (k + 1))]
        train_sets.append(build_patch_pairs(syn, pairs_per_image=pairs_per_image, seed=seed + 2))
        info["synthetic_pairs"] = len(syn)
    for spec in val_specs or []:
        pairs = _image_pairs(spec)
        if pairs is None:
            val_sets.append(load_npy(spec))
        else:
            val_sets.append(build_patch_pairs(pairs, pairs_per_image=pairs_per_image, seed=seed + 1))
    if not train_sets or not val_sets:
        raise ValueError("need training data (--data) and validation data (--val or --val-fraction > 0)")
    train, val = concat(train_sets), concat(val_sets)
    info["train_patch_pairs"], info["val_patch_pairs"] = len(train), len(val)
    return train, val, info


def _rrlnet(argv: list[str]) -> int:
    from sarcoreg.training.rrlnet_train import TrainConfig, train_rrlnet

    p = argparse.ArgumentParser(prog="sarcoreg-train rrlnet", description="Train RRL-Net on 64 x 64 patch pairs.")
    p.add_argument("--data", action="append", required=True, help="training source (repeatable), see module doc")
    p.add_argument("--val", action="append", help="validation source (repeatable); default: --val-fraction")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of image pairs / patches held out")
    p.add_argument("--out", required=True, help="output folder (checkpoints, history, best.onnx)")
    p.add_argument("--pairs-per-image", type=int, default=128, help="patch pairs cut per image pair (half positive)")
    p.add_argument("--synthetic", type=int, default=0, help="SAR-like partners per training optical image")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default floor(N / batch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--perceptual", choices=("vgg19", "gradient", "none"), default=None,
                   help="perceptual loss term; default vgg19 with --vgg19-weights, else the gradient substitute")
    p.add_argument("--vgg19-weights", help="torchvision VGG19 state dict (.pth) for the paper's perceptual loss")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--bn-recalibrate", type=int, default=4, metavar="BATCHES",
                   help="re-estimate BatchNorm statistics on this many batches before each validation (0: off)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast of the forward pass (1.8x faster on AVX-512-bf16 CPUs; weights stay fp32)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget in total over resumed runs (resume with a larger one); ends after the step")
    p.add_argument("--resume", help="last.pt of an earlier run")
    p.add_argument("--init", help="start from these network weights (best.pt, last.pt or an fp16 warm-start file; "
                                  "fresh optimiser)")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    perceptual = a.perceptual or ("vgg19" if a.vgg19_weights else "gradient")
    train, val, info = build_datasets(
        a.data, val_specs=a.val, val_fraction=a.val_fraction, pairs_per_image=a.pairs_per_image,
        synthetic=a.synthetic, seed=a.seed,
    )
    main_print(f"training pairs {len(train)}, validation pairs {len(val)}")
    cfg = TrainConfig(
        epochs=a.epochs, steps_per_epoch=a.steps_per_epoch, batch_size=a.batch_size, lr=a.lr,
        perceptual=perceptual, vgg19_weights=a.vgg19_weights, augment=not a.no_augment, device=a.device,
        threads=a.threads, max_minutes=a.max_minutes, seed=a.seed, bn_recalibrate_batches=a.bn_recalibrate,
        bf16=a.bf16,
    )
    res = train_rrlnet(train, val, a.out, cfg, resume=a.resume, init=a.init, progress=not a.no_progress,
                       log=main_print)
    write_summary(a.out, {"data": info, **{k: v for k, v in res.__dict__.items() if k != "history"}})
    return 0


def _bnn(argv: list[str]) -> int:
    from sarcoreg.training.bnn_cli import bnn_main  # BNN (issue 6)

    return bnn_main(argv)


def _bnn_moco(argv: list[str]) -> int:
    from sarcoreg.training.bnn_cli import moco_main  # MoCo pre-training for BNN (issue 6)

    return moco_main(argv)


def _aae(argv: list[str]) -> int:
    from sarcoreg.training.aae_cli import aae_main  # AAE semi-supervised matcher (issue 7)

    return aae_main(argv)


def _aae_eval(argv: list[str]) -> int:
    from sarcoreg.training.aae_cli import aae_eval_main  # AAE matching-error evaluation (issue 7)

    return aae_eval_main(argv)


def _shared(argv: list[str]) -> int:
    from sarcoreg.training.shared_cli import shared_main  # shared-modality transform (issue 5)

    return shared_main(argv)


def _refine_volkov(argv: list[str]) -> int:
    from sarcoreg.training.refine_alignment import main as refine_main  # volkov-1024 alignment (issue 15)

    return refine_main(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``sarcoreg-train <model> [options]`` (models: ``rrlnet``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    models = {"rrlnet": _rrlnet, "bnn": _bnn, "bnn-moco": _bnn_moco, "aae": _aae, "aae-eval": _aae_eval,
              "shared": _shared, "refine-volkov": _refine_volkov}
    if not args or args[0] not in models:
        print(f"usage: sarcoreg-train {{{','.join(models)}}} [options]  (try: sarcoreg-train rrlnet -h)")
        return 2
    return models[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
