"""The RRL-Net paper's cross-spectral registration protocol (Yu et al. 2024, Table VII) as functions.

Protocol (paper section IV-F, after FIL-Net [15]): SIFT keypoints in each image (up to 1000), a
64 x 64 patch around each, a patch-similarity network scores every reference/target patch pair,
nearest neighbour + threshold gives correspondences, RANSAC removes the wrong ones and an affine
transform registers the target onto the reference. A pair counts as registered when its RMSE is
below 5 px; I_rr is the percentage of registered pairs.

Data: ``vis-nir/registration/<subset>/NNNN_rgb.jpg`` (target, to register), ``NNNN_nir.jpg``
(reference, an affine-warped NIR) and ``NNNN_nir.npy`` (2 x 3 affine ``M_gt``) with
``cv2.warpAffine(rgb, M_gt, size)`` lining the RGB up with the NIR, i.e. ``M_gt`` maps target
(RGB) pixel coordinates to reference (NIR) pixel coordinates.

Pixel convention: everything in this module uses OpenCV's convention (pixel centre at integer
coordinates, ``(x, y) = (col, row)``), because ``M_gt``, ``cv2.SIFT`` keypoints,
``cv2.getRectSubPix`` and ``cv2.estimateAffine2D`` all do. OpenCV ``(x, y)`` equals the project's
GDAL-convention ``(col, row)`` minus 0.5; RMSE values do not depend on this choice.

Definitions the paper leaves open, and what is used here:

* **RMSE** ("an image after affine transformation with a RMSE less than 5 is called a registered
  image"): the paper gives no formula. The default, ``rmse_grid``, is the root mean square distance
  between ``M_est(p)`` and ``M_gt(p)`` over a regular grid of points ``p`` covering the whole target
  image (step 8 px), i.e. the registration error of the warped image, in reference pixels. The
  matched-point variant of Quan et al. [2, 3] (``rmse_inliers``: ``|M_gt(p_tgt) - p_ref|`` over the
  RANSAC inliers) is computed too and stored, not used for ``registered``.
* **Failed pairs** (fewer than 3 matches, or RANSAC finds no model): the target stays where it is,
  so the RMSE is that of the identity transform against ``M_gt`` (grid), which is large here
  (rotations of about 5-15 degrees, shifts of tens of pixels).
* **Implausible estimates** (an addition, not in the paper): an affine with fewer than
  ``min_inliers`` (6) RANSAC inliers, a reflection (det <= 0) or a scale outside [1/4, 4] is
  rejected as a failure. Without this, the few degenerate fits from 3-5 chance inliers get RMSEs of
  thousands of pixels and swamp the mean over all pairs; they are failures either way.
* **mRMSE**: Table VII lists mRMSE 8.48-10.43 for methods with 10-11 failures, above the 5 px
  registration threshold, so the paper's mRMSE is the mean over *all* 160 pairs, failures included
  (``mrmse_all``). The mean over registered pairs only (``mrmse_registered``) is reported too.

Costs: the full protocol scores ``K_ref x K_tgt`` (up to 10^6) patch pairs per image pair. The
cheap mode keeps, for each reference keypoint, only the ``top_k`` target keypoints nearest by a
cheap descriptor (the SIFT descriptor, or the scorer's own ``embed()`` features when it has them)
and scores ``K_ref x top_k`` pairs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

__all__ = [
    "DATA_ROOT",
    "TEST_SUBSETS",
    "PatchScorer",
    "RegistrationPair",
    "Keypoints",
    "ProtocolConfig",
    "PairResult",
    "list_pairs",
    "load_pair",
    "detect_keypoints",
    "cut_patches",
    "prefilter_candidates",
    "score_matrix",
    "match_nearest",
    "estimate_affine",
    "plausible_affine",
    "apply_affine",
    "rmse_grid",
    "rmse_inliers",
    "register_pair",
    "summarise",
    "measure_throughput",
    "estimate_cost",
]

DATA_ROOT = (Path(__file__).resolve().parents[2] / "shared" / "data" / "vis-nir" / "registration").resolve()
TEST_SUBSETS = ("field", "forest", "indoor", "mountain", "oldbuilding", "street", "urban", "water")
REGISTERED_RMSE_PX = 5.0


@runtime_checkable
class PatchScorer(Protocol):
    """What the protocol needs from a patch model: the ``sarcoreg.models.load`` contract.

    ``score(a, b)`` takes two float arrays ``(N, P, P)`` in [0, 1] (a = reference, b = target) and
    returns ``(N,)`` similarities, higher = more likely the same place. Optional extras the
    protocol uses when present: ``score_matrix(a, b) -> (Na, Nb)`` (an exact all-pairs shortcut
    for descriptor-type scorers) and ``embed(x) -> (N, D)`` (cheap features for the pre-filter).
    """

    patch_size: int

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarities ``(N,)`` of patch pairs ``a[i], b[i]`` (each ``(N, P, P)``)."""
        ...


@dataclass(frozen=True)
class RegistrationPair:
    """One test pair of the benchmark.

    Attributes:
        subset: Scene folder name (``field``, ``forest``, ...).
        name: File stem number, e.g. ``"0001"``.
        reference: ``(H_r, W_r)`` float32 gray NIR image in [0, 1] (the fixed image).
        target: ``(H_t, W_t)`` float32 gray RGB image in [0, 1] (the image to register).
        m_gt: ``(2, 3)`` float64 affine, target pixel -> reference pixel (OpenCV convention).
    """

    subset: str
    name: str
    reference: np.ndarray
    target: np.ndarray
    m_gt: np.ndarray

    @property
    def pair_id(self) -> str:
        """``subset/name``."""
        return f"{self.subset}/{self.name}"


@dataclass(frozen=True)
class Keypoints:
    """SIFT keypoints kept for one image.

    Attributes:
        xy: ``(K, 2)`` float64 keypoint positions (x, y), OpenCV convention.
        descriptors: ``(K, 128)`` float32 SIFT descriptors.
        response: ``(K,)`` float32 detector responses (strongest first).
    """

    xy: np.ndarray
    descriptors: np.ndarray
    response: np.ndarray

    def __len__(self) -> int:
        return int(self.xy.shape[0])


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of one protocol run.

    Attributes:
        max_keypoints: Keypoints kept per image (paper: 1000).
        patch_size: Patch side in pixels (paper: 64).
        top_k: ``None`` = full protocol (all ``K_ref x K_tgt`` pairs); an int = cheap mode, score
            only the ``top_k`` pre-filtered candidates of each reference keypoint.
        prefilter: ``"sift"`` (SIFT descriptor L2), ``"embed"`` (scorer's ``embed()``) or
            ``"auto"`` (``embed`` when the scorer has it, else ``sift``).
        threshold: Minimum similarity of a kept nearest-neighbour match.
        mutual: Keep only mutual nearest neighbours.
        ransac_px: RANSAC reprojection threshold in reference pixels.
        ransac_iters: RANSAC iterations.
        batch_size: Patch pairs per ``score`` call.
        grid_step: Grid step (target pixels) of ``rmse_grid``.
        seed: Seed given to OpenCV's RNG before RANSAC (reproducible runs).
        min_inliers: Fewest RANSAC inliers of an accepted affine (see ``plausible_affine``).
        a_image: Which image's patches feed the scorer's ``a`` input. The patch-model contract
            has ``a`` = optical and ``b`` = NIR/SAR, and here the optical (RGB) image is the
            target, so the default is ``"target"``; classical scorers are symmetric.
    """

    max_keypoints: int = 1000
    patch_size: int = 64
    top_k: int | None = None
    prefilter: str = "auto"
    threshold: float = 0.5
    mutual: bool = False
    ransac_px: float = 3.0
    ransac_iters: int = 5000
    batch_size: int = 2048
    grid_step: int = 8
    seed: int = 0
    a_image: str = "target"
    min_inliers: int = 6


@dataclass
class PairResult:
    """Outcome of registering one pair (every number the benchmark tables need)."""

    subset: str
    name: str
    n_kp_ref: int
    n_kp_tgt: int
    n_scored: int
    n_matches: int
    n_inliers: int
    rmse: float
    rmse_inliers: float
    registered: bool
    failed: bool
    time_s: float
    time_score_s: float
    m_est: list[list[float]] | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values."""
        return asdict(self)


# --------------------------------------------------------------------------------------------- data


def list_pairs(root: Path = DATA_ROOT, subsets: Sequence[str] = TEST_SUBSETS, limit: int | None = None) -> list[
        tuple[str, str]]:
    """The ``(subset, name)`` test pairs present under ``root``, sorted.

    Args:
        root: The ``vis-nir/registration`` folder.
        subsets: Subset folder names.
        limit: Keep at most this many pairs per subset (first by name).

    Returns:
        List of ``(subset, name)``.
    """
    out: list[tuple[str, str]] = []
    for subset in subsets:
        folder = Path(root) / subset
        if not folder.is_dir():
            known = ", ".join(TEST_SUBSETS)
            raise FileNotFoundError(f"registration subset folder not found: {folder} (known: {known})")
        names = sorted(p.name[: -len("_nir.npy")] for p in folder.glob("*_nir.npy"))
        if limit is not None:
            names = names[:limit]
        out.extend((subset, n) for n in names)
    return out


def _read_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img.astype(np.float32) / np.float32(255.0)


def load_pair(subset: str, name: str, root: Path = DATA_ROOT) -> RegistrationPair:
    """Read one test pair (gray images in [0, 1] and the ground-truth affine)."""
    folder = Path(root) / subset
    m_gt = np.load(folder / f"{name}_nir.npy").astype(np.float64).reshape(2, 3)
    return RegistrationPair(subset=subset, name=name, reference=_read_gray(folder / f"{name}_nir.jpg"),
                            target=_read_gray(folder / f"{name}_rgb.jpg"), m_gt=m_gt)


# ---------------------------------------------------------------------------------------- keypoints


def detect_keypoints(image: np.ndarray, max_keypoints: int = 1000, patch_size: int = 64,
                     valid_mask: np.ndarray | None = None) -> Keypoints:
    """SIFT keypoints whose full patch lies inside the image, strongest first.

    Keypoints at the same pixel (SIFT repeats a location for each dominant orientation) are kept
    once, since the patches are not oriented. Keypoints whose patch would cross the border are
    dropped *before* the ``max_keypoints`` cut, so up to ``max_keypoints`` usable ones remain.

    Args:
        image: ``(H, W)`` float gray image in [0, 1].
        max_keypoints: Number kept (the strongest responses).
        patch_size: Patch side; keypoints closer than ``patch_size / 2`` to a border are skipped.
        valid_mask: Optional ``(H, W)`` bool mask; keypoints on False pixels are skipped.

    Returns:
        The kept keypoints (possibly fewer than ``max_keypoints``).
    """
    if image.ndim != 2:
        raise ValueError(f"detect_keypoints wants a (H, W) gray image, got shape {image.shape}")
    u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    sift = cv2.SIFT_create()
    kps, desc = sift.detectAndCompute(u8, None)
    h, w = image.shape
    half = patch_size / 2.0
    if not kps:
        return Keypoints(np.zeros((0, 2)), np.zeros((0, 128), np.float32), np.zeros(0, np.float32))
    xy = np.array([k.pt for k in kps], dtype=np.float64)
    resp = np.array([k.response for k in kps], dtype=np.float32)
    ok = (xy[:, 0] >= half) & (xy[:, 0] <= w - 1 - half) & (xy[:, 1] >= half) & (xy[:, 1] <= h - 1 - half)
    if valid_mask is not None:
        ix = np.clip(np.rint(xy[:, 0]).astype(int), 0, w - 1)
        iy = np.clip(np.rint(xy[:, 1]).astype(int), 0, h - 1)
        ok &= valid_mask[iy, ix]
    order = np.argsort(-resp, kind="stable")
    order = order[ok[order]]
    seen: set[tuple[int, int]] = set()
    keep: list[int] = []
    for i in order:
        key = (int(round(xy[i, 0])), int(round(xy[i, 1])))
        if key in seen:
            continue
        seen.add(key)
        keep.append(int(i))
        if len(keep) >= max_keypoints:
            break
    idx = np.array(keep, dtype=np.int64)
    return Keypoints(xy=xy[idx], descriptors=desc[idx].astype(np.float32), response=resp[idx])


def cut_patches(image: np.ndarray, xy: np.ndarray, patch_size: int = 64) -> np.ndarray:
    """Patches centred on sub-pixel points (bilinear, ``cv2.getRectSubPix``).

    Args:
        image: ``(H, W)`` float gray image in [0, 1].
        xy: ``(K, 2)`` centres (x, y), OpenCV convention.
        patch_size: Patch side ``P``.

    Returns:
        ``(K, P, P)`` float32 patches in [0, 1].
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    out = np.empty((len(xy), patch_size, patch_size), dtype=np.float32)
    for i, (x, y) in enumerate(np.asarray(xy, dtype=np.float64)):
        out[i] = cv2.getRectSubPix(img, (patch_size, patch_size), (float(x), float(y)))
    return out


# ------------------------------------------------------------------------------------------ scoring


def prefilter_candidates(desc_ref: np.ndarray, desc_tgt: np.ndarray, top_k: int) -> np.ndarray:
    """For each reference descriptor, the indices of the ``top_k`` nearest target descriptors (L2).

    Args:
        desc_ref: ``(K_r, D)`` reference descriptors.
        desc_tgt: ``(K_t, D)`` target descriptors.
        top_k: Candidates per reference keypoint (clipped to ``K_t``).

    Returns:
        ``(K_r, min(top_k, K_t))`` int64 target indices, nearest first.
    """
    a = np.asarray(desc_ref, dtype=np.float32)
    b = np.asarray(desc_tgt, dtype=np.float32)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    k = min(int(top_k), b.shape[0])
    if k <= 0:
        return np.zeros((a.shape[0], 0), dtype=np.int64)
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(d2, part, axis=1).argsort(axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def score_matrix(scorer: PatchScorer, patches_ref: np.ndarray, patches_tgt: np.ndarray,
                 candidates: np.ndarray | None = None, batch_size: int = 2048,
                 ref_is_a: bool = True) -> tuple[np.ndarray, int]:
    """Similarity matrix between two patch sets through ``scorer.score`` in batches.

    Args:
        scorer: Any ``PatchScorer``. A scorer with an exact ``score_matrix(a, b)`` method is asked
            for the whole matrix at once (descriptor scorers; in cheap mode the non-candidates
            are then masked out); otherwise every pair goes through ``score`` in batches (what a
            metric network must do).
        patches_ref: ``(K_r, P, P)`` reference patches (``a``).
        patches_tgt: ``(K_t, P, P)`` target patches (``b``).
        candidates: ``None`` = all pairs; else ``(K_r, k)`` target indices per reference patch.
        batch_size: Pairs per ``score`` call.
        ref_is_a: Reference patches go to the scorer's ``a`` input (else the target patches do;
            ``S`` is indexed ``[ref, tgt]`` either way).

    Returns:
        ``(S, n_scored)``: ``S`` is ``(K_r, K_t)`` float32, ``-inf`` where not scored; ``n_scored``
        the number of pairs scored.
    """
    kr, kt = len(patches_ref), len(patches_tgt)
    sim = np.full((kr, kt), -np.inf, dtype=np.float32)
    if kr == 0 or kt == 0:
        return sim, 0
    if hasattr(scorer, "score_matrix"):
        # Descriptor scorers: the whole matrix costs one description per patch; in cheap mode
        # only the candidate pairs are kept, as if only they had been scored.
        full = scorer.score_matrix(patches_ref, patches_tgt) if ref_is_a else \
            np.asarray(scorer.score_matrix(patches_tgt, patches_ref)).T
        full = np.asarray(full, dtype=np.float32)
        if candidates is None:
            return full, kr * kt
        cand = np.asarray(candidates, dtype=np.int64)
        r = np.repeat(np.arange(kr), cand.shape[1])
        sim[r, cand.reshape(-1)] = full[r, cand.reshape(-1)]
        return sim, int(r.size)
    if candidates is None:
        rows = np.repeat(np.arange(kr), kt)
        cols = np.tile(np.arange(kt), kr)
    else:
        cand = np.asarray(candidates, dtype=np.int64)
        rows = np.repeat(np.arange(kr), cand.shape[1])
        cols = cand.reshape(-1)
    for start in range(0, rows.size, batch_size):
        r = rows[start:start + batch_size]
        c = cols[start:start + batch_size]
        pa, pb = (patches_ref[r], patches_tgt[c]) if ref_is_a else (patches_tgt[c], patches_ref[r])
        s = np.asarray(scorer.score(pa, pb), dtype=np.float32).reshape(-1)
        if s.shape[0] != r.shape[0]:
            raise ValueError(f"scorer.score returned {s.shape[0]} scores for {r.shape[0]} pairs")
        sim[r, c] = s
    return sim, int(rows.size)


def match_nearest(sim: np.ndarray, threshold: float, mutual: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-neighbour matches from a similarity matrix, filtered by a threshold.

    Args:
        sim: ``(K_r, K_t)`` similarities (``-inf`` = not scored).
        threshold: Keep a match when its similarity is at least this.
        mutual: Also require the reference keypoint to be the best one for its target keypoint.

    Returns:
        ``(idx_ref, idx_tgt, score)``, each ``(M,)``: for each reference keypoint its best target.
    """
    if sim.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    best_t = sim.argmax(axis=1)
    best_s = sim[np.arange(sim.shape[0]), best_t]
    keep = np.isfinite(best_s) & (best_s >= threshold)
    if mutual:
        best_r = sim.argmax(axis=0)
        keep &= best_r[best_t] == np.arange(sim.shape[0])
    idx_ref = np.nonzero(keep)[0]
    return idx_ref.astype(np.int64), best_t[idx_ref].astype(np.int64), best_s[idx_ref].astype(np.float32)


# --------------------------------------------------------------------------------- geometry, errors


def estimate_affine(xy_tgt: np.ndarray, xy_ref: np.ndarray, ransac_px: float = 3.0, iters: int = 5000,
                    seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC affine target -> reference (``cv2.estimateAffine2D``).

    Args:
        xy_tgt: ``(M, 2)`` matched target points.
        xy_ref: ``(M, 2)`` matched reference points.
        ransac_px: Reprojection threshold (reference pixels).
        iters: Maximum RANSAC iterations.
        seed: Seed for OpenCV's RNG.

    Returns:
        ``(M_est, inliers)``: ``(2, 3)`` affine or ``None`` (fewer than 3 matches or no model),
        and an ``(M,)`` bool inlier mask.
    """
    n = len(xy_tgt)
    if n < 3:
        return None, np.zeros(n, dtype=bool)
    cv2.setRNGSeed(int(seed))
    m, mask = cv2.estimateAffine2D(np.asarray(xy_tgt, np.float64).reshape(-1, 1, 2),
                                   np.asarray(xy_ref, np.float64).reshape(-1, 1, 2), method=cv2.RANSAC,
                                   ransacReprojThreshold=float(ransac_px), maxIters=int(iters), confidence=0.999,
                                   refineIters=10)
    if m is None or mask is None:
        return None, np.zeros(n, dtype=bool)
    return m.astype(np.float64), mask.reshape(-1).astype(bool)


def plausible_affine(m: np.ndarray | None, n_inliers: int, min_inliers: int = 6,
                     max_scale: float = 4.0) -> bool:
    """Whether an estimated affine is worth keeping (not a degenerate fit).

    Args:
        m: ``(2, 3)`` affine or ``None``.
        n_inliers: Its RANSAC inliers.
        min_inliers: Fewest inliers accepted.
        max_scale: Largest accepted scale ``sqrt(|det|)`` and inverse scale.

    Returns:
        False for ``None``, too few inliers, a reflection or an extreme scale.
    """
    if m is None or n_inliers < min_inliers:
        return False
    det = float(np.linalg.det(np.asarray(m, dtype=np.float64)[:, :2]))
    return det > 0 and 1.0 / max_scale <= np.sqrt(det) <= max_scale


def apply_affine(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through a ``(2, 3)`` affine."""
    p = np.asarray(xy, dtype=np.float64)
    return p @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m, dtype=np.float64)[:, 2]


def _grid(shape: tuple[int, int], step: int) -> np.ndarray:
    h, w = shape
    xs = np.arange(0, w, step, dtype=np.float64)
    ys = np.arange(0, h, step, dtype=np.float64)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def rmse_grid(m_est: np.ndarray | None, m_gt: np.ndarray, target_shape: tuple[int, int], step: int = 8) -> float:
    """RMSE (reference pixels) between two target -> reference affines over the target image.

    Args:
        m_est: ``(2, 3)`` estimated affine; ``None`` = registration failed, identity is used.
        m_gt: ``(2, 3)`` ground-truth affine.
        target_shape: ``(H, W)`` of the target image; grid points cover it with ``step``.
        step: Grid step in pixels.

    Returns:
        ``sqrt(mean |M_est(p) - M_gt(p)|^2)`` over the grid points ``p``.
    """
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) if m_est is None else m_est
    pts = _grid(target_shape, step)
    d = apply_affine(m, pts) - apply_affine(m_gt, pts)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def rmse_inliers(m_gt: np.ndarray, xy_tgt: np.ndarray, xy_ref: np.ndarray) -> float:
    """Matched-point RMSE ``sqrt(mean |M_gt(p_tgt) - p_ref|^2)``; ``nan`` without points.

    Args:
        m_gt: ``(2, 3)`` ground-truth affine.
        xy_tgt: ``(M, 2)`` target points (e.g. the RANSAC inliers).
        xy_ref: ``(M, 2)`` their matched reference points.
    """
    if len(xy_tgt) == 0:
        return float("nan")
    d = apply_affine(m_gt, xy_tgt) - np.asarray(xy_ref, dtype=np.float64)
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


# ----------------------------------------------------------------------------------------- protocol


def _prefilter_descriptors(scorer: PatchScorer, cfg: ProtocolConfig, kp_ref: Keypoints, kp_tgt: Keypoints,
                           patches_ref: np.ndarray, patches_tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    use_embed = cfg.prefilter == "embed" or (cfg.prefilter == "auto" and hasattr(scorer, "embed"))
    if cfg.prefilter not in ("auto", "embed", "sift"):
        raise ValueError(f"prefilter must be 'auto', 'embed' or 'sift', got {cfg.prefilter!r}")
    if use_embed:
        if not hasattr(scorer, "embed"):
            raise ValueError("prefilter='embed' needs a scorer with an embed(patches) method; use 'sift'")
        emb_r = np.asarray(scorer.embed(patches_ref), dtype=np.float32).reshape(len(patches_ref), -1)
        emb_t = np.asarray(scorer.embed(patches_tgt), dtype=np.float32).reshape(len(patches_tgt), -1)
        return emb_r, emb_t, "embed"
    return kp_ref.descriptors, kp_tgt.descriptors, "sift"


def register_pair(pair: RegistrationPair, scorer: PatchScorer, cfg: ProtocolConfig) -> PairResult:
    """Run the whole protocol on one pair and score it against the ground truth.

    Args:
        pair: The test pair.
        scorer: Patch scorer; its ``patch_size`` must equal ``cfg.patch_size``.
        cfg: Protocol settings.

    Returns:
        The ``PairResult`` (RMSE per ``rmse_grid``; ``registered`` = RMSE < 5 px).
    """
    if int(scorer.patch_size) != cfg.patch_size:
        raise ValueError(f"scorer patch_size {scorer.patch_size} != protocol patch_size {cfg.patch_size}")
    t0 = time.perf_counter()
    kp_ref = detect_keypoints(pair.reference, cfg.max_keypoints, cfg.patch_size)
    kp_tgt = detect_keypoints(pair.target, cfg.max_keypoints, cfg.patch_size)
    patches_ref = cut_patches(pair.reference, kp_ref.xy, cfg.patch_size)
    patches_tgt = cut_patches(pair.target, kp_tgt.xy, cfg.patch_size)
    candidates = None
    prefilter_used = "none"
    if cfg.top_k is not None and len(kp_ref) and len(kp_tgt):
        d_r, d_t, prefilter_used = _prefilter_descriptors(scorer, cfg, kp_ref, kp_tgt, patches_ref, patches_tgt)
        candidates = prefilter_candidates(d_r, d_t, cfg.top_k)
    ts = time.perf_counter()
    if cfg.a_image not in ("target", "reference"):
        raise ValueError(f"a_image must be 'target' or 'reference', got {cfg.a_image!r}")
    sim, n_scored = score_matrix(scorer, patches_ref, patches_tgt, candidates, cfg.batch_size,
                                 ref_is_a=cfg.a_image == "reference")
    time_score = time.perf_counter() - ts
    i_ref, i_tgt, _ = match_nearest(sim, cfg.threshold, cfg.mutual)
    xy_ref = kp_ref.xy[i_ref]
    xy_tgt = kp_tgt.xy[i_tgt]
    m_est, inl = estimate_affine(xy_tgt, xy_ref, cfg.ransac_px, cfg.ransac_iters, cfg.seed)
    note = ""
    if m_est is None:
        note = f"no affine ({len(i_ref)} matches)"
    elif not plausible_affine(m_est, int(inl.sum()), cfg.min_inliers):
        note = f"implausible affine rejected ({int(inl.sum())} inliers)"
        m_est = None
    elapsed = time.perf_counter() - t0
    shape = (int(pair.target.shape[0]), int(pair.target.shape[1]))
    rmse = rmse_grid(m_est, pair.m_gt, shape, cfg.grid_step)
    rmse_in = rmse_inliers(pair.m_gt, xy_tgt[inl], xy_ref[inl]) if m_est is not None else float("nan")
    return PairResult(subset=pair.subset, name=pair.name, n_kp_ref=len(kp_ref), n_kp_tgt=len(kp_tgt),
                      n_scored=n_scored, n_matches=int(len(i_ref)), n_inliers=int(inl.sum()), rmse=rmse,
                      rmse_inliers=rmse_in, registered=bool(rmse < REGISTERED_RMSE_PX), failed=m_est is None,
                      time_s=elapsed, time_score_s=time_score,
                      m_est=None if m_est is None else m_est.tolist(), note=note,
                      extra={"prefilter": prefilter_used})


def summarise(rmses: Iterable[float], times: Iterable[float] | None = None,
              threshold_px: float = REGISTERED_RMSE_PX) -> dict[str, float | int]:
    """Table VII numbers from per-pair RMSEs.

    Args:
        rmses: Per-pair RMSE (px); failed pairs carry their identity RMSE (never ``nan``).
        times: Optional per-pair seconds (adds ``time_mean_s`` and ``time_total_s``).
        threshold_px: Registration threshold (paper: 5).

    Returns:
        ``n``, ``n_lt1``, ``n_1to5``, ``n_gt5`` (the paper's RMSE distribution), ``n_registered``,
        ``i_rr_pct`` (100 * registered / n), ``mrmse_all`` (mean over all pairs, the paper's
        mRMSE) and ``mrmse_registered`` (mean over registered pairs; ``nan`` when none).
    """
    r = np.asarray(list(rmses), dtype=np.float64)
    if r.size and not np.all(np.isfinite(r)):
        raise ValueError("summarise needs finite RMSEs (give failed pairs their identity RMSE)")
    reg = r < threshold_px
    out: dict[str, float | int] = {
        "n": int(r.size),
        "n_lt1": int(np.sum(r < 1.0)),
        "n_1to5": int(np.sum((r >= 1.0) & reg)),
        "n_gt5": int(np.sum(~reg)),
        "n_registered": int(reg.sum()),
        "i_rr_pct": float(100.0 * reg.mean()) if r.size else float("nan"),
        "mrmse_all": float(r.mean()) if r.size else float("nan"),
        "mrmse_registered": float(r[reg].mean()) if reg.any() else float("nan"),
    }
    if times is not None:
        t = np.asarray(list(times), dtype=np.float64)
        out["time_mean_s"] = float(t.mean()) if t.size else float("nan")
        out["time_total_s"] = float(t.sum())
    return out


# --------------------------------------------------------------------------------------------- cost


def measure_throughput(scorer: PatchScorer, n_pairs: int = 2048, batch_size: int = 2048, repeats: int = 2,
                       seed: int = 0) -> float:
    """Patch pairs per second of ``scorer.score`` on random patches (best of ``repeats``).

    Args:
        scorer: The scorer.
        n_pairs: Pairs per timing run.
        batch_size: Pairs per ``score`` call.
        repeats: Timing runs (the fastest counts; the first also warms up).
        seed: Seed of the random patches.
    """
    rng = np.random.default_rng(seed)
    p = int(scorer.patch_size)
    a = rng.random((n_pairs, p, p), dtype=np.float32)
    b = rng.random((n_pairs, p, p), dtype=np.float32)
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for s in range(0, n_pairs, batch_size):
            scorer.score(a[s:s + batch_size], b[s:s + batch_size])
        best = min(best, time.perf_counter() - t0)
    return n_pairs / max(best, 1e-9)


def estimate_cost(pairs_per_image_pair: float, pairs_per_s: float, n_image_pairs: int = 160,
                  overhead_s: float = 0.0) -> dict[str, float]:
    """Time estimate of a protocol run from scorer throughput.

    Args:
        pairs_per_image_pair: Patch pairs scored per image pair (``K_r * K_t`` full,
            ``K_r * top_k`` cheap).
        pairs_per_s: Measured scorer throughput.
        n_image_pairs: Image pairs in the run.
        overhead_s: Per-image-pair time outside scoring (SIFT, patches, RANSAC).

    Returns:
        ``seconds_per_image_pair`` and ``seconds_total`` (and ``hours_total``).
    """
    per = pairs_per_image_pair / max(pairs_per_s, 1e-12) + overhead_s
    return {"seconds_per_image_pair": float(per), "seconds_total": float(per * n_image_pairs),
            "hours_total": float(per * n_image_pairs / 3600.0)}

