"""Aligned SAR / optical patch pools for BNN and MoCo training.

The MoCo-BNN paper works on datasets of co-registered patch pairs: QXS-SAROPT (256 x 256 PNG,
GaoFen-3 / Google Earth), SEN1-2 (256 x 256 PNG, Sentinel-1 / Sentinel-2) and SARptical
(112 x 112, TerraSAR-X / UltraCAM). A positive is ``(x_s^i, x_o^i)``, a negative
``(x_s^i, x_o^j)`` with ``i != j`` (:func:`sarcoreg.training.bnn_losses.balanced_indices`).

Everything here produces an :class:`AlignedPatches` pool: ``sar`` and ``opt`` ``(M, P, P)`` uint8
gray patches (optical RGB converted to gray with OpenCV's luma weights, both resized to ``P`` with
area interpolation) and a ``groups`` id per pair (pairs cut from one scene share it so they are
never used as each other's negatives).

A pool may keep context: with ``margin = m`` the stored patches are ``(M, P + 2 m, P + 2 m)`` and
the patches the networks see are their centre ``P x P`` crops (:meth:`AlignedPatches.centre`,
:meth:`AlignedPatches.crops`); an optical crop moved by ``(dx, dy)`` with ``|dx|, |dy| <= m`` shows
the same place shifted, the *hard negative* of dense search (:func:`shift_offsets`).

Layouts read:

* QXS-SAROPT: ``<root>/sar_256_oc_0.2/<name>.png`` + ``<root>/opt_256_oc_0.2/<name>.png``.
* SEN1-2: ``<root>/ROIs*/s1_<k>/<..._s1_...>.png`` paired with ``ROIs*/s2_<k>/`` by replacing
  ``_s1_`` with ``_s2_`` in the file name.
* SARptical: no public loader exists; we read a root holding one folder whose name contains
  ``sar`` and one whose name contains ``opt`` (case-insensitive), patches paired by file stem.
* Generic aligned folders: ``aligned_folders(sar_dir, opt_dir)``, paired by file stem.
* Our real Sentinel-1/2 pairs (``s1s2/bigearthnet-configilm`` ``.npz``): 120 x 120 scenes cut into
  ``P`` x ``P`` patches at random positions (:func:`bigearthnet_npz`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "AlignedPatches",
    "aligned_folders",
    "bigearthnet_npz",
    "concat_pools",
    "eval_pairs",
    "eval_pairs_near",
    "load_source",
    "qxs_saropt",
    "read_pairs",
    "sarptical",
    "sen12",
    "shift_offsets",
    "split_pool",
    "synthetic_pool",
    "with_margin",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class AlignedPatches:
    """A pool of co-registered SAR / optical patches.

    Attributes:
        sar: ``(M, S, S)`` uint8 SAR patches, ``S = P + 2 margin``.
        opt: ``(M, S, S)`` uint8 optical gray patches, ``opt[i]`` shows the place of ``sar[i]``.
        groups: ``(M,)`` int64 source ids (one per scene / file pair).
        names: ``M`` labels of where each pair came from.
        margin: Context kept on each side of the ``P x P`` patch (0: the stored patch is the patch).
    """

    sar: np.ndarray
    opt: np.ndarray
    groups: np.ndarray
    names: list[str] = field(default_factory=list)
    margin: int = 0

    def __post_init__(self) -> None:
        if self.sar.shape != self.opt.shape or self.sar.ndim != 3 or self.sar.shape[1] != self.sar.shape[2]:
            raise ValueError(f"sar and opt must both be (M, P, P), got {self.sar.shape} and {self.opt.shape}")
        if self.groups.shape != (self.sar.shape[0],):
            raise ValueError(f"groups must be ({self.sar.shape[0]},), got {self.groups.shape}")
        if self.margin < 0 or self.sar.shape[1] <= 2 * self.margin:
            raise ValueError(f"margin {self.margin} does not fit stored patches of {self.sar.shape[1]} px")
        if not self.names:
            self.names = [str(g) for g in self.groups]

    def __len__(self) -> int:
        return int(self.sar.shape[0])

    @property
    def patch_size(self) -> int:
        """Patch side ``P`` the networks see (stored side minus twice the margin)."""
        return int(self.sar.shape[1]) - 2 * self.margin

    def subset(self, index: np.ndarray) -> AlignedPatches:
        """The pairs at ``index`` (margin kept)."""
        idx = np.asarray(index, np.int64)
        return AlignedPatches(self.sar[idx], self.opt[idx], self.groups[idx], [self.names[i] for i in idx],
                              self.margin)

    def centre(self) -> AlignedPatches:
        """The pool of the centre ``P x P`` crops (margin 0; views, no copy); ``self`` when the margin is 0."""
        if self.margin == 0:
            return self
        m, p = self.margin, self.patch_size
        return AlignedPatches(self.sar[:, m : m + p, m : m + p], self.opt[:, m : m + p, m : m + p], self.groups,
                              self.names)

    def crops(self, index: np.ndarray, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """SAR centre crops and optical crops moved by ``shift``.

        Args:
            index: ``(K,)`` pairs.
            shift: ``(K, 2)`` integer ``(dx, dy)`` of the optical crop (the optical window's corner
                moves by ``(dx, dy)``), ``|dx|, |dy| <= margin``; None: all zero (positives).

        Returns:
            ``(sar, opt)``, each ``(K, P, P)`` uint8: ``opt[k]`` shows the place of ``sar[k]``
            moved by ``-shift[k]`` in its window.

        Raises:
            ValueError: A shift exceeds the margin.
        """
        idx = np.asarray(index, np.int64).reshape(-1)
        m, p = self.margin, self.patch_size
        sar = self.sar[idx, m : m + p, m : m + p]
        if shift is None:
            return sar, self.opt[idx, m : m + p, m : m + p]
        d = np.asarray(shift, np.int64).reshape(len(idx), 2)
        if len(d) and int(np.abs(d).max()) > m:
            raise ValueError(f"shift up to {int(np.abs(d).max())} px needs a margin that large, pool has {m}")
        opt = np.empty((len(idx), p, p), np.uint8)
        for k, (i, (dx, dy)) in enumerate(zip(idx, d, strict=True)):
            opt[k] = self.opt[i, m + dy : m + dy + p, m + dx : m + dx + p]
        return sar, opt


def with_margin(pool: AlignedPatches, margin: int) -> AlignedPatches:
    """The same stored patches read as ``P + 2 margin`` context around a ``P x P`` patch."""
    return AlignedPatches(pool.sar, pool.opt, pool.groups, pool.names, int(margin))


def shift_offsets(n: int, rng: np.random.Generator, min_shift: int = 2, max_shift: int = 8) -> np.ndarray:
    """Random integer offsets whose larger axis lies in ``[min_shift, max_shift]`` (any direction).

    The larger absolute component ``d`` is uniform in ``[min_shift, max_shift]``, the axis it lies
    on and its sign are random, the other component is uniform in ``[-d, d]``.

    Args:
        n: Number of offsets.
        rng: Random generator.
        min_shift: Smallest Chebyshev length (>= 1).
        max_shift: Largest Chebyshev length.

    Returns:
        ``(n, 2)`` int64 ``(dx, dy)``.

    Raises:
        ValueError: ``1 <= min_shift <= max_shift`` does not hold.
    """
    if not 1 <= min_shift <= max_shift:
        raise ValueError(f"want 1 <= min_shift <= max_shift, got {min_shift}, {max_shift}")
    d = rng.integers(min_shift, max_shift + 1, size=n)
    other = np.floor(rng.random(n) * (2 * d + 1)).astype(np.int64) - d
    sign = np.where(rng.random(n) < 0.5, -1, 1)
    on_x = rng.random(n) < 0.5
    dx = np.where(on_x, sign * d, other)
    dy = np.where(on_x, other, sign * d)
    return np.stack([dx, dy], axis=1).astype(np.int64)


def concat_pools(pools: Sequence[AlignedPatches]) -> AlignedPatches:
    """Join pools of one patch size; group ids are renumbered so sources never collide."""
    if not pools:
        raise ValueError("concat_pools needs at least one pool")
    sizes = {(p.patch_size, p.margin) for p in pools}
    if len(sizes) != 1:
        raise ValueError(f"pools have different patch sizes / margins {sorted(sizes)}; load them with one "
                         "patch_size and margin")
    groups, offset = [], 0
    for p in pools:
        _, inv = np.unique(p.groups, return_inverse=True)
        groups.append(inv.astype(np.int64) + offset)
        offset += int(inv.max()) + 1 if len(inv) else 0
    return AlignedPatches(
        np.concatenate([p.sar for p in pools]),
        np.concatenate([p.opt for p in pools]),
        np.concatenate(groups),
        [n for p in pools for n in p.names],
        pools[0].margin,
    )


def split_pool(pool: AlignedPatches, val_fraction: float, seed: int = 0) -> tuple[AlignedPatches, AlignedPatches]:
    """Split by source group (no scene in both parts) into ``(train, val)``.

    Raises:
        ValueError: Fewer than two groups, or ``val_fraction`` outside (0, 1).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = np.unique(pool.groups)
    if len(ids) < 4:
        raise ValueError(f"need at least 4 source groups to split (2 per side for negatives), got {len(ids)}")
    rng = np.random.default_rng(seed)
    k = min(len(ids) - 2, max(2, int(round(val_fraction * len(ids)))))
    val_ids = rng.permutation(ids)[:k]
    is_val = np.isin(pool.groups, val_ids)
    return pool.subset(np.flatnonzero(~is_val)), pool.subset(np.flatnonzero(is_val))


def eval_pairs(pool: AlignedPatches, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed balanced evaluation set: each pair once as a positive and once as a negative.

    Returns:
        ``(sar_index, opt_index, labels)``, each ``(2 M,)``; the negative partner of ``i`` is a
        random pair of another group.
    """
    if len(np.unique(pool.groups)) < 2:
        raise ValueError("evaluation pairs need at least two source groups for negatives")
    rng = np.random.default_rng(seed)
    n = len(pool)
    s_neg = np.arange(n)
    o_neg = rng.integers(0, n, size=n)
    for i in range(n):
        while pool.groups[o_neg[i]] == pool.groups[i]:
            o_neg[i] = rng.integers(0, n)
    sar = np.r_[np.arange(n), s_neg].astype(np.int64)
    opt = np.r_[np.arange(n), o_neg].astype(np.int64)
    labels = np.r_[np.ones(n), np.zeros(n)].astype(np.float32)
    return sar, opt, labels


def eval_pairs_near(pool: AlignedPatches, seed: int = 0, min_shift: int = 2,
                    max_shift: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed near-shifted negatives: each pair once with its optical crop moved (:func:`shift_offsets`).

    Args:
        pool: A pool with ``margin >= max_shift``.
        seed: Offsets.
        min_shift: Smallest larger-axis offset.
        max_shift: Largest larger-axis offset.

    Returns:
        ``(sar, opt, shift)``: ``(M, P, P)`` uint8 SAR centre crops, the moved optical crops and
        the ``(M, 2)`` offsets.
    """
    shift = shift_offsets(len(pool), np.random.default_rng(seed + 17), min_shift, max_shift)
    sar, opt = pool.crops(np.arange(len(pool)), shift)
    return sar, opt, shift


def _read_gray(path: Path, patch_size: int) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    if img.dtype != np.uint8:
        x = img.astype(np.float32)
        lo, hi = np.percentile(x, (0.5, 99.5))
        img = np.clip(np.rint(255.0 * (x - lo) / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    if img.shape != (patch_size, patch_size):
        interp = cv2.INTER_AREA if img.shape[0] > patch_size else cv2.INTER_LINEAR
        img = cv2.resize(img, (patch_size, patch_size), interpolation=interp)
    return np.asarray(img, np.uint8)


def read_pairs(pairs: Sequence[tuple[Path, Path]], patch_size: int = 64) -> AlignedPatches:
    """Read ``(sar_file, opt_file)`` image pairs into a pool, one group per pair.

    Raises:
        ValueError: No pairs.
        FileNotFoundError: A file cannot be read.
    """
    if not pairs:
        raise ValueError("no image pairs to read")
    sar = np.stack([_read_gray(s, patch_size) for s, _ in pairs])
    opt = np.stack([_read_gray(o, patch_size) for _, o in pairs])
    return AlignedPatches(sar, opt, np.arange(len(pairs), dtype=np.int64), [s.stem for s, _ in pairs])


def _by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _limit(pairs: list[tuple[Path, Path]], limit: int | None) -> list[tuple[Path, Path]]:
    return pairs if limit is None else pairs[: int(limit)]


def aligned_folders(
    sar_dir: str | Path, opt_dir: str | Path, patch_size: int = 64, limit: int | None = None
) -> AlignedPatches:
    """Two folders of co-registered images paired by file stem (``a.png`` with ``a.jpg`` ...).

    Raises:
        FileNotFoundError: A folder is missing or no stem occurs in both.
    """
    s, o = Path(sar_dir), Path(opt_dir)
    for d in (s, o):
        if not d.is_dir():
            raise FileNotFoundError(f"image folder not found: {d}")
    sar, opt = _by_stem(s), _by_stem(o)
    common = sorted(set(sar) & set(opt))
    if not common:
        raise FileNotFoundError(f"no image names in both {s} and {o}")
    return read_pairs(_limit([(sar[k], opt[k]) for k in common], limit), patch_size)


def qxs_saropt(root: str | Path, patch_size: int = 64, limit: int | None = None) -> AlignedPatches:
    """QXS-SAROPT: ``sar_256_oc_0.2/<name>.png`` + ``opt_256_oc_0.2/<name>.png`` (20,000 pairs)."""
    r = Path(root)
    return aligned_folders(r / "sar_256_oc_0.2", r / "opt_256_oc_0.2", patch_size, limit)


def sen12(
    root: str | Path, patch_size: int = 64, seasons: Sequence[str] | None = None, limit: int | None = None
) -> AlignedPatches:
    """SEN1-2: ``ROIs*/s1_<k>/*_s1_*.png`` paired with ``ROIs*/s2_<k>/*_s2_*.png``.

    Args:
        root: Folder holding ``ROIs1158_spring`` ... (the paper uses the spring subset only).
        patch_size: Output patch side.
        seasons: Keep only ``ROIs*`` folders whose name contains one of these (e.g. ``["spring"]``).
        limit: Read at most this many pairs (in sorted order).

    Raises:
        FileNotFoundError: No pair found.
    """
    r = Path(root)
    pairs = []
    for roi in sorted(r.glob("ROIs*")):
        if seasons and not any(s in roi.name for s in seasons):
            continue
        for s1_dir in sorted(roi.glob("s1_*")):
            s2_dir = roi / ("s2_" + s1_dir.name[3:])
            for f in sorted(s1_dir.iterdir()):
                o = s2_dir / f.name.replace("_s1_", "_s2_")
                if f.suffix.lower() in IMAGE_SUFFIXES and o.is_file():
                    pairs.append((f, o))
    if not pairs:
        raise FileNotFoundError(f"no SEN1-2 pairs (ROIs*/s1_*/ with matching s2_* files) under {r}")
    return read_pairs(_limit(pairs, limit), patch_size)


def sarptical(root: str | Path, patch_size: int = 64, limit: int | None = None) -> AlignedPatches:
    """SARptical as two sub-folders (name containing ``sar`` / ``opt``) paired by stem.

    Raises:
        FileNotFoundError: The two folders are not found (the message lists what is there).
    """
    r = Path(root)
    dirs = [d for d in sorted(r.iterdir()) if d.is_dir()] if r.is_dir() else []
    sar = [d for d in dirs if "sar" in d.name.lower() and "opt" not in d.name.lower()]
    opt = [d for d in dirs if "opt" in d.name.lower()]
    if not sar or not opt:
        raise FileNotFoundError(
            f"SARptical root {r} needs a folder named like 'sar*' and one like 'opt*'; has {[d.name for d in dirs]}"
        )
    return aligned_folders(sar[0], opt[0], patch_size, limit)


def bigearthnet_npz(
    folder: str | Path, patch_size: int = 64, crops_per_pair: int = 8, seed: int = 0, mosaics: bool = False
) -> AlignedPatches:
    """Random ``P`` x ``P`` crops of the real S1/S2 pairs of ``s1s2/bigearthnet-configilm``.

    Scenes are prepared as the engine does (:func:`sarcoreg.training.patches.s1s2_pairs`: SAR dB
    band mean and optical luma, percentile-stretched); crops of one scene share a group.

    Args:
        folder: The ``bigearthnet-configilm`` folder.
        patch_size: Crop side (at most the 120-pixel scene side).
        crops_per_pair: Crops per 120 x 120 scene (a mosaic gets as many per 120 x 120 of its area).
        seed: Crop positions.
        mosaics: Also the three larger ``benv2_mosaic_*`` scenes. A mosaic and the patches inside
            it share one group (:func:`sarcoreg.training.real_pairs.s1s2_regions`), so a split
            by group keeps them on one side; crops over a mosaic's missing cells are redrawn.
    """
    from .patches import s1s2_pairs
    from .real_pairs import crop_pool, s1s2_regions

    scenes = s1s2_pairs(folder, include_mosaics=mosaics)
    regions = s1s2_regions([sc.name for sc in scenes])
    pools = []
    for k, sc in enumerate(scenes):
        h, w = sc.a.shape
        if min(h, w) < patch_size:
            raise ValueError(f"{sc.name}: scene {h} x {w} is smaller than the patch size {patch_size}")
        n = max(crops_per_pair, int(round(crops_per_pair * h * w / 120.0**2)))
        if "mosaic" in sc.name:
            pool = crop_pool([sc], patch_size, n, seed + 7919 * k)
        else:  # plain scenes: any crop (a dark scene is still a valid scene)
            rng = np.random.default_rng(seed + 7919 * k)
            rc = [(int(rng.integers(0, h - patch_size + 1)), int(rng.integers(0, w - patch_size + 1)))
                  for _ in range(n)]
            to8 = lambda x: np.clip(np.rint(np.stack(x) * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
            pool = AlignedPatches(to8([sc.b[r : r + patch_size, c : c + patch_size] for r, c in rc]),
                                  to8([sc.a[r : r + patch_size, c : c + patch_size] for r, c in rc]),
                                  np.zeros(n, np.int64), [f"{sc.name}@{c},{r}" for r, c in rc])
        pool.groups[:] = regions[k]
        pools.append(pool)
    return AlignedPatches(np.concatenate([p.sar for p in pools]), np.concatenate([p.opt for p in pools]),
                          np.concatenate([p.groups for p in pools]), [n for p in pools for n in p.names])


def load_source(
    spec: str, patch_size: int = 64, limit: int | None = None, seed: int = 0, crops_per_scene: int = 8,
    mosaics: bool = False, margin: int = 0,
) -> AlignedPatches:
    """One ``--data`` source of ``sarcoreg-train bnn`` / ``bnn-moco``, optionally with context.

    With ``margin > 0`` the source is cut (or, for whole-image layouts, resized) at
    ``patch_size + 2 margin`` and read as a pool with that margin; ``margin = 0`` gives exactly
    the pools of earlier versions. The other arguments are those of :func:`_load_plain`.
    """
    pool = _load_plain(spec, patch_size + 2 * int(margin), limit, seed, crops_per_scene, mosaics)
    return with_margin(pool, margin) if margin else pool


def _load_plain(
    spec: str, patch_size: int = 64, limit: int | None = None, seed: int = 0, crops_per_scene: int = 8,
    mosaics: bool = False,
) -> AlignedPatches:
    """One ``--data`` source without context.

    Args:
        spec: ``qxs:ROOT``, ``sen12:ROOT`` (``sen12-spring:ROOT`` for the paper's subset),
            ``sarptical:ROOT``, ``folders:SAR_DIR,OPT_DIR``, the real image pairs ``srif:ROOT``,
            ``osmnet:ROOT``, ``whu:ROOT`` (:mod:`sarcoreg.training.real_pairs`, cut into
            ``crops_per_scene`` crops per image pair), or a folder: the S1/S2 ``.npz`` folder
            (``benv*_pairs/``), a QXS-SAROPT root, or a SEN1-2 root (detected by layout).
        patch_size: Patch side.
        limit: At most this many image pairs (file layouts only).
        seed: Crop positions of the ``.npz`` scenes.
        crops_per_scene: Crops per ``.npz`` scene or real image pair.
        mosaics: With the S1/S2 folder, also its mosaic scenes (:func:`bigearthnet_npz`).

    Raises:
        ValueError: The spec matches no known layout (the message lists the forms).
    """
    from .real_pairs import crop_pool, pairs_from_spec

    real = pairs_from_spec(spec)
    if real is not None:
        return crop_pool(real[:limit] if limit else real, patch_size, crops_per_scene, seed)
    kind, _, rest = spec.partition(":")
    if kind not in ("qxs", "sen12", "sen12-spring", "sarptical", "folders"):
        kind, rest = "", spec  # a plain folder (also a Windows drive path)
    if kind == "qxs":
        return qxs_saropt(rest, patch_size, limit)
    if kind in ("sen12", "sen12-spring"):
        return sen12(rest, patch_size, ["spring"] if kind == "sen12-spring" else None, limit)
    if kind == "sarptical":
        return sarptical(rest, patch_size, limit)
    if kind == "folders":
        sar_dir, _, opt_dir = rest.partition(",")
        return aligned_folders(sar_dir, opt_dir, patch_size, limit)
    p = Path(rest)
    if not kind and p.is_dir():
        if any(p.glob("benv*_pairs/*.npz")):
            return bigearthnet_npz(p, patch_size, crops_per_scene, seed, mosaics)
        if (p / "sar_256_oc_0.2").is_dir():
            return qxs_saropt(p, patch_size, limit)
        if any(p.glob("ROIs*/s1_*")):
            return sen12(p, patch_size, None, limit)
    raise ValueError(
        f"--data {spec!r}: use qxs:ROOT, sen12:ROOT, sen12-spring:ROOT, sarptical:ROOT, "
        "folders:SAR_DIR,OPT_DIR, srif:ROOT, osmnet:ROOT, whu:ROOT, or the s1s2/bigearthnet-configilm folder"
    )


def synthetic_pool(opt: np.ndarray, seed: int = 0, groups: np.ndarray | None = None) -> AlignedPatches:
    """SAR-like partners (:func:`sarcoreg.training.patches.synthetic_sar_pairs`) of optical patches.

    Args:
        opt: ``(M, P, P)`` uint8 optical patches (e.g. a training pool's ``opt``).
        seed: Base seed of the simulated radiometry and speckle.
        groups: ``(M,)`` group ids (pass the source pool's so a simulated patch is never the
            negative of a real patch of its own scene); default one group per patch.

    Returns:
        A pool whose ``sar`` side is simulated from ``opt``.
    """
    from .patches import synthetic_sar_pairs

    pairs = synthetic_sar_pairs([o.astype(np.float32) / 255.0 for o in opt], seed=seed)
    to8 = lambda x: np.clip(np.rint(np.stack(x) * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    return AlignedPatches(to8([p.b for p in pairs]), np.array(opt, np.uint8, copy=True),
                          np.arange(len(pairs), dtype=np.int64) if groups is None else np.asarray(groups, np.int64),
                          [p.name for p in pairs])
