"""Benchmark cases for the co-registration engine, and how one case is run and scored.

A case is a reference raster, a target raster and the **true** mapping from target pixels to
reference pixels (GDAL convention, the same direction as ``CoregResult.target_to_reference``). The
builders write the rasters into a scratch folder and return :class:`BenchCase` objects; the
runner co-registers a case with one matcher and scores it with the average corner error (ACE).

Groups (see ``bench/README.md`` for what each one measures):

* ``optical_shift``: a real optical image and a copy moved by a sub-pixel offset, either through
  the target's geotransform (``georef``) or by resampling its content (``resampled``).
* ``sar_like``: real optical images against SAR-like targets from
  :func:`sarcoreg.core.synthetic.make_pair`, offsets of 10-50 px in a random direction.
* ``ben_common``, ``ben_configilm``, ``ben_mosaic``: real Sentinel-1/Sentinel-2 pairs (one grid),
  the S1 georeferencing moved by a known sub-pixel offset; the truth is the identity.
* ``osmnet``, ``whu``: real aligned optical/SAR pairs (no georeferencing of their own), written as
  GeoTIFFs with a known offset in the target's origin; the truth is the identity.
* ``srif``: real optical/SAR JPGs of the SRIF set with the corrected ground truth (rotations of
  1-90 degrees and a scale change), matched in pixel coordinates.
"""

from __future__ import annotations

import json
import math
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.synthetic import Distortion, corner_error, make_pair, write_geotiff

__all__ = [
    "BENCH_ROOT",
    "DATA",
    "GROUPS",
    "PATCH_OPTIONS",
    "SCENE_OPTIONS",
    "BenchCase",
    "build_group",
    "format_table",
    "peak_rss_reset",
    "peak_rss_mb",
    "run_case",
    "summarise",
]

PointMap = Callable[[np.ndarray], np.ndarray]

BENCH_ROOT = Path(__file__).resolve().parent
#: Real data folder beside the repository (read-only).
DATA = (BENCH_ROOT.parent.parent / "shared" / "data").resolve()

_ORIGIN = (500000.0, 5000000.0)
_PIXEL = 10.0

#: Options for scenes of a few hundred pixels: the engine defaults (window 64, radius 16,
#: coarse stage on) with a tighter grid so that a 256 px image still gets a dozen candidates.
SCENE_OPTIONS: dict[str, Any] = {"spacing": 48, "transform": "affine"}
#: Options for 120 x 120 BigEarthNet patches (those of ``sarcoreg demo``): a 64 px window plus a
#: 16 px radius does not fit such a patch more than once.
PATCH_OPTIONS: dict[str, Any] = {"spacing": 12, "window": 32, "search_radius": 8, "transform": "shift"}


@dataclass
class BenchCase:
    """One co-registration case with its ground truth.

    Attributes:
        name: Unique case name.
        group: Group name (one of :data:`GROUPS`).
        reference: Reference raster path.
        target: Target raster path.
        gt_target_to_reference: True mapping target pixel ``(N, 2)`` -> reference pixel
            ``(N, 2)`` (GDAL convention).
        target_size: ``(width, height)`` of the target raster (ACE is taken at its corners).
        options: :class:`CoregOptions` fields for this case (the group's, never tuned per case).
        info: What was drawn (offset, angle, source image ...), for the per-case table.
        success_px: ACE below which the case counts as a success.
        zero_target: The same target without the offset in its georeferencing (real pairs
            whose own alignment is not exact): the runner also co-registers it and reports how
            far the two estimates differ (``selfcons_px``), which isolates the engine's error
            from the data's own misalignment.
        checkpoints: Independent check points of the pair, per matcher that measured them:
            ``{matcher: (target px (N, 2), reference px (N, 2))}``, the inliers of a dense run of
            that matcher on the unmoved pair (the target's pixels are the same in the moved one,
            only its georeferencing differs). A run is scored at the points of a matcher other
            than its own (``cp_rmse_px``, ``cp_from``).
    """

    name: str
    group: str
    reference: Path
    target: Path
    gt_target_to_reference: PointMap
    target_size: tuple[int, int]
    options: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    success_px: float = 3.0
    zero_target: Path | None = None
    checkpoints: dict[str, tuple[np.ndarray, np.ndarray]] | None = None


# ------------------------------------------------------------------------------------------
# Peak memory per case (Linux: reset the high-water mark through /proc/self/clear_refs)
# ------------------------------------------------------------------------------------------


def peak_rss_reset() -> bool:
    """Reset this process's peak resident set size (VmHWM); False where the OS does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process since the last :func:`peak_rss_reset`, MiB."""
    try:
        text = Path("/proc/self/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+)\s*kB", text)
        if match:
            return int(match.group(1)) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------
# Real image sources
# ------------------------------------------------------------------------------------------


def _stretch(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` -> float32 in [0, 1] by the 0.5/99.5 percentiles of the finite pixels."""
    g = np.asarray(gray, np.float64)
    finite = np.isfinite(g)
    lo, hi = np.percentile(g[finite], [0.5, 99.5])
    out = np.clip((g - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    out[~finite] = np.nan
    return out.astype(np.float32)


def _read_gray(path: Path, scale: float = 1.0) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return _stretch(img)


def _s2_gray(s2_10m: np.ndarray) -> np.ndarray:
    """BigEarthNet ``(4, H, W)`` [B02, B03, B04, B08] uint16 -> stretched RGB mean, NaN where 0."""
    rgb = s2_10m[:3].astype(np.float64)
    gray = rgb.mean(axis=0)
    gray[(s2_10m[:3] == 0).all(axis=0)] = np.nan
    return _stretch(gray)


_Loader = Callable[[], tuple[str, np.ndarray]]


def _load_image(name: str, path: Path, scale: float, crop: tuple[int, int, int] | None
                ) -> tuple[str, np.ndarray]:
    """``(name, gray)`` of an image file, resized by ``scale``, cropped to ``(x0, y0, side)``."""
    gray = _read_gray(path, scale)
    if crop is not None:
        x0, y0, side = crop
        gray = gray[y0:y0 + side, x0:x0 + side].copy()
    return name, gray


def _load_mosaic(path: Path) -> tuple[str, np.ndarray]:
    """``(name, gray)`` of a BigEarthNet v2 S2 mosaic."""
    return f"s2-{path.stem.replace('benv2_mosaic_', '')}", _s2_gray(np.load(path)["s2_10m"])


def optical_sources(count: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Real optical gray images of a few hundred pixels, float32 in [0, 1] (NaN = nodata).

    Drawn in a fixed, seeded order from: VIS-NIR RGB photos (halved, 340 x 512), the three
    Sentinel-2 mosaics of BigEarthNet v2 (240 x 240 .. 240 x 600), the OSMNet optical tiles
    (256 x 256), 448 x 448 crops of the WHU-OPT-SAR optical image and SRIF optical tiles
    (>= 400 px). The list cycles through the sources so that any prefix mixes them.

    Args:
        count: Number of images.
        seed: Seed of the choice of VIS-NIR photos, WHU crops and SRIF tiles.

    Returns:
        ``[(name, image (H, W))]``.
    """
    rng = np.random.default_rng(seed)
    visnir = DATA / "vis-nir" / "registration"
    cats = sorted(p.name for p in visnir.iterdir() if p.is_dir())
    vis_items: list[_Loader] = []
    for k in range(max(count, len(cats))):
        cat = cats[k % len(cats)]
        files = sorted((visnir / cat).glob("*_rgb.jpg"))
        f = files[int(rng.integers(len(files)))]
        vis_items.append(partial(_load_image, f"visnir-{cat}-{f.stem}", f, 0.5, None))
    mosaics = sorted((DATA / "s1s2" / "bigearthnet-configilm").glob("benv2_mosaic_*.npz"))
    mos_items: list[_Loader] = [partial(_load_mosaic, m) for m in mosaics]
    osm = DATA / "sar-optical" / "osmnet" / "ims"
    osm_items: list[_Loader] = [partial(_load_image, f"osmnet-opt{k}", osm / f"opt{k}.png", 1.0, None)
                                for k in range(1, 5)]
    whu = DATA / "sar-optical" / "whu-opt-sar" / "data" / "optical" / "WHU-OPT-SAR.tif"
    whu_items: list[_Loader] = []
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, 1000 - 448, size=2))
        whu_items.append(partial(_load_image, f"whu-opt-{x0}-{y0}", whu, 1.0, (x0, y0, 448)))
    srif = DATA / "sar-optical" / "srif" / "dataset" / "Optical-SAR"
    big = []
    for p in sorted(srif.glob("pair*_1.jpg"), key=lambda p: int(p.stem[4:-2])):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is not None and min(img.shape) >= 400:
            big.append(p)
    picks = rng.choice(len(big), size=min(4, len(big)), replace=False)
    srif_items: list[_Loader] = [partial(_load_image, f"srif-{big[int(i)].stem}", big[int(i)], 1.0, None)
                                 for i in picks]
    pools = [vis_items, mos_items, osm_items, whu_items, srif_items]
    order: list[_Loader] = []
    # Two VIS-NIR photos for every one of each other source, cycling until all are used.
    while len(order) < count and any(pools):
        for pool, take in zip(pools, (2, 1, 1, 1, 1), strict=True):
            for _ in range(take):
                if pool and len(order) < count:
                    order.append(pool.pop(0))
    return [item() for item in order]


# ------------------------------------------------------------------------------------------
# Case builders
# ------------------------------------------------------------------------------------------


def _identity(xy: np.ndarray) -> np.ndarray:
    return np.asarray(xy, np.float64).reshape(-1, 2).copy()


def _shifted_origin(offset: tuple[float, float]) -> tuple[float, float]:
    """Origin that makes target pixel ``(c, r)`` claim reference pixel ``(c + ox, r + oy)``."""
    return (_ORIGIN[0] + offset[0] * _PIXEL, _ORIGIN[1] - offset[1] * _PIXEL)


def _to_uint16(gray: np.ndarray) -> np.ndarray:
    """[0, 1] gray -> uint16 1..10001 (0 = nodata where NaN), like a reflectance product."""
    out = np.where(np.isfinite(gray), 1.0 + 10000.0 * np.nan_to_num(gray), 0.0)
    return out.astype(np.uint16)


def _offset(rng: np.random.Generator, limit: float) -> tuple[float, float]:
    dx, dy = rng.uniform(-limit, limit, size=2)
    return (round(float(dx), 3), round(float(dy), 3))


def optical_shift_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """Optical vs a sub-pixel shifted copy of itself (target 1: error < 0.2 px).

    Half of the cases move the copy through its geotransform (no resampling in the data; the
    engine's warp resamples), half resample its content with cv2.remap (cubic) and keep the grid.
    Offsets are uniform in +-5 px per axis. Transform: ``shift``; both inputs optical.
    """
    rng = np.random.default_rng(seed)
    out = []
    opts = {**SCENE_OPTIONS, "transform": "shift", "reference_modality": "optical",
            "target_modality": "optical"}
    for k, (src, gray) in enumerate(optical_sources(count, seed + 100)):
        off = _offset(rng, 5.0)
        ref = write_geotiff(folder / f"opt{k}_ref.tif", _to_uint16(gray), nodata=0)
        if k % 2 == 0:
            tgt = write_geotiff(folder / f"opt{k}_tgt.tif", _to_uint16(gray), nodata=0,
                                origin=_shifted_origin(off))
            gt: PointMap = _identity
            how = "georef"
        else:
            dist = Distortion.shift(*off)
            pair = make_pair(np.nan_to_num(gray), distortion=dist, radiometry=False, speckle=False)
            tgt = write_geotiff(folder / f"opt{k}_tgt.tif",
                                np.where(pair.target_valid & np.isfinite(gray), pair.target, np.nan)
                                .astype(np.float32))
            gt = pair.gt_target_to_reference
            how = "resampled"
        h, w = gray.shape
        out.append(BenchCase(f"{src}-{how}", "optical_shift", ref, tgt, gt, (w, h), opts,
                             {"source": src, "how": how, "offset_px": list(off)}, success_px=0.2))
    return out


def sar_like_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """Real optical reference vs SAR-like target with an offset of 10-50 px (target 2).

    Offset magnitude uniform in [10, 50] px, direction uniform; 4-look speckle, random
    radiometric transfer with partial contrast reversal, layover lines and dark water (the
    defaults of :func:`sarcoreg.core.synthetic.sar_like`), each case its own seed. Reference
    written as uint16, target as float32 linear intensity with NaN where it has no content.
    """
    rng = np.random.default_rng(seed)
    out = []
    opts = {**SCENE_OPTIONS, "reference_modality": "optical", "target_modality": "sar"}
    for k, (src, gray) in enumerate(optical_sources(count, seed + 200)):
        mag = float(rng.uniform(10.0, 50.0))
        ang = float(rng.uniform(0.0, 2.0 * math.pi))
        off = (round(mag * math.cos(ang), 3), round(mag * math.sin(ang), 3))
        pair = make_pair(gray, distortion=Distortion.shift(*off), seed=seed * 1000 + k)
        ref = write_geotiff(folder / f"sar{k}_ref.tif", _to_uint16(gray), nodata=0)
        tgt_arr = np.where(pair.target_valid & (pair.target > 0), pair.target, np.nan).astype(np.float32)
        tgt = write_geotiff(folder / f"sar{k}_tgt.tif", tgt_arr)
        h, w = gray.shape
        out.append(BenchCase(f"{src}-sar{k}", "sar_like", ref, tgt, pair.gt_target_to_reference, (w, h),
                             opts, {"source": src, "offset_px": list(off), "offset_abs_px": round(mag, 2)}))
    return out


def ben_common_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """The six BigEarthNet S1/S2 pairs of ``bigearthnet-common``, S1 origin moved by +-8 px."""
    from sarcoreg.core.demo import make_demo_inputs
    from sarcoreg.core.sample_data import bigearthnet_pairs

    rng = np.random.default_rng(seed)
    opts = {**PATCH_OPTIONS, "reference_modality": "optical", "target_modality": "sar",
            "reference_bands": [1, 2, 3]}
    out = []
    for pair in bigearthnet_pairs()[:count]:
        off = _offset(rng, 8.0)
        ref, tgt = make_demo_inputs(folder / pair.name, off, pair)
        _, zero = make_demo_inputs(folder / f"{pair.name}-zero", (0.0, 0.0), pair)
        out.append(BenchCase(f"ben-{pair.name}", "ben_common", ref, tgt, _identity, (120, 120), opts,
                             {"offset_px": list(off)}, zero_target=zero))
    return out


def _npz_pair_cases(folder: Path, files: Sequence[Path], seed: int, group: str, limit: float,
                    opts: dict[str, Any]) -> list[BenchCase]:
    rng = np.random.default_rng(seed)
    out = []
    for f in files:
        data = np.load(f)
        s2, s1 = data["s2_10m"], data["s1"].astype(np.float32)
        off = _offset(rng, limit)
        rgb = s2[[2, 1, 0]]  # B04, B03, B02
        ref = write_geotiff(folder / f"{f.stem}_s2.tif", rgb, nodata=0)
        tgt = write_geotiff(folder / f"{f.stem}_s1.tif", s1, origin=_shifted_origin(off))
        zero = write_geotiff(folder / f"{f.stem}_s1_zero.tif", s1)
        h, w = s1.shape[1:]
        out.append(BenchCase(f"{f.stem}", group, ref, tgt, _identity, (w, h), opts,
                             {"offset_px": list(off)}, zero_target=zero))
    return out


def ben_configilm_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """The 54 BigEarthNet v1/v2 S1/S2 pairs of ``configilm``, S1 origin moved by +-8 px."""
    root = DATA / "s1s2" / "bigearthnet-configilm"
    files = sorted((root / "benv1_pairs").glob("*.npz")) + sorted((root / "benv2_pairs").glob("*.npz"))
    if count < len(files):  # spread a short selection over v1 and v2
        idx = np.linspace(0, len(files) - 1, count).round().astype(int)
        files = [files[i] for i in idx]
    opts = {**PATCH_OPTIONS, "reference_modality": "optical", "target_modality": "sar"}
    return _npz_pair_cases(folder, files, seed, "ben_configilm", 8.0, opts)


def ben_mosaic_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """The three BigEarthNet v2 S1/S2 mosaics (240 x 240 .. 240 x 600), S1 origin moved by +-20 px."""
    files = sorted((DATA / "s1s2" / "bigearthnet-configilm").glob("benv2_mosaic_*.npz"))[:count]
    opts = {**SCENE_OPTIONS, "reference_modality": "optical", "target_modality": "sar"}
    return _npz_pair_cases(folder, files, seed, "ben_mosaic", 20.0, opts)


def osmnet_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """The four OSMNet optical/SAR tiles (256 x 256, 1 m class), SAR origin moved by +-20 px."""
    rng = np.random.default_rng(seed)
    root = DATA / "sar-optical" / "osmnet" / "ims"
    opts = {**SCENE_OPTIONS, "reference_modality": "optical", "target_modality": "sar"}
    out = []
    for k in range(1, min(count, 4) + 1):
        opt = cv2.imread(str(root / f"opt{k}.png"), cv2.IMREAD_GRAYSCALE)
        sar = cv2.imread(str(root / f"sar{k}.png"), cv2.IMREAD_GRAYSCALE)
        off = _offset(rng, 20.0)
        ref = write_geotiff(folder / f"osm{k}_opt.tif", opt)
        tgt = write_geotiff(folder / f"osm{k}_sar.tif", sar, origin=_shifted_origin(off))
        out.append(BenchCase(f"osmnet-{k}", "osmnet", ref, tgt, _identity, (sar.shape[1], sar.shape[0]),
                             opts, {"offset_px": list(off)}))
    return out


def whu_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """WHU-OPT-SAR (1000 x 1000 optical RGB / SAR), SAR origin moved by +-30 px (one case)."""
    if count < 1:
        return []
    rng = np.random.default_rng(seed)
    root = DATA / "sar-optical" / "whu-opt-sar" / "data"
    opt = cv2.imread(str(root / "optical" / "WHU-OPT-SAR.tif"), cv2.IMREAD_COLOR)[:, :, ::-1]
    sar = cv2.imread(str(root / "sar" / "WHU-OPT-SAR.tif"), cv2.IMREAD_GRAYSCALE)
    off = _offset(rng, 30.0)
    ref = write_geotiff(folder / "whu_opt.tif", np.ascontiguousarray(opt.transpose(2, 0, 1)))
    tgt = write_geotiff(folder / "whu_sar.tif", sar, origin=_shifted_origin(off))
    opts = {**SCENE_OPTIONS, "reference_modality": "optical", "target_modality": "sar"}
    return [BenchCase("whu-opt-sar", "whu", ref, tgt, _identity, (sar.shape[1], sar.shape[0]), opts,
                      {"offset_px": list(off)})]


def srif_angles() -> dict[int, float]:
    """Re-estimated SRIF Optical-SAR angles (degrees) from ``gt_corrected/angles.csv``."""
    lines = (DATA / "sar-optical" / "srif" / "gt_corrected" / "angles.csv").read_text().splitlines()
    head = lines[0].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(head, line.split(","), strict=True))
        out[int(row["pair"])] = float(row["angle_deg"])
    return out


def srif_gt(pair: int) -> PointMap:
    """True SAR (target) pixel -> optical (reference) pixel of SRIF pair ``pair``, GDAL convention.

    ``gt_N_full.txt`` is a 2 x 3 OpenCV affine (pixel centres on integers) from optical to SAR;
    in GDAL coordinates that is ``q = M (p - 0.5) + 0.5``, inverted here.
    """
    m = np.loadtxt(DATA / "sar-optical" / "srif" / "gt_corrected" / f"gt_{pair}_full.txt").reshape(2, 3)
    inv = cv2.invertAffineTransform(m)

    def gt(xy: np.ndarray) -> np.ndarray:
        q = np.asarray(xy, np.float64).reshape(-1, 2) - 0.5
        return np.asarray(q @ inv[:, :2].T + inv[:, 2] + 0.5)

    return gt


def srif_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """SRIF optical/SAR JPGs (plain images, pixel mode) with the corrected ground truth.

    Half of the pairs are drawn among those rotated by less than 12 degrees, half among the rest
    (seeded). The optical tile (155-511 px) is the reference, the 256 x 256 SAR the target; the
    true transform has a rotation of 1-90 degrees and a scale of 256 / N. Transform: affine.
    """
    rng = np.random.default_rng(seed)
    angles = srif_angles()
    small = sorted(p for p, a in angles.items() if a < 12.0)
    large = sorted(p for p, a in angles.items() if a >= 12.0)
    n_small = min(len(small), (count + 1) // 2)
    picks = sorted(rng.choice(small, n_small, replace=False).tolist()) + sorted(
        rng.choice(large, count - n_small, replace=False).tolist())
    root = DATA / "sar-optical" / "srif" / "dataset" / "Optical-SAR"
    # Default options (automatic sizes, rotation / scale coarse search in pixel mode): no tuning.
    opts = {"transform": "affine", "reference_modality": "optical", "target_modality": "sar"}
    out = []
    for p in picks:
        ref, tgt = root / f"pair{p}_1.jpg", root / f"pair{p}_2.jpg"
        side = cv2.imread(str(ref), cv2.IMREAD_GRAYSCALE).shape[0]
        out.append(BenchCase(f"srif-{p}", "srif", ref, tgt, srif_gt(p), (256, 256), opts,
                             {"angle_deg": angles[p], "scale": round(256.0 / side, 3)}))
    return out


# ------------------------------------------------------------------------------------------
# Held-out style cases: engine defaults, no per-group options (issue 13's "no tuning" cases)
# ------------------------------------------------------------------------------------------


def _write_gt_tiff(path: Path, array: np.ndarray, geotransform: Sequence[float], crs: str | None) -> Path:
    """Write ``(H, W)`` or ``(B, H, W)`` uint8 with an exact geotransform (and CRS unless None)."""
    from osgeo import gdal, osr

    arr = array[None] if array.ndim == 2 else array
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0], gdal.GDT_Byte)
    ds.SetGeoTransform([float(v) for v in geotransform])
    if crs:
        srs = osr.SpatialReference()
        srs.SetFromUserInput(crs)
        ds.SetProjection(srs.ExportToWkt())
    for b in range(arr.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(arr[b])
    ds = None
    return path


def _moved(gt: Sequence[float], off: tuple[float, float]) -> list[float]:
    """Geotransform whose pixel ``(c, r)`` claims the map position of pixel ``(c + ox, r + oy)``."""
    x0, dx, rx, y0, ry, dy = gt
    return [x0 + off[0] * dx + off[1] * rx, dx, rx, y0 + off[0] * ry + off[1] * dy, ry, dy]


def _polar_offset(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float]:
    mag, ang = float(rng.uniform(lo, hi)), float(rng.uniform(0.0, 2.0 * math.pi))
    return (round(mag * math.cos(ang), 3), round(mag * math.sin(ang), 3))


def volkov_scene(scene_id: str) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(optical (3, H, W) uint8, SAR VH (H, W) uint8, geotransform in EPSG:3395)`` of one scene."""
    root = DATA / "s1s2" / "volkov-1024"
    entry = {e["id"]: e for e in json.loads((root / "index.json").read_text())}[scene_id]
    opt = cv2.imread(str(root / "opt" / f"{scene_id}.webp"), cv2.IMREAD_COLOR)[:, :, ::-1]
    sar = cv2.imread(str(root / "sar" / f"{scene_id}.png"), cv2.IMREAD_GRAYSCALE)
    gt = [float(entry["ulx"]), float(entry["pixel_size_x"]), 0.0, float(entry["uly"]), 0.0,
          float(entry["pixel_size_y"])]
    return np.ascontiguousarray(opt.transpose(2, 0, 1)), sar, gt


def volkov_truth(scene_id: str) -> PointMap | None:
    """SAR pixel -> optical pixel of a volkov scene from its refined alignment, or None.

    The published alignment is off by 2-9 px on average (``training/data/volkov_alignment.json``,
    ``bench/README.md``); the refinement is a dense structural fit (about 400 candidates, verdict
    ``ok``, reproduced by a fresh run on the corrected pair), so it is the best truth we have. It
    favours the structural matcher a little; scenes whose refinement was not reproducible have no
    truth (None).
    """
    from sarcoreg.core.estimation.models import model_from_dict
    from sarcoreg.training.refine_alignment import load_alignment

    entry = load_alignment()["scenes"].get(scene_id, {})
    if not entry.get("refined"):
        return None
    model = model_from_dict(entry["correction"])

    def gt(xy: np.ndarray) -> np.ndarray:
        return np.asarray(model.apply(np.asarray(xy, np.float64).reshape(-1, 2)))

    return gt


def volkov_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """Held-out volkov Sentinel-1/2 scenes (1024 px, 10 m, EPSG:3395), SAR origin moved by 8-40 px.

    The scenes are the held-out block of :data:`sarcoreg.training.splits.VOLKOV_HELD_OUT` (never
    trained on) that have a refined alignment (:func:`volkov_truth`: 9 of the 12). Engine defaults,
    no options. ``selfcons_px`` (the same SAR without the moved origin) is the engine's own
    consistency.
    """
    from sarcoreg.training.splits import VOLKOV_HELD_OUT

    rng = np.random.default_rng(seed)
    out = []
    for sid in sorted(VOLKOV_HELD_OUT):
        truth = volkov_truth(sid)
        if truth is None or len(out) >= count:
            continue
        opt, sar, gt = volkov_scene(sid)
        off = _polar_offset(rng, 8.0, 40.0)
        ref = _write_gt_tiff(folder / f"volkov{sid}_opt.tif", opt, gt, "EPSG:3395")
        tgt = _write_gt_tiff(folder / f"volkov{sid}_sar.tif", sar, _moved(gt, off), "EPSG:3395")
        zero = _write_gt_tiff(folder / f"volkov{sid}_sar0.tif", sar, gt, "EPSG:3395")
        out.append(BenchCase(f"volkov-{sid}", "volkov", ref, tgt, truth, (sar.shape[1], sar.shape[0]), {},
                             {"offset_px": list(off)}, zero_target=zero))
    return out


def vhr_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """The OSS visible/SAR pair VS_1 (600 x 600) written at 3.5 m, SAR origin moved by 20-30 px.

    Engine defaults, no options: the "600 px 3.5 m SAR/optical pair with a 20-30 px georeferencing
    error" of issue 13. The pair is aligned to about 1 px (a dense structural affine fit of the
    unmoved pair is within 1 px of the identity everywhere), so the truth is the identity and
    ``selfcons_px`` isolates the engine's error. Each case draws another offset.
    """
    rng = np.random.default_rng(seed)
    root = DATA / "sar-optical" / "oss" / "Images"
    opt = cv2.imread(str(root / "VS_1_1.tif"), cv2.IMREAD_COLOR)[:, :, ::-1]
    sar = cv2.imread(str(root / "VS_1_2.tif"), cv2.IMREAD_GRAYSCALE)
    gt = [400000.0, 3.5, 0.0, 4500000.0, 0.0, -3.5]
    ref = _write_gt_tiff(folder / "vs1_opt.tif", np.ascontiguousarray(opt.transpose(2, 0, 1)), gt, "EPSG:32633")
    zero = _write_gt_tiff(folder / "vs1_sar0.tif", sar, gt, "EPSG:32633")
    checkpoints = {m: dense_checkpoints(ref, zero, m) for m in ("mi", "structural")}
    out = []
    for k in range(count):
        off = _polar_offset(rng, 20.0, 30.0)
        tgt = _write_gt_tiff(folder / f"vs1_sar{k}.tif", sar, _moved(gt, off), "EPSG:32633")
        out.append(BenchCase(f"vhr-vs1-{k}", "vhr", ref, tgt, _identity, (sar.shape[1], sar.shape[0]), {},
                             {"offset_px": list(off)}, zero_target=zero, checkpoints=checkpoints))
    return out


def dense_checkpoints(reference: Path, target: Path, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Check points of an aligned pair: the inliers of a dense ``method`` run (spacing 24, window 64).

    Returns:
        ``(target px (N, 2), reference px (N, 2))`` of the inliers, each a point where ``method``
        found the target content; their own scatter (about the matcher's per-point error) is part of
        any RMSE measured at them.
    """
    opts = CoregOptions.from_dict({"method": method, "transform": "affine", "spacing": 24, "window": 64,
                                   "search_radius": 8, "coarse": "off"})
    res = coregister(reference, target, None, opts)
    inl = res.tiepoints.inlier
    return np.asarray(res.tiepoints.target_xy[inl], np.float64), np.asarray(res.tiepoints.ref_xy[inl], np.float64)


def checkpoint_rmse(case: BenchCase, method: str, model: PointMap) -> tuple[float, str]:
    """RMSE (px) of ``model`` at the case's check points of a matcher other than ``method``."""
    if not case.checkpoints:
        return float("nan"), ""
    other = next((m for m in ("mi", "structural", "ncc") if m != method and m in case.checkpoints), None)
    if other is None:
        return float("nan"), ""
    tgt, ref = case.checkpoints[other]
    d = np.asarray(model(tgt)) - ref
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1)))), other


def trap_cases(folder: Path, count: int, seed: int) -> list[BenchCase]:
    """Cases that once ended "successful" while far off (issue 13), on real held-out volkov pixels.

    * ``trap-20m-shift``: the SAR resampled to 20 m (another grid), origin moved by 12 reference
      px, ``transform=shift``: the truth maps target pixel ``(c, r)`` to the refined alignment of
      ``(2c, 2r)``.
    The scene is a held-out one with a refined alignment (:func:`volkov_truth`), the truth of
    every case.
    * ``trap-nocrs``: the SAR with a geotransform but no CRS, origin moved by about 30 px.
    * ``trap-100px``: a 100 px offset, coarse stage off, search radius 8 px: no tie point can be
      right, so the run must not be ``ok``.
    * ``trap-few``: a 160 px crop, spacing 40, window 32: a handful of tie points at most.
    Spacing 32 px in the others (the old default of 128 gave too few candidates to fail silently).
    """
    from osgeo import gdal
    from sarcoreg.training.splits import VOLKOV_HELD_OUT

    refined = [i for i in sorted(VOLKOV_HELD_OUT) if volkov_truth(i) is not None]
    sid = refined[seed % len(refined)]
    truth = volkov_truth(sid)
    assert truth is not None
    opt, sar, gt = volkov_scene(sid)
    opt, sar = opt[:, :512, :512].copy(), sar[:512, :512].copy()
    ref = _write_gt_tiff(folder / "trap_opt.tif", opt, gt, "EPSG:3395")
    out: list[BenchCase] = []
    # 20 m target: warp the aligned SAR to 20 m, then move its origin by 12 reference px (6 of its own).
    sar10 = _write_gt_tiff(folder / "trap_sar10.tif", sar, gt, "EPSG:3395")
    sar20 = folder / "trap_sar20.tif"
    gdal.Warp(str(sar20), str(sar10), xRes=abs(gt[1]) * 2, yRes=abs(gt[5]) * 2, resampleAlg="average",
              outputBounds=(gt[0], gt[3] + gt[5] * 512, gt[0] + gt[1] * 512, gt[3]))
    ds = gdal.Open(str(sar20), gdal.GA_Update)
    g20 = ds.GetGeoTransform()
    ds.SetGeoTransform(_moved(g20, (6.0, -4.0)))
    ds = None

    def twice(xy: np.ndarray) -> np.ndarray:
        return truth(np.asarray(xy, np.float64).reshape(-1, 2) * 2.0)

    out.append(BenchCase("trap-20m-shift", "traps", ref, sar20, twice, (256, 256),
                         {"transform": "shift", "spacing": 32},
                         {"offset_px": [12.0, -8.0]}))
    nocrs = _write_gt_tiff(folder / "trap_nocrs.tif", sar, _moved(gt, (21.0, -22.0)), None)
    out.append(BenchCase("trap-nocrs", "traps", ref, nocrs, truth, (512, 512), {"spacing": 32},
                         {"offset_px": [21.0, -22.0]}))
    far = _write_gt_tiff(folder / "trap_far.tif", sar, _moved(gt, (100.0, 0.0)), "EPSG:3395")
    out.append(BenchCase("trap-100px", "traps", ref, far, truth, (512, 512),
                         {"coarse": False, "search_radius": 8, "spacing": 32}, {"offset_px": [100.0, 0.0]}))
    small_ref = _write_gt_tiff(folder / "trap_opt160.tif", opt[:, :160, :160].copy(), gt, "EPSG:3395")
    small = _write_gt_tiff(folder / "trap_sar160.tif", sar[:160, :160].copy(), _moved(gt, (5.0, 3.0)), "EPSG:3395")
    out.append(BenchCase("trap-few", "traps", small_ref, small, truth, (160, 160),
                         {"spacing": 40, "window": 32, "search_radius": 8},
                         {"offset_px": [5.0, 3.0]}))
    return out[:count]


#: Group name -> (builder, full count, quick count).
GROUPS: dict[str, tuple[Callable[[Path, int, int], list[BenchCase]], int, int]] = {
    "optical_shift": (optical_shift_cases, 12, 2),
    "sar_like": (sar_like_cases, 24, 3),
    "ben_common": (ben_common_cases, 6, 2),
    "ben_configilm": (ben_configilm_cases, 54, 3),
    "ben_mosaic": (ben_mosaic_cases, 3, 1),
    "osmnet": (osmnet_cases, 4, 1),
    "whu": (whu_cases, 1, 1),
    "srif": (srif_cases, 24, 2),
    "volkov": (volkov_cases, 12, 2),
    "vhr": (vhr_cases, 4, 1),
    "traps": (trap_cases, 4, 4),
}


def build_group(group: str, folder: Path, quick: bool = False, seed: int = 0,
                count: int | None = None) -> list[BenchCase]:
    """Write the rasters of one group into ``folder`` and return its cases.

    Args:
        group: A key of :data:`GROUPS`.
        folder: Scratch folder (created).
        quick: Use the group's quick count.
        seed: Seed of everything drawn.
        count: Override the number of cases.

    Raises:
        ValueError: unknown group.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown benchmark group '{group}'; choose from {', '.join(GROUPS)}")
    builder, full, short = GROUPS[group]
    sub = Path(folder) / group
    sub.mkdir(parents=True, exist_ok=True)
    # Each group draws from its own stream, so that two groups never share their offsets.
    group_seed = seed * 100 + list(GROUPS).index(group)
    return builder(sub, count if count is not None else (short if quick else full), group_seed)


# ------------------------------------------------------------------------------------------
# Running and scoring
# ------------------------------------------------------------------------------------------


#: A run more than this far from the truth (ACE, px) must not end with the verdict ``ok``.
WRONG_PX = 3.0


def _true_rmse(model: PointMap, truth: PointMap, w: float, h: float, n: int = 11) -> float:
    """RMS distance (px) between ``model`` and ``truth`` over an ``n`` x ``n`` grid on the target."""
    u, v = np.meshgrid(np.linspace(0.0, w, n), np.linspace(0.0, h, n))
    pts = np.column_stack([u.ravel(), v.ravel()])
    d = np.asarray(model(pts)) - np.asarray(truth(pts))
    return float(np.sqrt(np.mean(np.sum(d * d, axis=1))))


def run_case(case: BenchCase, method: str, **overrides: Any) -> dict[str, Any]:
    """Co-register one case with ``method`` (no outputs written) and score it.

    Returns:
        A flat row: ``case, group, method, ace_px, success, rmse_px, n_inliers, n_candidates,
        time_s, peak_rss_mb, coarse_px, error`` plus the case's ``info``, and ``selfcons_px``
        (ACE between the estimates with and without the offset) for cases with a
        ``zero_target``; ``time_s`` and the memory are those of the offset run only. A run that
        raises counts as a failure with ``ace_px`` NaN and the message in ``error``.
    """
    opts = CoregOptions.from_dict({**case.options, "method": method, **overrides})
    peak_rss_reset()
    t0 = time.perf_counter()
    row: dict[str, Any] = {"case": case.name, "group": case.group, "method": method}
    if case.zero_target is not None:
        row["selfcons_px"] = float("nan")
    try:
        res = coregister(case.reference, case.target, None, opts)
        elapsed = time.perf_counter() - t0
        peak = peak_rss_mb()
        w, h = case.target_size
        ace = corner_error(res.target_to_reference, case.gt_target_to_reference, float(w), float(h))
        coarse = res.report.get("coarse", {})
        if case.zero_target is not None:
            try:
                res0 = coregister(case.reference, case.zero_target, None, opts)
                row["selfcons_px"] = corner_error(res.target_to_reference, res0.target_to_reference,
                                                  float(w), float(h))
            except ValueError:
                row["selfcons_px"] = float("nan")
        status = str(res.report.get("status", "ok"))  # engines without a verdict: a finished run is "ok"
        cv = res.report.get("rmse_cv_px")
        true_rmse = _true_rmse(res.target_to_reference, case.gt_target_to_reference, float(w), float(h))
        row.update(status=status, rmse_cv_px=float(cv) if cv is not None else float("nan"), true_rmse_px=true_rmse,
                   wrong_ok=bool(status == "ok" and not ace < WRONG_PX))
        if case.checkpoints:
            row["cp_rmse_px"], row["cp_from"] = checkpoint_rmse(case, method, res.target_to_reference)
        row.update(ace_px=ace, success=bool(ace < case.success_px), rmse_px=float(res.fit.rmse_px),
                   n_inliers=int(res.fit.n_inliers), n_candidates=int(res.report["n_candidates"]),
                   coarse_px=coarse.get("offset_px") if coarse.get("used") else None, error="")
    except Exception as exc:  # a failed case is a result, not a crash of the benchmark
        elapsed = time.perf_counter() - t0
        peak = peak_rss_mb()
        msg = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, ValueError):
            msg += " | " + traceback.format_exc(limit=3).replace("\n", " ")
        row.update(status="failed", rmse_cv_px=float("nan"), true_rmse_px=float("nan"), wrong_ok=False)
        row.update(ace_px=float("nan"), success=False, rmse_px=float("nan"), n_inliers=0,
                   n_candidates=0, coarse_px=None, error=msg)
    row.update(time_s=elapsed, peak_rss_mb=peak, success_px=case.success_px, **case.info)
    return row


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (group, method): success rate, ACE, RMSE, time and memory.

    ``ace_med``/``ace_p90`` are over all cases (a failed run counts as infinite ACE);
    ``rmse_med`` over the runs that finished; ``peak_mb`` is the largest per-case peak.
    """
    keys: list[tuple[str, str]] = []
    for r in rows:
        if (r["group"], r["method"]) not in keys:
            keys.append((r["group"], r["method"]))
    out = []
    for group, method in keys:
        sel = [r for r in rows if r["group"] == group and r["method"] == method]
        ace = np.array([r["ace_px"] if np.isfinite(r["ace_px"]) else np.inf for r in sel])
        rmse = np.array([r["rmse_px"] for r in sel if np.isfinite(r["rmse_px"])])
        ok = sum(bool(r["success"]) for r in sel)
        out.append({
            "group": group,
            "method": method,
            "n": len(sel),
            "success": f"{ok}/{len(sel)}",
            "success_pct": 100.0 * ok / len(sel),
            "thr_px": sel[0]["success_px"],
            "ace_med": float(np.median(ace)),
            "ace_p90": float(np.percentile(ace, 90)) if np.isfinite(ace).all() else
            float(np.sort(ace)[int(math.ceil(0.9 * len(ace))) - 1]),
            "rmse_med": float(np.median(rmse)) if len(rmse) else float("nan"),
            "time_mean_s": float(np.mean([r["time_s"] for r in sel])),
            "peak_mb": float(max(r["peak_rss_mb"] for r in sel)),
            "failed_runs": sum(bool(r["error"]) for r in sel),
            "verdicts": "/".join(str(sum(r.get("status") == v for r in sel)) for v in ("ok", "uncertain", "failed")),
            "wrong_ok": sum(bool(r.get("wrong_ok")) for r in sel),
            "cv_ratio_med": _median_ratio(sel),
        })
        cons = np.array([r.get("selfcons_px", np.nan) for r in sel], float)
        if "selfcons_px" in sel[0]:
            cons = np.where(np.isfinite(cons), cons, np.inf)
            out[-1]["selfcons_med"] = float(np.median(cons))
            out[-1]["selfcons_ok"] = f"{int((cons < 1.0).sum())}/{len(sel)}"
        if "cp_rmse_px" in sel[0]:
            cp = np.array([r.get("cp_rmse_px", np.nan) for r in sel], float)
            out[-1]["cp_rmse_med"] = float(np.median(np.where(np.isfinite(cp), cp, np.inf)))
    return out


def _median_ratio(rows: Sequence[dict[str, Any]]) -> float:
    """Median of ``rmse_cv_px / true_rmse_px`` over the finished runs that have both."""
    ratios = [r["rmse_cv_px"] / r["true_rmse_px"] for r in rows
              if np.isfinite(r.get("rmse_cv_px", np.nan)) and r.get("true_rmse_px", 0) > 0]
    return float(np.median(ratios)) if ratios else float("nan")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, list):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], markdown: bool = False) -> str:
    """Rows as an aligned plain-text (or markdown) table of ``columns``."""
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    if markdown:
        head = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        body = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in cells]
        return "\n".join([head, sep, *body])
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([head, "-" * len(head), *body])


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as JSON (NaN/inf written as null)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (np.floating, np.integer)):
            return clean(v.item())
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return json.dumps([clean(dict(r)) for r in rows], indent=1)
