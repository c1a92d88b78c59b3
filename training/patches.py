"""Patch-pair datasets for the patch-matching networks.

The layout is the one of the published RRL-Net patch sets (VIS-NIR, OS, SEN1-2): an images array
``(N, 2, P, P)`` uint8 (``[:, 0]`` = modality A: reference / optical / VIS, ``[:, 1]`` =
modality B: target / SAR / NIR) and a labels array ``(N,)`` with 1 = matching pair. Builders here
cut such pairs from aligned image pairs (same pixel grid); loaders read the published ``.npy``
files. Also the aligned image pairs we have: VIS-NIR "country" and the real Sentinel-1/2 pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "AlignedPair",
    "PatchSet",
    "build_patch_pairs",
    "concat",
    "keypoints",
    "load_npy",
    "s1s2_pairs",
    "synthetic_sar_pairs",
    "visnir_pairs",
]


@dataclass(frozen=True)
class AlignedPair:
    """Two co-registered gray images on one pixel grid.

    Attributes:
        a: Reference / optical ``(H, W)`` float32 in [0, 1].
        b: Target / SAR / NIR ``(H, W)`` float32 in [0, 1].
        name: Where it came from.
    """

    a: np.ndarray
    b: np.ndarray
    name: str


@dataclass
class PatchSet:
    """Patch pairs in the published layout.

    Attributes:
        images: ``(N, 2, P, P)`` uint8; ``[:, 0]`` reference / optical, ``[:, 1]`` target.
        labels: ``(N,)`` uint8, 1 = matching.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 2 or self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"patch images must be (N, 2, P, P), got {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be ({self.images.shape[0]},), got {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray) -> PatchSet:
        """The pairs at ``index``."""
        return PatchSet(self.images[index], self.labels[index])


def concat(sets: Iterable[PatchSet]) -> PatchSet:
    """Join patch sets (same patch size)."""
    sets = list(sets)
    if not sets:
        raise ValueError("concat needs at least one patch set")
    return PatchSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]))


def load_npy(images_path: str | Path, labels_path: str | Path | None = None) -> PatchSet:
    """Load a published patch set: ``X.npy`` (N, 2, 64, 64) uint8 and ``X_label.npy`` (N,).

    Args:
        images_path: The images file (e.g. ``country.npy``, ``os_train_image.npy``).
        labels_path: The labels file; default: ``<stem>_label.npy`` next to it, or for names
            ending in ``_image`` the same name with ``_label``.

    Raises:
        FileNotFoundError: A file is missing.
        ValueError: Shapes or dtypes do not fit the layout.
    """
    ip = Path(images_path)
    if labels_path is None:
        stem = ip.stem[: -len("_image")] + "_label" if ip.stem.endswith("_image") else ip.stem + "_label"
        labels_path = ip.with_name(stem + ".npy")
    lp = Path(labels_path)
    for p in (ip, lp):
        if not p.is_file():
            raise FileNotFoundError(f"patch set file not found: {p}")
    images = np.load(ip, mmap_mode="r", allow_pickle=False)
    labels = np.load(lp, allow_pickle=False).reshape(-1)
    if images.dtype != np.uint8:
        if images.max() <= 1.0:
            images = np.asarray(images, dtype=np.float32) * 255.0
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    if images.ndim == 5 and images.shape[-1] == 1:  # (N, 2, 64, 64, 1) as saved by some scripts
        images = images[..., 0]
    return PatchSet(np.asarray(images), (labels > 0.5).astype(np.uint8))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(x, nan=0.0) * 255.0), 0, 255).astype(np.uint8)


def keypoints(image: np.ndarray, margin: int, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """SIFT keypoints of ``image`` at least ``margin`` pixels from the border, topped up with random points.

    Args:
        image: ``(H, W)`` float in [0, 1].
        margin: Minimum distance of a point from the border (half the patch size).
        max_points: How many points to return at most.
        rng: Random generator for the top-up points and the subsampling.

    Returns:
        ``(K, 2)`` int64 centres ``(col, row)``; a patch ``[row - margin, row + margin)`` fits.
    """
    h, w = image.shape
    if h < 2 * margin or w < 2 * margin:
        raise ValueError(f"image {image.shape} is smaller than a {2 * margin} px patch")
    kps = cv2.SIFT.create(nfeatures=2 * max_points).detect(_to_uint8(image), None)
    pts = np.array([[round(k.pt[0]), round(k.pt[1])] for k in kps], dtype=np.int64).reshape(-1, 2)
    inside = (pts[:, 0] >= margin) & (pts[:, 0] <= w - margin) & (pts[:, 1] >= margin) & (pts[:, 1] <= h - margin)
    pts = np.unique(pts[inside], axis=0)
    if len(pts) < max_points:
        extra = np.stack(
            [rng.integers(margin, w - margin + 1, max_points), rng.integers(margin, h - margin + 1, max_points)],
            axis=1,
        )
        pts = np.concatenate([pts, extra[: max_points - len(pts)]])
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    return pts


def build_patch_pairs(
    pairs: Sequence[AlignedPair],
    *,
    pairs_per_image: int = 128,
    patch_size: int = 64,
    min_negative_distance: float = 12.0,
    seed: int = 0,
) -> PatchSet:
    """Cut matching / non-matching patch pairs (50 / 50) around keypoints of aligned image pairs.

    A positive is the same centre in both images. A negative pairs the reference patch at one
    keypoint with the target patch at another keypoint of the same image at least
    ``min_negative_distance`` pixels away (as the OS patch set does); this gives hard negatives
    for images smaller than a few patches.

    Args:
        pairs: Aligned image pairs.
        pairs_per_image: Patch pairs per image pair (half positive).
        patch_size: Patch side ``P`` (even).
        min_negative_distance: Minimum centre distance of a negative, pixels.
        seed: Seed of keypoint sampling and negative pairing.

    Returns:
        The patch set, ``(N, 2, P, P)`` uint8 with ``N = len(pairs) * pairs_per_image``.
    """
    if patch_size % 2:
        raise ValueError(f"patch_size must be even, got {patch_size}")
    rng = np.random.default_rng(seed)
    half = patch_size // 2
    n_pos = pairs_per_image // 2
    n_neg = pairs_per_image - n_pos
    imgs: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    for pair in pairs:
        if pair.a.shape != pair.b.shape:
            raise ValueError(f"{pair.name}: images must share a grid, got {pair.a.shape} and {pair.b.shape}")
        a, b = _to_uint8(pair.a), _to_uint8(pair.b)
        pts = keypoints(pair.a, half, max(n_pos, n_neg) * 2, rng)
        out = np.empty((pairs_per_image, 2, patch_size, patch_size), np.uint8)
        for i in range(n_pos):
            c, r = pts[i % len(pts)]
            out[i, 0] = a[r - half : r + half, c - half : c + half]
            out[i, 1] = b[r - half : r + half, c - half : c + half]
        for i in range(n_neg):
            c, r = pts[rng.integers(len(pts))]
            d = np.hypot(*(pts - [c, r]).T)
            far = np.flatnonzero(d >= min_negative_distance)
            if far.size:
                c2, r2 = pts[rng.choice(far)]
            else:  # no other keypoint far enough: a random position that is
                h, w = a.shape
                for _ in range(100):
                    c2 = int(rng.integers(half, w - half + 1))
                    r2 = int(rng.integers(half, h - half + 1))
                    if np.hypot(c2 - c, r2 - r) >= min_negative_distance:
                        break
            out[n_pos + i, 0] = a[r - half : r + half, c - half : c + half]
            out[n_pos + i, 1] = b[r2 - half : r2 + half, c2 - half : c2 + half]
        imgs.append(out)
        labs.append(np.r_[np.ones(n_pos, np.uint8), np.zeros(n_neg, np.uint8)])
    return PatchSet(np.concatenate(imgs), np.concatenate(labs))


def _stretch(x: np.ndarray) -> np.ndarray:
    """Percentile stretch (0.5 / 99.5 %) to [0, 1] as the engine's preparation does."""
    from sarcoreg.core.prepare import PercentileStretch

    return PercentileStretch.fit(x).apply(x)


def visnir_pairs(folder: str | Path, names: Sequence[str] | None = None) -> list[AlignedPair]:
    """Aligned RGB / NIR pairs of the VIS-NIR registration set (``NNNN_rgb.jpg`` + ``NNNN_nir.jpg``).

    Args:
        folder: E.g. ``.../vis-nir/registration/country`` (pairs aligned, identity).
        names: Pair numbers (``"0000"``) to load; default all.

    Returns:
        Pairs with ``a`` = RGB as gray and ``b`` = NIR, both scaled to [0, 1] by /255.
    """
    root = Path(folder)
    if names is None:
        names = sorted(p.name[: -len("_rgb.jpg")] for p in root.glob("*_rgb.jpg"))
    if not names:
        raise FileNotFoundError(f"no *_rgb.jpg / *_nir.jpg pairs in {root}")
    out = []
    for n in names:
        rgb = cv2.imread(str(root / f"{n}_rgb.jpg"), cv2.IMREAD_GRAYSCALE)
        nir = cv2.imread(str(root / f"{n}_nir.jpg"), cv2.IMREAD_GRAYSCALE)
        if rgb is None or nir is None:
            raise FileNotFoundError(f"cannot read pair {n} in {root}")
        if rgb.shape != nir.shape:
            h, w = min(rgb.shape[0], nir.shape[0]), min(rgb.shape[1], nir.shape[1])
            rgb, nir = rgb[:h, :w], nir[:h, :w]
        out.append(AlignedPair(rgb.astype(np.float32) / 255.0, nir.astype(np.float32) / 255.0, f"{root.name}/{n}"))
    return out


def s1s2_pair(s1_db: np.ndarray, s2_rgb: np.ndarray, name: str) -> AlignedPair:
    """One Sentinel-1 / Sentinel-2 pair prepared as the engine does (dB band mean / RGB luma, stretched).

    Args:
        s1_db: ``(B, H, W)`` SAR in dB (e.g. VV, VH); NaN = nodata.
        s2_rgb: ``(3, H, W)`` optical bands in R, G, B order.
        name: Label of the pair.
    """
    from sarcoreg.core.prepare import optical_to_gray

    db = np.asarray(s1_db, np.float64)
    ok = np.isfinite(db).all(axis=0)
    sar = _stretch(np.where(ok, np.nan_to_num(db).mean(axis=0), np.nan).astype(np.float32))
    opt = _stretch(optical_to_gray(np.asarray(s2_rgb, np.float32)))
    return AlignedPair(np.nan_to_num(opt, nan=0.0), np.nan_to_num(sar, nan=0.0), name)


def s1s2_pairs(folder: str | Path, *, include_mosaics: bool = False) -> list[AlignedPair]:
    """The real aligned S1/S2 pairs of ``s1s2/bigearthnet-configilm`` (``*.npz``: ``s1``, ``s2_10m``).

    Args:
        folder: The ``bigearthnet-configilm`` folder (``benv1_pairs/``, ``benv2_pairs/``, mosaics).
        include_mosaics: Also the three larger ``benv2_mosaic_*.npz`` scenes; their missing
            cells become 0 in both images, so patches over them are ambiguous (off by default).

    Returns:
        Pairs sorted by file name (``a`` optical gray, ``b`` SAR), each 120 x 120 or larger.
    """
    root = Path(folder)
    files = sorted(root.glob("benv*_pairs/*.npz"))
    if include_mosaics:
        files += sorted(root.glob("benv2_mosaic_*.npz"))
    if not files:
        raise FileNotFoundError(f"no S1/S2 .npz pairs under {root}")
    out = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            s1, s2 = z["s1"], z["s2_10m"]
        rgb = s2[[2, 1, 0]].astype(np.float32)  # B04, B03, B02
        out.append(s1s2_pair(s1, rgb, f.name))
    return out


def synthetic_sar_pairs(optical: Sequence[np.ndarray], *, seed: int = 0) -> list[AlignedPair]:
    """SAR-like partners for real optical gray images (:func:`sarcoreg.core.synthetic.sar_like_db`).

    Args:
        optical: ``(H, W)`` gray images in [0, 1].
        seed: Base seed; image ``k`` uses ``seed + k`` (radiometry curves and speckle differ).

    Returns:
        Aligned pairs (identity geometry), SAR side in dB stretched to [0, 1].
    """
    from sarcoreg.core.synthetic import sar_like_db

    out = []
    for k, g in enumerate(optical):
        rng = np.random.default_rng(seed + k)
        db = sar_like_db(g, seed=seed + k, looks=float(rng.uniform(2.0, 8.0)))
        out.append(AlignedPair(np.asarray(g, np.float32), np.nan_to_num(_stretch(db), nan=0.0), f"synthetic-{k}"))
    return out
