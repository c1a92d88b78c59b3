"""Aligned SAR / optical scenes for training the shared-modality networks, and random crops of them.

Every loader returns :class:`ScenePair` objects: the SAR and optical images on one pixel grid,
each **already normalised to [0, 1]** per scene (0.5 / 99.5 percentiles over the valid pixels,
jointly over the bands: :func:`sarcoreg.models.shared_modality.normalise`), plus a validity mask.
SAR is taken in dB (linear data is converted; 8-bit SAR images such as SEN1-2 or SRIF are taken
as they are: they are already log-like scaled).

Band selection: the shipped model takes SAR ``("VV",)`` and optical ``("R", "G", "B")``. A
loader is given the wanted band names; BigEarthNet sources know their band names (VV, VH; B02,
B03, B04, B08; ``R``/``G``/``B``/``NIR`` are aliases of B04/B03/B02/B08), image sources with
unnamed bands give them in file order (a one-band SAR is taken as the one SAR band wanted; a gray
optical image is replicated to the wanted number of bands).

Sources (``--data`` specs of ``sarcoreg-train shared``):

- ``bigearthnet-configilm[:FOLDER]``: the ``.npz`` S1/S2 pairs (with the mosaics; NaN / 0 holes masked);
- ``bigearthnet-examples``: the six pairs of the ``bigearthnet-common`` wheel;
- ``srif:ROOT``: SRIF Optical-SAR, optical warped into the SAR frame with ``gt_corrected/gt_N_full.txt``;
- ``osmnet:FOLDER`` (``optN.png`` / ``sarN.png``), ``whu:ROOT`` (the 1000 x 1000 WHU-OPT-SAR pair);
- ``multisenge:FOLDER`` (``s1<ID>.tif`` / ``s2<ID>.tif``), ``sen12:ROOT`` (``ROIs*/s1_*/*.png``
  with ``s2_*``), ``pairs:FOLDER:SAR_PATTERN:OPTICAL_PATTERN`` (any paired files, ``{id}`` in both
  patterns, e.g. ``pairs:/data:*_sar{id}.tif:*_opt{id}.tif``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from sarcoreg.models.shared_modality import normalise

__all__ = [
    "DATA_ROOT",
    "ScenePair",
    "CropSampler",
    "bigearthnet_configilm",
    "bigearthnet_examples",
    "load_spec",
    "make_pair",
    "osmnet",
    "paired_files",
    "multisenge",
    "pad_to_multiple",
    "sen12",
    "split_holdout",
    "srif",
    "synthetic_partners",
    "whu",
]

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
_ALIASES = {"R": "B04", "G": "B03", "B": "B02", "NIR": "B08", "RED": "B04", "GREEN": "B03", "BLUE": "B02"}


@dataclass
class ScenePair:
    """One aligned SAR / optical scene.

    Attributes:
        sar: ``(C_X, H, W)`` float32 in [0, 1] (dB, percentile-stretched).
        optical: ``(C_Y, H, W)`` float32 in [0, 1].
        valid: ``(H, W)`` bool, pixels usable in both.
        name: Where it came from.
        source: Source group (``s1s2``, ``srif``, ``osmnet``, ``whu``, ``synthetic`` ...).
        holdout: Held out for validation (never used for training).
    """

    sar: np.ndarray
    optical: np.ndarray
    valid: np.ndarray
    name: str
    source: str
    holdout: bool = False
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.valid.shape[0]), int(self.valid.shape[1])


def _pick(bands: np.ndarray, names: Sequence[str], wanted: Sequence[str], what: str, name: str) -> np.ndarray:
    """Bands ``wanted`` of ``bands`` ``(C, H, W)`` whose names are ``names`` (aliases resolved)."""
    index = {n.upper(): i for i, n in enumerate(names)}
    out = []
    for w in wanted:
        key = _ALIASES.get(w.upper(), w.upper())
        if key not in index:
            raise ValueError(f"{name}: no {what} band {w!r}; it has {list(names)}")
        out.append(bands[index[key]])
    return np.stack(out)


def _fit(bands: np.ndarray, n: int, what: str, name: str) -> np.ndarray:
    """Unnamed bands ``(C, H, W)`` fitted to ``n``: the first ``n``, or a single band replicated."""
    if bands.shape[0] >= n:
        return bands[:n]
    if bands.shape[0] == 1:
        return np.repeat(bands, n, axis=0)
    raise ValueError(f"{name}: {what} has {bands.shape[0]} bands, the model wants {n}")


def to_db_if_linear(sar: np.ndarray) -> np.ndarray:
    """SAR in dB: linear intensity / amplitude (non-negative, median < 1, not 8-bit) is turned into dB."""
    x = np.asarray(sar, dtype=np.float32)
    fin = x[np.isfinite(x)]
    if fin.size and fin.min() >= 0 and np.median(fin) < 1.0:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 10.0 * np.log10(x)
        out[~(x > 0)] = np.nan
        return out.astype(np.float32)
    return x


def make_pair(
    sar: np.ndarray, optical: np.ndarray, name: str, source: str, valid: np.ndarray | None = None, holdout: bool = False
) -> ScenePair:
    """Normalise a raw pair (``(C, H, W)`` arrays, SAR in dB or log-scaled) into a :class:`ScenePair`.

    Pixels that are not finite, or 0 in every optical band, or outside ``valid``, are masked.
    """
    sar = np.asarray(sar, dtype=np.float32)
    optical = np.asarray(optical, dtype=np.float32)
    if sar.ndim == 2:
        sar = sar[None]
    if optical.ndim == 2:
        optical = optical[None]
    if sar.shape[1:] != optical.shape[1:]:
        raise ValueError(f"{name}: SAR {sar.shape} and optical {optical.shape} are not on one grid")
    ok = np.isfinite(sar).all(0) & np.isfinite(optical).all(0) & (optical != 0).any(0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    sar_n, opt_n = normalise(sar, "sar", valid=ok), normalise(optical, "optical", valid=ok)
    return ScenePair(sar_n, opt_n, ok, name, source, holdout)


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _read_raster(path: Path) -> np.ndarray:
    """``(C, H, W)`` float32 of any GDAL-readable file (PNG / JPG as stored; RGB order)."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    if ds is None:
        raise ValueError(f"cannot read {path}")
    a = np.asarray(ds.ReadAsArray(), dtype=np.float32)
    return a[None] if a.ndim == 2 else a


def _read_image(path: Path) -> np.ndarray:
    """``(C, H, W)`` float32 of an image file (cv2 for PNG / JPG / BMP: RGB order; GDAL otherwise)."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise ValueError(f"cannot read {path}")
        if a.ndim == 3:
            a = cv2.cvtColor(a, cv2.COLOR_BGRA2RGB if a.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            return np.moveaxis(a, 2, 0).astype(np.float32)
        return a[None].astype(np.float32)
    return _read_raster(path)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def bigearthnet_configilm(
    folder: str | Path | None = None,
    sar_bands: Sequence[str] = ("VV",),
    optical_bands: Sequence[str] = ("R", "G", "B"),
    mosaics: bool = True,
    holdout_split: str = "test",
) -> list[ScenePair]:
    """The ``s1s2/bigearthnet-configilm`` ``.npz`` pairs (S1 VV, VH dB; S2 B02, B03, B04, B08).

    The BigEarthNet v1 pairs of split ``holdout_split`` (``index.json``) are marked ``holdout``;
    v2 pairs and mosaics (adjacent patches of one tile) always go to training, so no held-out
    scene shares ground with a training one through the mosaics.
    """
    root = Path(folder) if folder else DATA_ROOT / "s1s2" / "bigearthnet-configilm"
    index = {d["s2_patch"]: d for d in json.loads((root / "index.json").read_text())}
    files = sorted(root.glob("benv*_pairs/*.npz")) + (sorted(root.glob("benv2_mosaic_*.npz")) if mosaics else [])
    out = []
    for f in files:
        z = np.load(f, allow_pickle=False)
        s1 = _pick(z["s1"], ("VV", "VH"), sar_bands, "SAR", f.name)
        s2 = _pick(z["s2_10m"].astype(np.float32), ("B02", "B03", "B04", "B08"), optical_bands, "optical", f.name)
        info = index.get(f.stem, {})
        hold = info.get("version") == "v1" and info.get("split") == holdout_split
        out.append(make_pair(s1, s2, f.stem, "s1s2", holdout=hold))
    return out


def bigearthnet_examples(
    sar_bands: Sequence[str] = ("VV",), optical_bands: Sequence[str] = ("R", "G", "B"), holdout: bool = True
) -> list[ScenePair]:
    """The six S1/S2 pairs of ``bigearthnet-common`` (held out by default: the shipped model's test pairs)."""
    from sarcoreg.core.sample_data import bigearthnet_pairs

    out = []
    for p in bigearthnet_pairs():
        s1 = np.stack([_read_raster(p.s1[_ALIASES.get(b.upper(), b.upper())])[0] for b in sar_bands])
        s2 = np.stack([_read_raster(p.s2[_ALIASES.get(b.upper(), b.upper())])[0] for b in optical_bands])
        out.append(make_pair(s1, s2, p.name, "s1s2-examples", holdout=holdout))
    return out


def srif(
    root: str | Path | None = None,
    n_sar: int = 1,
    n_optical: int = 3,
    holdout_every: int = 10,
    include_low_confidence: bool = False,
    limit: int | None = None,
) -> list[ScenePair]:
    """SRIF Optical-SAR: each gray optical tile warped into its SAR frame (256 x 256).

    Uses ``gt_corrected/gt_N_full.txt`` (2 x 3, optical pixel -> SAR pixel, OpenCV convention).
    Valid = inside the warped optical footprint (eroded by 3 px) and SAR not black. Pairs with a
    low-confidence angle (``angles.csv``) are skipped unless asked; pair ``N`` with
    ``N % holdout_every == 0`` is held out.
    """
    base = Path(root) if root else DATA_ROOT / "sar-optical" / "srif"
    images = base / "dataset" / "Optical-SAR"
    low: set[int] = set()
    with open(base / "gt_corrected" / "angles.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("low_confidence", "0").strip() == "1":
                low.add(int(row["pair"]))
    ids = sorted(int(m.group(1)) for p in images.glob("pair*_1.jpg") if (m := re.match(r"pair(\d+)_1", p.stem)))
    out = []
    for i in ids:
        if i in low and not include_low_confidence:
            continue
        gt = base / "gt_corrected" / f"gt_{i}_full.txt"
        if not gt.is_file():
            continue
        m = np.loadtxt(gt, dtype=np.float64).reshape(2, 3)
        opt = cv2.imread(str(images / f"pair{i}_1.jpg"), cv2.IMREAD_GRAYSCALE)
        sar = cv2.imread(str(images / f"pair{i}_2.jpg"), cv2.IMREAD_GRAYSCALE)
        if opt is None or sar is None:
            continue
        h, w = sar.shape
        warped = cv2.warpAffine(opt.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        foot = cv2.warpAffine(np.ones(opt.shape, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        sar_ok = cv2.erode((sar > 0).astype(np.uint8), np.ones((7, 7), np.uint8))
        valid = cv2.erode(foot, np.ones((7, 7), np.uint8)).astype(bool) & sar_ok.astype(bool)
        out.append(make_pair(_fit(sar[None].astype(np.float32), n_sar, "SAR", f"srif {i}"),
                             _fit(warped[None], n_optical, "optical", f"srif {i}"),
                             f"srif-{i}", "srif", valid, holdout=i % holdout_every == 0))
        if limit and len(out) >= limit:
            break
    return out


def osmnet(
    folder: str | Path | None = None, n_sar: int = 1, n_optical: int = 3, holdout: Sequence[int] = (4,)
) -> list[ScenePair]:
    """OSMNet's four 256 x 256 gray pairs (``optN.png`` / ``sarN.png``, visually aligned)."""
    base = Path(folder) if folder else DATA_ROOT / "sar-optical" / "osmnet" / "ims"
    out = []
    for p in sorted(base.glob("opt*.png")):
        k = p.stem[3:]
        s = base / f"sar{k}.png"
        if s.is_file():
            out.append(make_pair(_fit(_read_image(s)[:1], n_sar, "SAR", s.name),
                                 _fit(_read_image(p), n_optical, "optical", p.name), f"osmnet-{k}", "osmnet",
                                 holdout=k.isdigit() and int(k) in holdout))
    return out


def whu(
    root: str | Path | None = None, n_sar: int = 1, n_optical: int = 3, holdout_from_col: int = 768
) -> list[ScenePair]:
    """The 1000 x 1000 WHU-OPT-SAR pair as a training part and a held-out strip.

    Training: columns below ``holdout_from_col - 32``; held out: columns from ``holdout_from_col``.
    """
    base = Path(root) if root else DATA_ROOT / "sar-optical" / "whu-opt-sar"
    opt = _fit(_read_raster(base / "data" / "optical" / "WHU-OPT-SAR.tif"), n_optical, "optical", "whu")
    sar = _fit(_read_raster(base / "data" / "sar" / "WHU-OPT-SAR.tif")[:1], n_sar, "SAR", "whu")
    gap = holdout_from_col - 32
    return [make_pair(sar[:, :, :gap], opt[:, :, :gap], "whu-train", "whu"),
            make_pair(sar[:, :, holdout_from_col:], opt[:, :, holdout_from_col:], "whu-holdout", "whu", holdout=True)]


def _glob_regex(text: str) -> str:
    return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in text)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    if "{id}" not in pattern:
        raise ValueError(f"file pattern {pattern!r} needs '{{id}}'")
    head, tail = pattern.split("{id}", 1)
    return re.compile(_glob_regex(head) + "(?P<id>.+?)" + _glob_regex(tail) + r"\Z")


def _match(folder: Path, pattern: str) -> dict[str, Path]:
    rx = _pattern_regex(pattern)
    out = {}
    for p in sorted(folder.iterdir()):
        m = rx.match(p.name)
        if m and p.is_file():
            out[m.group("id")] = p
    return out


def paired_files(
    folder: str | Path,
    sar_pattern: str,
    optical_pattern: str,
    n_sar: int = 1,
    n_optical: int = 3,
    sar_band_index: Sequence[int] | None = None,
    optical_band_index: Sequence[int] | None = None,
    source: str = "pairs",
    holdout_fraction: float = 0.0,
) -> list[ScenePair]:
    """Any folder of paired rasters matched by the ``{id}`` part of two file patterns.

    Args:
        folder: The folder.
        sar_pattern: e.g. ``"s1{id}.tif"`` (shell wildcards allowed around ``{id}``).
        optical_pattern: e.g. ``"s2{id}.tif"``.
        n_sar: SAR bands wanted (first ones of the file, or a single band replicated).
        n_optical: Optical bands wanted.
        sar_band_index: Explicit SAR band indices (0-based) instead of the first ``n_sar``.
        optical_band_index: Explicit optical band indices.
        source: Source name.
        holdout_fraction: Share of pairs (every k-th by sorted id) held out.

    IDs missing one side are dropped; linear SAR (see :func:`to_db_if_linear`) becomes dB.
    """
    base = Path(folder)
    sars, opts = _match(base, sar_pattern), _match(base, optical_pattern)
    ids = sorted(set(sars) & set(opts))
    every = int(round(1.0 / holdout_fraction)) if holdout_fraction > 0 else 0
    out = []
    for k, i in enumerate(ids):
        s = _read_image(sars[i])
        o = _read_image(opts[i])
        s = s[list(sar_band_index)] if sar_band_index else _fit(s, n_sar, "SAR", sars[i].name)
        o = o[list(optical_band_index)] if optical_band_index else _fit(o, n_optical, "optical", opts[i].name)
        out.append(make_pair(to_db_if_linear(s), o, i, source, holdout=bool(every) and k % every == every - 1))
    return out


def multisenge(folder: str | Path, n_sar: int = 1, n_optical: int = 3,
               optical_band_index: Sequence[int] | None = (2, 1, 0), holdout_fraction: float = 0.0) -> list[ScenePair]:
    """MultiSenGE layout: ``s1<ID>.tif`` (VV, VH) and ``s2<ID>.tif`` (10 S2 bands, B2 first) in one folder.

    The default optical bands are (B4, B3, B2) = R, G, B of the 10-band S2 files.
    """
    idx = optical_band_index if optical_band_index and n_optical == len(optical_band_index) else None
    return paired_files(folder, "s1{id}.tif", "s2{id}.tif", n_sar, n_optical, optical_band_index=idx,
                        source="multisenge", holdout_fraction=holdout_fraction)


def sen12(root: str | Path, n_sar: int = 1, n_optical: int = 3, limit: int | None = None,
          holdout_fraction: float = 0.0) -> list[ScenePair]:
    """SEN1-2 folders: ``ROIs*/s1_*/*_s1_*.png`` paired with ``ROIs*/s2_*/*_s2_*.png``."""
    base = Path(root)
    pairs = []
    for s1 in sorted(base.glob("ROIs*/s1_*/*.png")):
        s2 = s1.parent.parent / s1.parent.name.replace("s1_", "s2_", 1) / s1.name.replace("_s1_", "_s2_")
        if s2.is_file():
            pairs.append((s1, s2))
        if limit and len(pairs) >= limit:
            break
    every = int(round(1.0 / holdout_fraction)) if holdout_fraction > 0 else 0
    out = []
    for k, (a, b) in enumerate(pairs):
        sar = _fit(_read_image(a)[:1], n_sar, "SAR", a.name)
        opt = _fit(_read_image(b), n_optical, "optical", b.name)
        out.append(make_pair(sar, opt, a.stem, "sen12", holdout=bool(every) and k % every == every - 1))
    return out


def synthetic_partners(scenes: Sequence[ScenePair], n_sar: int = 1, copies: int = 1, seed: int = 0) -> list[ScenePair]:
    """SAR-like partners (:func:`sarcoreg.core.synthetic.sar_like_db`) for the optical side of ``scenes``.

    Only non-held-out scenes are used; the SAR band is replicated to ``n_sar`` bands.
    """
    from sarcoreg.core.synthetic import sar_like_db

    out = []
    k = 0
    for c in range(copies):
        for sc in scenes:
            if sc.holdout:
                continue
            rng = np.random.default_rng(seed + k)
            gray = sc.optical.mean(0)
            db = sar_like_db(gray, seed=seed + k, looks=float(rng.uniform(2.0, 8.0)))
            sar = np.repeat(db[None], n_sar, axis=0)
            out.append(make_pair(sar, sc.optical, f"synthetic-{c}-{sc.name}", "synthetic", sc.valid))
            k += 1
    return out


def load_spec(spec: str, n_sar: int = 1, n_optical: int = 3, sar_bands: Sequence[str] = ("VV",),
              optical_bands: Sequence[str] = ("R", "G", "B")) -> list[ScenePair]:
    """Scenes of one ``--data`` spec (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    arg_or_none = arg or None
    if kind == "bigearthnet-configilm":
        return bigearthnet_configilm(arg_or_none, sar_bands, optical_bands)
    if kind == "bigearthnet-examples":
        return bigearthnet_examples(sar_bands, optical_bands)
    if kind == "srif":
        return srif(arg_or_none, n_sar, n_optical)
    if kind == "osmnet":
        return osmnet(arg_or_none, n_sar, n_optical)
    if kind == "whu":
        return whu(arg_or_none, n_sar, n_optical)
    if kind == "multisenge":
        return multisenge(arg, n_sar, n_optical, holdout_fraction=0.1)
    if kind == "sen12":
        return sen12(arg, n_sar, n_optical, holdout_fraction=0.1)
    if kind == "pairs":
        folder, sp, op = arg.rsplit(":", 2)
        return paired_files(folder, sp, op, n_sar, n_optical, holdout_fraction=0.1)
    p = Path(spec)
    if p.is_dir() and any(p.glob("benv*_pairs/*.npz")):
        return bigearthnet_configilm(p, sar_bands, optical_bands)
    if p.is_dir() and any(p.glob("s1*.tif")) and any(p.glob("s2*.tif")):
        return multisenge(p, n_sar, n_optical, holdout_fraction=0.1)
    if p.is_dir() and any(p.glob("ROIs*/s1_*/*.png")):
        return sen12(p, n_sar, n_optical, holdout_fraction=0.1)
    raise ValueError(f"--data {spec!r}: unknown source; use bigearthnet-configilm[:DIR], bigearthnet-examples, "
                     "srif[:DIR], osmnet[:DIR], whu[:DIR], multisenge:DIR, sen12:DIR or "
                     "pairs:DIR:SAR_PATTERN:OPT_PATTERN")


def split_holdout(scenes: Sequence[ScenePair]) -> tuple[list[ScenePair], list[ScenePair]]:
    """``(training, held_out)`` by each scene's ``holdout`` flag."""
    return [s for s in scenes if not s.holdout], [s for s in scenes if s.holdout]


# --------------------------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------------------------


def pad_to_multiple(sc: ScenePair, multiple: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole scene reflect-padded to multiples of ``multiple``: ``(sar, optical, valid)``.

    Padding is invalid (``valid`` False).
    """
    h, w = sc.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = ((0, 0), (0, ph), (0, pw))
    mode = "reflect" if ph < h and pw < w else "edge"
    return (np.pad(sc.sar, pad, mode=mode), np.pad(sc.optical, pad, mode=mode),
            np.pad(sc.valid, ((0, ph), (0, pw)), constant_values=False))


class CropSampler:
    """Random square crops with flips and 90-degree rotations, from scenes picked by area.

    Scene ``i`` is picked with probability proportional to ``sqrt(valid pixels)`` (large scenes
    give more crops without drowning the many small ones). A crop must be at least
    ``min_valid`` valid; scenes smaller than the crop are reflect-padded (padding invalid).
    """

    def __init__(self, scenes: Sequence[ScenePair], crop: int = 96, min_valid: float = 0.5, seed: int = 0) -> None:
        if not scenes:
            raise ValueError("no training scenes")
        if crop % 32:
            raise ValueError(f"crop must be a multiple of 32, got {crop}")
        self.crop = crop
        self.min_valid = min_valid
        self.scenes = [self._padded(s) for s in scenes]
        area = np.array([max(1.0, float(s[2].sum())) for s in self.scenes])
        self.p = np.sqrt(area) / np.sqrt(area).sum()
        self.rng = np.random.default_rng(seed)

    def _padded(self, sc: ScenePair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = sc.shape
        ph, pw = max(0, self.crop - h), max(0, self.crop - w)
        if not ph and not pw:
            return sc.sar, sc.optical, sc.valid
        pad = ((0, 0), (0, ph), (0, pw))
        return np.pad(sc.sar, pad, mode="reflect"), np.pad(sc.optical, pad, mode="reflect"), np.pad(
            sc.valid, ((0, ph), (0, pw)), constant_values=False)

    def state(self) -> dict[str, object]:
        """The random generator state (for resuming)."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, object]) -> None:
        """Restore :meth:`state`."""
        self.rng.bit_generator.state = state

    def one(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One crop: ``(sar (C_X, c, c), optical (C_Y, c, c), valid (1, c, c) float32)``."""
        c = self.crop
        for _ in range(20):
            sar, opt, valid = self.scenes[int(self.rng.choice(len(self.scenes), p=self.p))]
            h, w = valid.shape
            i, j = int(self.rng.integers(0, h - c + 1)), int(self.rng.integers(0, w - c + 1))
            v = valid[i:i + c, j:j + c]
            if v.mean() >= self.min_valid:
                break
        s, o = sar[:, i:i + c, j:j + c], opt[:, i:i + c, j:j + c]
        k = int(self.rng.integers(0, 4))
        flip = bool(self.rng.integers(0, 2))
        out = []
        for a in (s, o, v[None]):
            a = np.rot90(a, k, axes=(1, 2))
            if flip:
                a = a[:, :, ::-1]
            out.append(np.ascontiguousarray(a, dtype=np.float32))
        return out[0], out[1], out[2]

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` crops stacked: ``(B, C_X, c, c)``, ``(B, C_Y, c, c)``, ``(B, 1, c, c)``."""
        items = [self.one() for _ in range(n)]
        return tuple(np.stack([it[k] for it in items]) for k in range(3))  # type: ignore[return-value]
