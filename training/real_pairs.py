"""Real aligned SAR / optical image pairs of ``../shared/data/sar-optical`` for BNN and AAE training.

Each loader returns :class:`~sarcoreg.training.patches.AlignedPair` objects (``a`` optical gray,
``b`` SAR, both ``(H, W)`` float32 in [0, 1] on one pixel grid) prepared as the engine prepares
rasters: the optical image through :func:`sarcoreg.core.prepare.prepare_optical` (gray, 0.5 / 99.5 %
stretch), the SAR image through :func:`sarcoreg.core.prepare.prepare_sar` (the 8-bit values are
digital numbers: log scale, then the stretch; exact zeros are nodata).

* SRIF Optical-SAR (``srif:ROOT``, ROOT = the ``srif`` folder): 200 pairs whose shipped ground truth
  is wrong; the corrected matrices ``gt_corrected/gt_<i>_full.txt`` (optical pixel -> SAR pixel,
  OpenCV 2 x 3) warp the optical image into the SAR frame, and the largest centred square inside the
  rotated footprint is kept (181 to 252 px). The five pairs flagged ``low_confidence`` in
  ``angles.csv`` are left out.
* OSMNet (``osmnet:ROOT``, ROOT = the ``osmnet`` folder): ``ims/opt<k>.png`` + ``ims/sar<k>.png``,
  256 x 256, visually aligned.
* WHU-OPT-SAR (``whu:ROOT``, ROOT = the ``whu-opt-sar`` folder): the 1000 x 1000 sample pair cut into
  ``tile`` x ``tile`` tiles (default 250: 16 pairs), so that tiles can be held out.
* Sentinel-1/2 ``s1s2/volkov-1024`` (``volkov`` or ``volkov:ROOT``): the 1024 x 1024 training scenes
  with the refined alignment of :mod:`sarcoreg.training.refine_alignment` (SAR resampled onto the
  optical grid; held-out and unrefined scenes never included). ``volkov-heldout[:ROOT]`` gives the
  refined held-out scenes instead, for evaluation only.

:func:`pairs_from_spec` resolves these ``--data`` forms (and the three folders given plainly,
recognised by their layout); :func:`crop_pool` turns image pairs into a
BNN / MoCo patch pool (one group per image pair).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .pair_datasets import AlignedPatches
from .patches import AlignedPair

__all__ = ["REAL_PAIR_KINDS", "crop_pool", "osmnet_pairs", "pairs_from_spec", "srif_pairs", "volkov_pairs", "whu_pairs"]

#: The ``KIND:ROOT`` prefixes :func:`pairs_from_spec` knows.
REAL_PAIR_KINDS = ("srif", "osmnet", "whu", "volkov", "volkov-heldout")


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
    return np.asarray(img, np.float32)


def _prepare(optical: np.ndarray, sar: np.ndarray, name: str) -> AlignedPair:
    from sarcoreg.core.prepare import prepare_optical, prepare_sar

    opt = prepare_optical(optical)
    s = np.where(sar > 0, sar, np.nan).astype(np.float32)
    b = prepare_sar(s, scale="amplitude")
    return AlignedPair(np.nan_to_num(opt, nan=0.0).astype(np.float32), np.nan_to_num(b, nan=0.0).astype(np.float32),
                       name)


def srif_pairs(root: str | Path, include_low_confidence: bool = False, limit: int | None = None) -> list[AlignedPair]:
    """SRIF Optical-SAR pairs aligned with the corrected ground truth (see the module docstring).

    Raises:
        FileNotFoundError: ``dataset/Optical-SAR`` or ``gt_corrected`` is missing.
    """
    r = Path(root)
    data, gt = r / "dataset" / "Optical-SAR", r / "gt_corrected"
    if not data.is_dir() or not gt.is_dir():
        raise FileNotFoundError(f"SRIF root {r} needs dataset/Optical-SAR/ and gt_corrected/")
    low: set[int] = set()
    angles: dict[int, float] = {}
    with open(gt / "angles.csv", newline="") as f:
        for row in csv.DictReader(f):
            angles[int(row["pair"])] = float(row["angle_deg"])
            if row.get("low_confidence", "0").strip() not in ("0", ""):
                low.add(int(row["pair"]))
    out = []
    for i in sorted(angles):
        if i in low and not include_low_confidence:
            continue
        m = np.loadtxt(gt / f"gt_{i}_full.txt", dtype=np.float64).reshape(2, 3)
        opt = _read(data / f"pair{i}_1.jpg")
        sar = _read(data / f"pair{i}_2.jpg")
        opt_gray = opt if opt.ndim == 2 else opt.mean(axis=0)
        h, w = sar.shape[:2]
        warped = cv2.warpAffine(opt_gray, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
        a = np.deg2rad(angles[i])
        side = int(np.floor(min(h, w) / (abs(np.cos(a)) + abs(np.sin(a))))) - 6
        r0, c0 = (h - side) // 2, (w - side) // 2
        out.append(_prepare(warped[r0 : r0 + side, c0 : c0 + side], sar[r0 : r0 + side, c0 : c0 + side],
                            f"srif/pair{i}"))
        if limit is not None and len(out) >= limit:
            break
    return out


def osmnet_pairs(root: str | Path) -> list[AlignedPair]:
    """The OSMNet sample pairs ``ims/opt<k>.png`` + ``ims/sar<k>.png``.

    Raises:
        FileNotFoundError: No pair found.
    """
    ims = Path(root) / "ims"
    out = []
    for opt_path in sorted(ims.glob("opt*.png")):
        sar_path = ims / opt_path.name.replace("opt", "sar", 1)
        if sar_path.is_file():
            out.append(_prepare(_read(opt_path), _read(sar_path), f"osmnet/{opt_path.stem[3:]}"))
    if not out:
        raise FileNotFoundError(f"no opt<k>.png / sar<k>.png pairs under {ims}")
    return out


def whu_pairs(root: str | Path, tile: int = 250) -> list[AlignedPair]:
    """The WHU-OPT-SAR sample pair (``data/{optical,sar}/WHU-OPT-SAR.tif``) cut into tiles.

    The whole pair is prepared once (one stretch), then cut, so the tiles share its radiometry.
    """
    d = Path(root) / "data"
    whole = _prepare(_read(d / "optical" / "WHU-OPT-SAR.tif"), _read(d / "sar" / "WHU-OPT-SAR.tif"), "whu")
    h, w = whole.a.shape
    return [AlignedPair(whole.a[r : r + tile, c : c + tile], whole.b[r : r + tile, c : c + tile], f"whu/{r}_{c}")
            for r in range(0, h - tile + 1, tile) for c in range(0, w - tile + 1, tile)]


def volkov_pairs(root: str | Path | None = None, held_out: bool = False) -> list[AlignedPair]:
    """Refined ``s1s2/volkov-1024`` scenes as image pairs on the optical grid.

    The optical RGB goes through :func:`~sarcoreg.core.prepare.prepare_optical`, the SAR (VH linear
    intensity, 8 bit, resampled through the stored correction) through
    :func:`~sarcoreg.core.prepare.prepare_sar` like any SAR raster the engine reads; SAR pixels that
    the correction brings in from outside the image are 0 (nodata), as are exact zeros of the source.

    Args:
        root: The ``volkov-1024`` folder (default: the shared data folder).
        held_out: False: the training scenes (:func:`~sarcoreg.training.refine_alignment.volkov_training_pairs`);
            True: the refined held-out scenes, for evaluation only.

    Returns:
        One pair per scene, named ``volkov/<id>``, ``(1024, 1024)`` each.

    Raises:
        FileNotFoundError: The folder has no ``index.json``.
    """
    from sarcoreg.training.refine_alignment import (
        DEFAULT_VOLKOV_ROOT,
        aligned_pair,
        load_alignment,
        volkov_training_pairs,
    )
    from sarcoreg.training.splits import VOLKOV_HELD_OUT

    folder = Path(root) if root else DEFAULT_VOLKOV_ROOT
    if not (folder / "index.json").is_file():
        raise FileNotFoundError(f"{folder} is not the s1s2/volkov-1024 folder (no index.json)")
    if held_out:
        doc = load_alignment()
        scenes = [aligned_pair(sid, folder, doc) for sid in sorted(VOLKOV_HELD_OUT)
                  if sid in doc["scenes"] and doc["scenes"][sid]["refined"]]
    else:
        scenes = list(volkov_training_pairs(folder))
    out = []
    for sc in scenes:
        sar = np.where(sc.valid & (sc.sar > 0), sc.sar.astype(np.float32), np.nan)
        out.append(_prepare(sc.optical.transpose(2, 0, 1).astype(np.float32), sar, f"volkov/{sc.scene_id}"))
    return out


def _kind_of_folder(folder: Path) -> str | None:
    """The layout of a plain folder: ``srif``, ``osmnet``, ``whu`` or None."""
    if (folder / "dataset" / "Optical-SAR").is_dir() and (folder / "gt_corrected").is_dir():
        return "srif"
    if any((folder / "ims").glob("opt*.png")):
        return "osmnet"
    if (folder / "data" / "optical" / "WHU-OPT-SAR.tif").is_file():
        return "whu"
    return None


def pairs_from_spec(spec: str) -> list[AlignedPair] | None:
    """Image pairs of a real SAR / optical ``--data`` source, or None for any other spec.

    Forms: ``srif:ROOT``, ``osmnet:ROOT``, ``whu:ROOT``, ``volkov[:ROOT]``, ``volkov-heldout[:ROOT]``,
    or a folder with one of the first three layouts.
    """
    if spec in ("volkov", "volkov-heldout"):
        spec += ":"
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in REAL_PAIR_KINDS:
        folder = Path(spec)
        found = _kind_of_folder(folder) if folder.is_dir() else None
        if found is None:
            return None
        kind, rest = found, spec
    if kind == "srif":
        return srif_pairs(rest)
    if kind == "osmnet":
        return osmnet_pairs(rest)
    if kind in ("volkov", "volkov-heldout"):
        return volkov_pairs(rest or None, held_out=kind == "volkov-heldout")
    return whu_pairs(rest)


def crop_pool(pairs: Sequence[AlignedPair], patch_size: int, crops_per_pair: int = 8,
              seed: int = 0) -> AlignedPatches:
    """Random ``P`` x ``P`` crops of aligned image pairs, one group per pair, as uint8.

    Pairs smaller than ``P`` are skipped. Crops where more than 10 % of either patch is exactly 0
    (nodata after preparation) are redrawn up to 20 times, then skipped.

    Raises:
        ValueError: No crop at all.
    """
    rng = np.random.default_rng(seed)
    sar, opt, groups, names = [], [], [], []
    for g, pr in enumerate(pairs):
        h, w = pr.a.shape
        if min(h, w) < patch_size:
            continue
        for _ in range(crops_per_pair):
            for _try in range(20):
                r, c = int(rng.integers(0, h - patch_size + 1)), int(rng.integers(0, w - patch_size + 1))
                pa, pb = pr.a[r : r + patch_size, c : c + patch_size], pr.b[r : r + patch_size, c : c + patch_size]
                if (pa == 0).mean() <= 0.1 and (pb == 0).mean() <= 0.1:
                    opt.append(pa)
                    sar.append(pb)
                    groups.append(g)
                    names.append(f"{pr.name}@{c},{r}")
                    break
    if not sar:
        raise ValueError(f"no {patch_size} px crop fits the {len(pairs)} image pairs")
    to8 = lambda x: np.clip(np.rint(np.stack(x) * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    return AlignedPatches(to8(sar), to8(opt), np.asarray(groups, np.int64), names)


def s1s2_regions(names: Sequence[str]) -> list[int]:
    """Region ids of S1/S2 pair names, for splits that keep mosaics with their patches.

    A ``benv2_mosaic_<tile>_x<a>-<b>_y<c>-<d>`` mosaic and every ``..._<tile>_<x>_<y>.npz`` patch
    inside it share one id (so a split never puts a patch on one side and the mosaic that contains
    it on the other); every other name gets its own id.
    """
    import re

    mosaic = re.compile(r"benv2_mosaic_(\w+?)_x(\d+)-(\d+)_y(\d+)-(\d+)")
    patch = re.compile(r"_(T\w+?)_(\d+)_(\d+)\.npz$")
    boxes = []
    for n in names:
        m = mosaic.search(n)
        if m:
            boxes.append((m.group(1), *(int(v) for v in m.groups()[1:])))
    ids = []
    for k, n in enumerate(names):
        region = len(boxes) + k
        m, p = mosaic.search(n), patch.search(n)
        for j, (tile, x0, x1, y0, y1) in enumerate(boxes):
            if m and m.group(1) == tile and int(m.group(2)) == x0 and int(m.group(4)) == y0:
                region = j
            elif p and p.group(1) == tile and x0 <= int(p.group(2)) <= x1 and y0 <= int(p.group(3)) <= y1:
                region = j
        ids.append(region)
    return ids
