"""The shared-modality paper's Table 2 on our data (Borisov et al. 2026, sections 4.5-4.6).

Usage::

    python bench/bench_shared_modality.py [--threads 1] [--max-keypoints 4096] [--limit N]
        [--matchers sift,disk-lightglue,aliked-lightglue,xfeat,xfeat-lighterglue]
        [--transforms none,shared-v1,shared-v2] [--no-structural] [--tag TEXT]
    python bench/bench_shared_modality.py --transforms none,shared-v1=RUN/best.pt,shared-v2=RUN/best.pt

Rows: transform {none, shared-v1, shared-v2} x matcher {SIFT, DISK+LightGlue, ALIKED+LightGlue,
XFeat (mutual NN)}, an extra XFeat+LighterGlue row, plus the engine's ``structural`` matcher
(CFOG + FFT correlation on a grid of templates) as a baseline row per transform. Every row is measured twice:

- ``identity``: the aligned pair as it is (ground truth T = identity, as the paper);
- ``warped``: the SAR side warped by a known random similarity about the image centre (rotation
  +-10 deg, scale 0.9-1.1, shift +-20 px, seeded per pair; black outside the footprint), ground truth
  T (SAR -> optical pixels) known. On aligned pairs some matchers find the identity trivially (a
  keypoint detected at the same place in both images matches itself); the warped run removes that.

Inputs (read only from ../shared/data), the pairs held out from the shared-modality training
(``training/shared_data.py`` defaults; when ``models/cards/shared-v2.json`` exists, its
``training`` field is printed so the hold-out can be checked):

- BigEarthNet v1 pairs of split ``test`` in ``s1s2/bigearthnet-configilm/index.json`` (10, 120 x 120);
- the six ``bigearthnet-common`` pairs (120 x 120);
- OSMNet pair 4 (256 x 256);
- WHU-OPT-SAR held-out strip (columns >= 768), cut into 4 tiles of 224 x 224.

The v2 pairs and the three v2 mosaics are *not* used: the shared-modality trainer trains on them.

"none" = SAR VV (dB) percentile-normalised (0.5/99.5) and repeated to 3 channels vs optical RGB
percentile-normalised jointly over the bands (the paper's "None"). "shared-vN" = both sides through
``load_shared_model("shared-vN").transform`` (or ``shared-vN=PATH``: a card, ONNX or a
training checkpoint); shared-v1 outputs are percentile-stretched before
matching (the paper: v1 images have low contrast), v2 outputs are used as they are (``--stretch all``
stretches every model's outputs, like the public code's ``--limit-net-output``). Without the
model the bench prints that it skips those rows.

Metrics: :mod:`sarcoreg.core.keypoints.metrics` (SR, ACE, MMA, Delta_p, |P|, |P_5 correct|,
CMR_d, LE_d; RANSAC homography, 3 px, 2000 iterations). Image A = SAR, image B = optical. The
paper's success threshold ACE < 40 px was set for 256 x 256 images and is lax for our 120 x 120
ones, so ``SR10`` (share of pairs with ACE < 10 px) is reported as well.

Writes ``bench/results/shared_modality[_<tag>].csv`` (one line per condition x transform x
matcher), ``..._pairs.csv`` (every pair) and ``.png`` (CMR_d and LE_d against d, like the paper's
Fig. 5), and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MATCHERS = ["sift", "disk-lightglue", "aliked-lightglue", "xfeat", "xfeat-lighterglue"]
TRANSFORMS = ["none", "shared-v1", "shared-v2"]
LABELS = {"sift": "SIFT", "disk-lightglue": "DISK+LightGlue", "aliked-lightglue": "ALIKED+LightGlue",
          "xfeat": "XFeat", "xfeat-lighterglue": "XFeat+LighterGlue", "structural": "structural (engine)"}


@dataclass
class Pair:
    """One held-out aligned pair: SAR ``(1, H, W)`` and optical RGB ``(3, H, W)``, both in [0, 1]."""

    name: str
    source: str
    sar: np.ndarray
    optical: np.ndarray
    valid: np.ndarray


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in OpenCV and torch."""
    cv2.setNumThreads(n)
    import torch

    torch.set_num_threads(n)


def machine() -> str:
    """One line naming the machine."""
    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def load_pairs(limit: int | None = None) -> list[Pair]:
    """The held-out pairs (module doc), normalised by the shared-modality trainer's own loaders."""
    from sarcoreg.training import shared_data as sd

    scenes = [s for s in sd.bigearthnet_configilm(mosaics=False) if s.holdout]
    scenes += sd.bigearthnet_examples()
    scenes += [s for s in sd.osmnet() if s.holdout]
    pairs = [Pair(s.name, s.source, s.sar[:1], s.optical[:3], s.valid) for s in scenes]
    whu = [s for s in sd.whu() if s.holdout][0]
    t = 224
    for i in range(whu.shape[0] // t):
        sl = (slice(i * t, (i + 1) * t), slice(0, t))
        pairs.append(Pair(f"whu-holdout-r{i}", "whu", whu.sar[:1][:, sl[0], sl[1]],
                          whu.optical[:3][:, sl[0], sl[1]], whu.valid[sl]))
    return pairs[:limit] if limit else pairs


def random_similarity(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A 3 x 3 similarity about the image centre: rotation +-10 deg, scale 0.9-1.1, shift +-20 px."""
    h, w = shape
    ang = np.deg2rad(rng.uniform(-10, 10))
    s = rng.uniform(0.9, 1.1)
    tx, ty = rng.uniform(-20, 20, size=2)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, sn = s * np.cos(ang), s * np.sin(ang)
    return np.array([[c, -sn, cx - c * cx + sn * cy + tx], [sn, c, cy - sn * cx - c * cy + ty], [0, 0, 1.0]])


def percentile_stretch(x: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Joint 0.5/99.5 percentile stretch of a ``(C, H, W)`` image to [0, 1] (the public code's rule)."""
    lo, hi = np.percentile(x, [low, high])
    if not hi > lo:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32)


def hwc(x: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` -> ``(H, W, 3)`` float32."""
    return np.ascontiguousarray(np.transpose(x, (1, 2, 0)), dtype=np.float32)


class SharedTransform:
    """A shared-modality model applied to one scene (reflect-padded to multiples of its block size)."""

    def __init__(self, name: str, device: str, source: str = "", stretch: str = "v1"):
        from sarcoreg.models.shared_modality import load_shared_model

        self.name = name
        self.model = load_shared_model(source or name, device=device)
        self.stretch = stretch == "all" or (stretch == "v1" and name.endswith("v1"))

    def __call__(self, img: np.ndarray, modality: str) -> np.ndarray:
        c, h, w = img.shape
        mult = int(getattr(self.model, "multiple", 32))
        ph, pw = (-h) % mult, (-w) % mult
        x = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode="reflect") if (ph or pw) else img
        y = self.model.transform(x[None].astype(np.float32), modality)[0][:3, :h, :w]
        return percentile_stretch(y) if self.stretch else y


def prepare(pair: Pair, transform: str, shared: SharedTransform | None, T_warp: np.ndarray | None) -> tuple[Any, ...]:
    """Images A (SAR) and B (optical), ``(H, W, 3)`` in [0, 1], and the true A -> B transform."""
    h, w = pair.valid.shape
    sar = pair.sar.copy()
    sar[:, ~pair.valid] = 0
    if T_warp is not None:
        sar = cv2.warpAffine(sar[0], T_warp[:2], (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[None]
        T = np.linalg.inv(T_warp)  # warped SAR pixel -> optical pixel
    else:
        T = np.eye(3)
    opt = pair.optical
    if transform == "none":
        a = hwc(np.repeat(sar, 3, axis=0))
        b = hwc(opt)
    else:
        assert shared is not None
        a = hwc(shared(sar, "sar"))
        b = hwc(shared(opt, "optical"))
    return a, b, T


def structural_matches(a: np.ndarray, b: np.ndarray, template: int = 48, radius: int = 32,
                       step: int = 12, min_reliability: float = 0.15) -> tuple[np.ndarray, np.ndarray, float]:
    """The engine's structural matcher on a grid: templates from B (optical), searched in A (SAR).

    48 x 48 templates every 12 px, search radius 32 px (covers the +-20 px shift plus the rotation
    and scale at the corners), the engine's default reliability threshold 0.15; the matches then go
    through the same RANSAC homography and metrics as the keypoint matchers.

    Returns ``(pts_a, pts_b, seconds)`` in the keypoint convention (pixel centres at integers).
    """
    from sarcoreg.core.matchers.base import ChipBatch, get_matcher

    t0 = time.perf_counter()
    ga, gb = a.mean(axis=2), b.mean(axis=2)
    h, w = gb.shape
    pad = radius
    pa = np.pad(ga, pad)
    va = np.pad(np.ones_like(ga, bool), pad)
    xs = np.arange(0, w - template + 1, step)
    ys = np.arange(0, h - template + 1, step)
    tmpl, win, vwin, ref = [], [], [], []
    for y0 in ys:
        for x0 in xs:
            tmpl.append(gb[y0:y0 + template, x0:x0 + template])
            win.append(pa[y0:y0 + template + 2 * radius, x0:x0 + template + 2 * radius])
            vwin.append(va[y0:y0 + template + 2 * radius, x0:x0 + template + 2 * radius])
            ref.append((x0 + template / 2, y0 + template / 2))
    chips = ChipBatch(np.asarray(tmpl, np.float32), np.asarray(win, np.float32), np.asarray(ref, np.float64),
                      target_valid=np.asarray(vwin, bool))
    res = get_matcher("structural", min_valid=0.5).match(chips)
    ok = res.valid & (res.reliability >= min_reliability) & np.all(np.isfinite(res.target_xy), axis=1)
    return res.target_xy[ok] - 0.5, res.ref_xy[ok] - 0.5, time.perf_counter() - t0


def fmt(v: Any, nd: int = 2) -> str:
    """A table cell."""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf"
        return f"{v:.{nd}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(rows: list[dict[str, Any]], condition: str) -> str:
    """Table 2 for one condition."""
    head = ["transform", "matcher", "SR", "SR10", "ACE", "MMA", "Δp", "|P|", "|P5 correct|", "CMR5", "LE5", "s/pair"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["condition"] != condition:
            continue
        cells = [r["transform"], LABELS.get(r["matcher"], r["matcher"]), fmt(r["SR"]), fmt(r["SR10"]), fmt(r["ACE"]),
                 fmt(r["MMA"]),
                 fmt(r["delta_p"], 1), fmt(r["P"], 1), fmt(r["P5_correct"], 1), fmt(r["CMR5"]), fmt(r["LE5"]),
                 fmt(r["seconds_per_pair"])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    """CMR_d and LE_d against d per condition (the paper's Fig. 5)."""
    from matplotlib.figure import Figure
    from sarcoreg.core.exports.plots import save_png

    conds = sorted({r["condition"] for r in rows})
    fig = Figure(figsize=(11, 4.2 * len(conds)))
    colours = {m: f"C{i}" for i, m in enumerate(MATCHERS + ["structural"])}
    styles = {"none": ":", "shared-v1": "--", "shared-v2": "-"}
    deltas = [1, 2, 3, 4, 5]
    for i, cond in enumerate(conds):
        ax_c = fig.add_subplot(len(conds), 2, 2 * i + 1)
        ax_l = fig.add_subplot(len(conds), 2, 2 * i + 2)
        for r in rows:
            if r["condition"] != cond:
                continue
            kw = {"color": colours.get(r["matcher"], "k"), "linestyle": styles.get(r["transform"], "-"), "marker": "o",
                  "label": f"{r['transform']} + {LABELS.get(r['matcher'], r['matcher'])}"}
            ax_c.plot(deltas, [r[f"CMR{d}"] for d in deltas], **kw)
            ax_l.plot(deltas, [r[f"LE{d}"] for d in deltas], **kw)
        ax_c.set(title=f"CMR_δ ({cond})", xlabel="δ (px)", ylabel="CMR_δ", ylim=(0, 1))
        ax_l.set(title=f"LE_δ ({cond})", xlabel="δ (px)", ylabel="LE_δ (px)")
        ax_c.grid(alpha=0.3)
        ax_l.grid(alpha=0.3)
        ax_l.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-keypoints", type=int, default=4096)
    ap.add_argument("--matchers", default=",".join(MATCHERS))
    ap.add_argument("--transforms", default=",".join(TRANSFORMS))
    ap.add_argument("--no-structural", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs only (smoke runs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--stretch", choices=["v1", "all", "none"], default="v1",
                    help="percentile-stretch the shared images of: v1 only (the paper), every model, none "
                         "(the public code's --limit-net-output)")
    args = ap.parse_args(argv)

    set_threads(args.threads)
    from sarcoreg.core.keypoints import make_keypoint_matcher
    from sarcoreg.core.keypoints.metrics import DELTAS, aggregate, pair_metrics

    t_start = time.perf_counter()
    card = REPO / "models" / "cards" / "shared-v2.json"
    if card.is_file():
        print("shared-v2 card training field:", json.dumps(json.loads(card.read_text()).get("training"))[:600])
    pairs = load_pairs(args.limit)
    print(f"{len(pairs)} held-out pairs: " + ", ".join(f"{p.source}:{p.name[:28]}" for p in pairs))
    print(f"machine: {machine()}; torch/OpenCV threads: {args.threads}; device {args.device}")

    transforms: dict[str, SharedTransform | None] = {}
    for spec in args.transforms.split(","):
        t, _, source = spec.partition("=")
        if t == "none":
            transforms[t] = None
            continue
        try:
            transforms[t] = SharedTransform(t, args.device, source, args.stretch)
            print(f"{t}: {transforms[t].model!r}")  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - any failure to load means: skip these rows, say why
            print(f"SKIPPING the '{t}' rows: the model could not be loaded ({type(exc).__name__}: {exc})")
    matchers = {name: make_keypoint_matcher(name, max_keypoints=args.max_keypoints, device=args.device)
                for name in args.matchers.split(",")}
    names = list(matchers) + ([] if args.no_structural else ["structural"])

    rows: list[dict[str, Any]] = []
    pair_rows: list[dict[str, Any]] = []
    warps = {p.name: random_similarity(p.valid.shape, np.random.default_rng([args.seed, i]))
             for i, p in enumerate(pairs)}
    for cond in ("identity", "warped"):
        for tname, shared in transforms.items():
            per: dict[str, list[Any]] = {m: [] for m in names}
            secs: dict[str, list[float]] = {m: [] for m in names}
            t_transform = []
            for p in pairs:
                t0 = time.perf_counter()
                a, b, T = prepare(p, tname, shared, warps[p.name] if cond == "warped" else None)
                t_transform.append(time.perf_counter() - t0)
                for m in names:
                    if m == "structural":
                        pa, pb, sec = structural_matches(a, b)
                        kpa = kpb = -1
                    else:
                        res = matchers[m].match(a, b)
                        pa, pb, sec = res.pts_a, res.pts_b, res.seconds
                        kpa, kpb = res.n_keypoints_a, res.n_keypoints_b
                    pm = pair_metrics(pa, pb, a.shape[:2], T=T)
                    per[m].append(pm)
                    secs[m].append(sec)
                    pair_rows.append({"condition": cond, "transform": tname, "matcher": m, "pair": p.name,
                                      "source": p.source, "seconds": sec, "keypoints_a": kpa, "keypoints_b": kpb,
                                      **pm.to_dict()})
            for m in names:
                row = {"condition": cond, "transform": tname, "matcher": m, **aggregate(per[m], DELTAS),
                       "SR10": float(np.mean([pm.ace < 10 for pm in per[m]])),
                       "seconds_per_pair": float(np.mean(secs[m])),
                       "transform_seconds_per_pair": float(np.mean(t_transform)),
                       "keypoints_a": float(np.mean([r["keypoints_a"] for r in pair_rows[-len(pairs) * len(names):]
                                                     if r["matcher"] == m])),
                       "keypoints_b": float(np.mean([r["keypoints_b"] for r in pair_rows[-len(pairs) * len(names):]
                                                     if r["matcher"] == m]))}
                rows.append(row)
                print(f"  {cond:8s} {tname:9s} {m:17s} SR {row['SR']:.2f} ACE {fmt(row['ACE'])} "
                      f"CMR5 {row['CMR5']:.2f} |P| {row['P']:.0f} {row['seconds_per_pair']:.2f} s/pair", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "shared_modality" + (f"_{args.tag}" if args.tag else "")
    for path, data in ((RESULTS / f"{stem}.csv", rows), (RESULTS / f"{stem}_pairs.csv", pair_rows)):
        with open(path, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(data[0]))
            wr.writeheader()
            wr.writerows(data)
    figure(rows, RESULTS / f"{stem}.png")
    for cond in ("identity", "warped"):
        print(f"\n### {cond} ({len(pairs)} pairs, max_keypoints {args.max_keypoints})\n")
        print(markdown(rows, cond))
    print(f"\nwrote {RESULTS / stem}.csv, _pairs.csv, .png; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
