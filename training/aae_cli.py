r"""``sarcoreg-train aae``: train the semi-supervised dual adversarial autoencoder.

Example (GPU, real S1/S2 pairs plus SAR-like partners, 25 % supervision)::

    sarcoreg-train aae --data ../shared/data/s1s2/bigearthnet-configilm --data bigearthnet-examples \\
        --mosaics --synthetic 2 --patch-size 64 --search-size 96 --per-image 16 --supervision 0.25 \\
        --epochs 100 --find-lr --val-maps 64 --out runs/aae-s25

``--data`` takes the image-pair sources of ``sarcoreg-train rrlnet`` (the S1/S2 ``.npz`` folder,
``bigearthnet-examples``, a VIS-NIR pair folder) and the real SAR / optical pairs ``srif:ROOT``,
``osmnet:ROOT``, ``whu:ROOT`` (:mod:`sarcoreg.training.real_pairs`); patch ``.npy`` files are not accepted (the AAE
needs search patches larger than its input). Image pairs are split by pair into training and
validation (``--val-fraction``); ``--synthetic K`` adds K SAR-like partners per training optical
image. ``--search-size`` must not exceed the image size (120 for the S1/S2 pairs; the
``--mosaics`` scenes are 240 px and more).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sarcoreg.training.patches import AlignedPair, s1s2_pairs, synthetic_sar_pairs

__all__ = ["aae_eval_main", "aae_main", "load_image_pairs", "split_image_pairs", "verification_pairs"]


def load_image_pairs(spec: str, mosaics: bool = False) -> list[AlignedPair]:
    """Aligned optical / SAR image pairs of one ``--data`` source.

    Raises:
        ValueError: The source is a patch file or unknown.
    """
    from sarcoreg.training.cli import _image_pairs
    from sarcoreg.training.real_pairs import pairs_from_spec

    real = pairs_from_spec(spec)
    if real is not None:
        return real
    p = Path(spec)
    if p.is_dir() and any(p.glob("benv*_pairs/*.npz")):
        return s1s2_pairs(p, include_mosaics=mosaics)
    pairs = _image_pairs(spec)
    if pairs is None:
        raise ValueError(f"--data {spec!r}: the AAE trains on image pairs, not on a patch .npy file")
    return pairs


def split_image_pairs(specs: list[str], mosaics: bool, val_fraction: float,
                      seed: int) -> tuple[list[AlignedPair], list[AlignedPair]]:
    """Training and validation image pairs, split per source (same split for the same arguments).

    The split is by region (:func:`sarcoreg.training.real_pairs.s1s2_regions`): an S1/S2 mosaic and
    the patches inside it go to the same side; every other pair is its own region.
    """
    from sarcoreg.training.real_pairs import s1s2_regions

    rng = np.random.default_rng(seed)
    train_pairs: list[AlignedPair] = []
    val_pairs: list[AlignedPair] = []
    for spec in specs:
        pairs = load_image_pairs(spec, mosaics)
        regions = np.asarray(s1s2_regions([q.name for q in pairs]))
        ids = np.unique(regions)
        perm = rng.permutation(ids)
        k = max(1, int(round(val_fraction * len(ids)))) if len(ids) > 1 else 0
        held = np.isin(regions, perm[:k])
        val_pairs += [q for q, h in zip(pairs, held, strict=True) if h]
        train_pairs += [q for q, h in zip(pairs, held, strict=True) if not h]
    return train_pairs, val_pairs


def _source_of(name: str) -> str:
    """The data source of an image pair name (``srif/pair3`` -> ``srif``; S1/S2 ``.npz`` names -> ``s1s2``)."""
    return name.split("/", 1)[0] if "/" in name else "s1s2"


def _error_stats(err: np.ndarray) -> dict[str, float]:
    """Mean, median, 1st percentile and the shares below 1, 2, 3 and 5 px of matching errors."""
    if err.size == 0:
        return {}
    return {"mean_px": float(err.mean()), "median_px": float(np.median(err)), "p1_px": float(np.percentile(err, 1)),
            **{f"share_below_{k}px": float((err < k).mean()) for k in (1, 2, 3, 5)}}


def verification_pairs(patches: np.ndarray, template: int, offsets: tuple[int, int],
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive and shifted negative patch pairs of co-registered search patches.

    Each search patch gives one positive (optical and SAR centre crops) and one negative (the
    optical centre crop against a SAR crop moved by an offset whose larger axis is drawn from
    ``offsets``, the other axis at most as large, random signs).

    Args:
        patches: ``(N, 2, S, S)`` uint8, ``[:, 0]`` optical, ``[:, 1]`` SAR.
        template: Crop side ``P`` (``S - P >= 2 * offsets[1]``).
        offsets: ``(low, high)`` px of the negatives' larger axis.
        seed: Random seed.

    Returns:
        ``(optical (2N, P, P), sar (2N, P, P), labels (2N,))``, float32 in [0, 1] and 0/1.
    """
    n, _, s, _ = patches.shape
    r = (s - template) // 2
    lo, hi = offsets
    if r < hi:
        raise ValueError(f"search patches of {s} px leave {r} px around a {template} px crop; need {hi}")
    rng = np.random.default_rng(seed)
    big = rng.integers(lo, hi + 1, size=n)
    small = np.array([rng.integers(0, b + 1) for b in big])
    swap = rng.random(n) < 0.5
    dy, dx = np.where(swap, big, small), np.where(swap, small, big)
    dy, dx = dy * rng.choice([-1, 1], size=n), dx * rng.choice([-1, 1], size=n)
    opt = patches[:, 0, r : r + template, r : r + template]
    pos = patches[:, 1, r : r + template, r : r + template]
    neg = np.stack([patches[k, 1, r + dy[k] : r + dy[k] + template, r + dx[k] : r + dx[k] + template]
                    for k in range(n)])
    labels = np.concatenate([np.ones(n, np.float32), np.zeros(n, np.float32)])
    return (np.concatenate([opt, opt]).astype(np.float32) / 255.0,
            np.concatenate([pos, neg]).astype(np.float32) / 255.0, labels)


def aae_eval_main(argv: list[str]) -> int:
    """``sarcoreg-train aae-eval``: correspondence maps on held-out pairs, Figure 4 histograms, a map PNG."""
    from sarcoreg.core.correspondence import (
        correspondence_maps,
        find_peaks,
        make_cases,
        matching_errors,
        plot_correspondence_map,
        plot_error_histograms,
    )
    from sarcoreg.models.descriptor_model import load_descriptor_model
    from sarcoreg.training.aae_train import cut_search_patches
    from sarcoreg.training.metrics import auc, fpr95

    p = argparse.ArgumentParser(prog="sarcoreg-train aae-eval",
                                description="Matching errors of AAE models on the held-out image pairs.")
    p.add_argument("--model", action="append", required=True, metavar="LABEL=PATH",
                   help="model to evaluate (repeatable): LABEL=path/best.onnx (or .pt) or a card name")
    p.add_argument("--data", action="append", required=True, help="the --data sources used for training")
    p.add_argument("--mosaics", action="store_true")
    p.add_argument("--val-fraction", type=float, default=0.15, help="as in training (same split)")
    p.add_argument("--seed", type=int, default=100, help="as in training (same split)")
    p.add_argument("--template-size", type=int, default=None, help="default the model's patch size")
    p.add_argument("--search-size", type=int, default=96)
    p.add_argument("--cases-per-pair", type=int, default=8)
    p.add_argument("--stride", type=int, default=1, help="window grid step of the maps (1 = dense)")
    p.add_argument("--verification-per-pair", type=int, default=64,
                   help="search patches per held-out pair for FPR95 / AUC (near: 2-8 px, far: >= 16 px negatives)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    _, val_pairs = split_image_pairs(a.data, a.mosaics, a.val_fraction, a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    errors: dict[str, np.ndarray] = {}
    report: dict[str, object] = {"val_image_pairs": [q.name for q in val_pairs]}
    patches, _ = cut_search_patches(val_pairs, a.search_size, a.verification_per_pair, seed=a.seed + 7)
    for spec in a.model:
        label, _, path = spec.rpartition("=")
        model = load_descriptor_model(path, device=a.device)
        t = a.template_size or model.patch_size
        side = min(min(q.a.shape) for q in val_pairs)
        max_shift = max(0, min((a.search_size - t) // 2 - 2, (side - a.search_size) // 2))
        temps, search, truth = make_cases([(q.a, q.b) for q in val_pairs], t, a.search_size,
                                          per_pair=a.cases_per_pair, max_shift=max_shift, seed=a.seed)
        maps = correspondence_maps(model, temps, search, stride=a.stride)
        pk = find_peaks(maps)
        err = matching_errors(pk.shift, truth)
        name = label or Path(path).stem
        errors[name] = err
        entry: dict[str, object] = {
            "model": path, "cases": int(len(err)), "max_shift": max_shift, **_error_stats(err),
            "mean_reliability": float(pk.reliability.mean()),
        }
        report[name] = entry
        for label_neg, rng_neg in (("near", (2, 8)), ("far", (16, min(32, (a.search_size - t) // 2)))):
            if (a.search_size - t) // 2 < rng_neg[1] or rng_neg[0] > rng_neg[1]:
                continue
            vo, vs, vy = verification_pairs(patches.images, t, rng_neg, seed=a.seed)
            sc = model.score(vo, vs)
            entry[f"verification_{label_neg}"] = {"negative_offset_px": list(rng_neg), "pairs": int(len(vy)),
                                                  "fpr95": fpr95(vy, sc), "auc": auc(vy, sc)}
        source = np.array([_source_of(val_pairs[k // a.cases_per_pair].name) for k in range(len(err))])
        entry["per_source"] = {src: {"cases": int((source == src).sum()), **_error_stats(err[source == src])}
                                      for src in sorted(set(source.tolist()))}
        best = int(np.argmax(pk.reliability))
        plot_correspondence_map(maps[best], out / f"map-{name}.png", template=temps[best], search=search[best],
                                true_shift=(float(truth[best, 0]), float(truth[best, 1])), title=name)
        print(json.dumps({name: report[name]}), flush=True)
    report["protocol"] = (f"template {t} px (optical) in search region {a.search_size} px (SAR), true shift uniform in "
                          f"[-{max_shift}, {max_shift}] px per axis, {a.cases_per_pair} cases per held-out image pair, "
                          f"map stride {a.stride} (denser around the best grid point), peak with sub-pixel fit")
    plot_error_histograms(errors, out / "error-histograms.png")
    (out / "evaluation.json").write_text(json.dumps(report, indent=1))
    return 0


def aae_main(argv: list[str]) -> int:
    """Parse ``argv``, cut search patches, train, write ``summary.json``; returns the exit code."""
    from sarcoreg.training.aae_train import AAETrainConfig, cut_search_patches, train_aae
    from sarcoreg.training.distributed import main_print, write_summary

    p = argparse.ArgumentParser(prog="sarcoreg-train aae",
                                description="Train the semi-supervised AAE matcher (Hughes & Schmitt 2019).")
    p.add_argument("--data", action="append", required=True, help="image-pair source (repeatable), see module doc")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of image pairs held out")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mosaics", action="store_true", help="also the larger S1/S2 mosaic scenes")
    p.add_argument("--synthetic", type=int, default=0, help="SAR-like partners per training optical image")
    p.add_argument("--patch-size", type=int, default=128, help="template / crop size P (multiple of 32)")
    p.add_argument("--search-size", type=int, default=256, help="search patch size S (> P)")
    p.add_argument("--per-image", type=int, default=16, help="search patches per image pair")
    p.add_argument("--width", type=int, default=64, help="first VGG11 width (64 = VGG11)")
    p.add_argument("--latent-dim", type=int, default=256)
    p.add_argument("--supervision", type=float, default=1.0, help="labelled share: 1, 0.75, 0.5, 0.25, 0.05")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default floor(N / batch)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr-low", type=float, default=5e-5)
    p.add_argument("--lr-high", type=float, default=5e-4)
    p.add_argument("--find-lr", action="store_true", help="run the LR range test and use its range")
    p.add_argument("--lr-test-steps", type=int, default=100)
    p.add_argument("--margin", type=float, default=1.0, help="contrastive margin on the squared distance")
    p.add_argument("--adversarial-weight", type=float, default=1.0,
                   help="weight of the encoders' adversarial term (1 in the paper; 0 = no critic)")
    p.add_argument("--critic-on-sphere", action="store_true",
                   help="critic on the L2-normalised codes against a uniform prior on the sphere (issue 17: "
                        "on the raw codes any weight >= 0.01 collapses the descriptors)")
    p.add_argument("--min-negative-offset", type=int, default=16, help="px, off-centre negatives")
    p.add_argument("--easy-negatives", type=float, default=0.0,
                   help="share of training negatives taken from another search patch (0: only off-centre ones)")
    p.add_argument("--val-maps", type=int, default=0, help="correspondence maps per validation (matching error)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the forward pass (weights stay fp32)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format (with --bf16 about 3.6x faster per CPU step here)")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--resume", help="last.pt of an earlier run")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    train_pairs, val_pairs = split_image_pairs(a.data, a.mosaics, a.val_fraction, a.seed)
    if a.synthetic > 0:
        optical = [q.a for q in train_pairs]
        train_pairs += [q for j in range(a.synthetic) for q in synthetic_sar_pairs(optical, seed=1000 * (j + 1))]
    if not val_pairs:
        raise SystemExit("no validation image pairs: give more data or a larger --val-fraction")
    train, skipped = cut_search_patches(train_pairs, a.search_size, a.per_image, seed=a.seed)
    val, skipped_val = cut_search_patches(val_pairs, a.search_size, a.per_image, seed=a.seed + 1)
    main_print(f"search patches: training {len(train)}, validation {len(val)} "
               f"(image pairs smaller than {a.search_size} px skipped: {len(skipped) + len(skipped_val)})")
    cfg = AAETrainConfig(
        patch_size=a.patch_size, width=a.width, latent_dim=a.latent_dim, supervision=a.supervision, epochs=a.epochs,
        steps_per_epoch=a.steps_per_epoch, batch_size=a.batch_size, lr_low=a.lr_low, lr_high=a.lr_high,
        find_lr=a.find_lr, lr_test_steps=a.lr_test_steps, margin=a.margin, min_negative_offset=a.min_negative_offset,
        easy_negatives=a.easy_negatives, adversarial_weight=a.adversarial_weight,
        critic_on_sphere=a.critic_on_sphere, bf16=a.bf16, channels_last=a.channels_last,
        augment=not a.no_augment, device=a.device, threads=a.threads, max_minutes=a.max_minutes, seed=a.seed,
        val_maps=a.val_maps,
    )
    res = train_aae(train, val, a.out, cfg, resume=a.resume, progress=not a.no_progress, log=main_print)
    summary = {
        "data": {"sources": a.data, "train_image_pairs": len(train_pairs), "val_image_pairs": len(val_pairs),
                 "train_patches": len(train), "val_patches": len(val), "skipped": skipped + skipped_val},
        "supervision": a.supervision,
        **{k: v for k, v in res.__dict__.items() if k != "history"},
    }
    write_summary(a.out, summary)
    return 0
