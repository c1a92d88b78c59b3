r"""Alignment refinement of the ``s1s2/volkov-1024`` Sentinel-1/2 scenes, and aligned-pair loaders.

The authors of the data set aligned each SAR / optical pair by hand-picked control points and a
projective correction ("mostly sub-pixel, locally up to about 2 px"); the structural matcher finds
residual offsets of a few pixels and affine scale terms up to about 1 % on some scenes. Training
positives must be pixel-exact, so each scene is refined here once and the correction is stored in
the repository (:data:`ALIGNMENT_JSON`, our own derived numbers; the images stay in
``../shared/data``).

How a scene is refined (:func:`refine_scene`):

1. the optical (RGB) and the SAR (VH) are written as temporary GeoTIFFs on the **same** grid
   (EPSG:3395, the scene's geotransform from ``index.json``);
2. the engine co-registers SAR onto optical with the structural matcher on a dense grid
   (:class:`RefineSettings`: spacing 48 px, window 96 px, so 400 candidates), once with an
   ``affine`` and once with a ``poly2`` transform;
3. only a run whose verdict is ``ok`` is kept. ``poly2`` replaces ``affine`` only when it is
   justified: its cross-validated error ``rmse_cv_px`` is at least :attr:`RefineSettings.poly2_min_gain`
   (10 %) lower than the affine one, it keeps at least as many inliers (so it does not win by
   dropping the hard tie points) and it moves no pixel more than 2 px further than the affine
   fit does (no quadratic extrapolation into the corners without tie points). No ``ok`` run:
   the scene is stored as **unrefined**, with the verdicts and reasons of both runs.

4. the kept correction is checked (:func:`check_entry`): the SAR is resampled through it, the
   pair cropped to the valid interior and co-registered again (affine); while that fresh run
   still finds a correction moving the image by :attr:`RefineSettings.max_residual_px` (0.5 px)
   or more on average, the residual is composed into the correction and checked again (at most
   two steps; the most reproducible correction is kept). A correction that never gets below
   0.5 px is stored for reference but the scene is **unrefined**.

The stored correction maps an original SAR pixel to the optical pixel where its content belongs
(GDAL pixel convention: the centre of pixel ``[i, j]`` is ``(j + 0.5, i + 0.5)``); it is the
engine's ``fit.model`` (identical grids, so the engine's correction in reference-grid pixels *is*
the SAR -> optical pixel map). Affine scenes also carry the 2 x 3 matrix in GDAL and in OpenCV
(pixel centres on integers) convention.

Loading aligned pairs for training:

* :func:`aligned_pair` gives one scene as pixel-aligned ``(optical, SAR, valid)`` arrays on the
  optical grid (the SAR is resampled through the correction);
* :func:`volkov_training_pairs` yields only scenes that are **not** held out
  (:data:`sarcoreg.training.splits.VOLKOV_HELD_OUT`) **and** were refined ``ok``: the one
  function training data loaders should use. Held-out scenes are refined and stored too (the
  benchmarks may use their corrections), but this function never yields them.

Command line (a few minutes for the 58 scenes on one thread)::

    sarcoreg-train refine-volkov [--data ../shared/data/s1s2/volkov-1024] [--out training/data/volkov_alignment.json]
    python -m sarcoreg.training.refine_alignment --verify 003 156   # residual check of stored corrections
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sarcoreg.training.splits import volkov_is_held_out, volkov_scene_ids

__all__ = [
    "ALIGNMENT_JSON",
    "DEFAULT_VOLKOV_ROOT",
    "AlignedScene",
    "RefineSettings",
    "aligned_pair",
    "check_entry",
    "compose_correction",
    "correction_displacement",
    "gdal_to_opencv_affine",
    "load_alignment",
    "main",
    "plot_summary",
    "read_volkov_scene",
    "refine_all",
    "refine_scene",
    "residual_after_correction",
    "summarise",
    "source_coordinates",
    "volkov_training_pairs",
]

#: The data set beside the repository (read-only).
DEFAULT_VOLKOV_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "s1s2" / "volkov-1024"
#: The stored corrections of every scene (written by :func:`main`).
ALIGNMENT_JSON = Path(__file__).resolve().parent / "data" / "volkov_alignment.json"
#: CRS of the geotransforms in ``index.json``.
VOLKOV_CRS = "EPSG:3395"


@dataclass
class RefineSettings:
    """Engine options of the refinement and the model choice.

    Attributes:
        spacing: Tie-point grid spacing, pixels (48: 20 x 20 = 400 candidates per scene).
        window: Template size, pixels (96 gave about 1.5 times the tie points of the automatic
            64 and steadier affine terms on the scenes tried).
        search_radius: Search radius after the coarse offset, pixels: the stored alignment is
            good to a few px, a 1 % scale moves the edges by about 5 px.
        kinds: Transforms tried, in order; the first is the fallback.
        poly2_min_gain: ``poly2`` replaces ``affine`` only when its ``rmse_cv_px`` is lower by at
            least this fraction (and it keeps at least as many inliers).
        poly2_max_extra_px: ... and its largest displacement over the image exceeds the affine one
            by at most this (px): the quadratic terms are fitted where the tie points are (often
            the flat half of a scene) and a larger excess is extrapolation into the rest.
        max_residual_px: The check: a fresh structural run (affine) on the corrected pair must
            find a correction whose mean displacement over the image is below this (px), else the
            correction is not reproducible and the scene is stored as unrefined. 0.5 px: the
            tie points of these scenes scatter by about 1 px (``rmse_cv_px``), and a fresh run
            on the resampled, re-cropped pair picks a somewhat different inlier set.
        max_iterations: While the fresh run still finds a residual, compose it into the
            correction and check again, at most this many times (:func:`check_entry`).
        displacement_step: Grid step (px) of the displacement statistics over the image.
        seed: Seed of the engine's robust fit.
        max_split_disagreement_px: The verdict's split-half threshold for these runs. The stored
            alignment (``training/data/volkov_alignment.json``) was made before the verdict had
            that rule, so the refinement runs without it (1e9 px) and the file still reproduces.
            With the rule's default (5 px) some stored scenes would be refused (scene 003: the two
            halves of its affine's tie points are 5.3 px apart at the corners); regenerating the
            file with it is open work, and would change the volkov benchmark's truths.
    """

    spacing: int = 48
    window: int = 96
    search_radius: int = 12
    kinds: tuple[str, ...] = ("affine", "poly2")
    poly2_min_gain: float = 0.10
    poly2_max_extra_px: float = 2.0
    max_residual_px: float = 0.5
    max_iterations: int = 2
    displacement_step: int = 8
    seed: int = 0
    max_split_disagreement_px: float = 1e9

    def engine_options(self, kind: str) -> Any:
        """The :class:`~sarcoreg.core.engine.CoregOptions` of one run with transform ``kind``."""
        from sarcoreg.core.engine import CoregOptions

        return CoregOptions(
            method="structural", transform=kind, spacing=self.spacing, window=self.window,
            search_radius=self.search_radius, seed=self.seed,
            verdict={"max_split_disagreement_px": self.max_split_disagreement_px},
        )


@dataclass
class AlignedScene:
    """One scene with its SAR resampled onto the optical grid.

    Attributes:
        scene_id: Scene id (``"003"``).
        optical: ``(H, W, 3)`` uint8 RGB (B4, B3, B2), unchanged.
        sar: ``(H, W)`` uint8 VH intensity, resampled onto the optical grid through the correction.
        valid: ``(H, W)`` bool: the SAR value comes from inside the SAR image (a border a few px
            wide is False where the correction moves content in from outside).
        kind: The correction's kind (``affine``, ``poly2``) or ``None`` for an unrefined scene.
        held_out: True for :data:`~sarcoreg.training.splits.VOLKOV_HELD_OUT` scenes.
    """

    scene_id: str
    optical: np.ndarray
    sar: np.ndarray
    valid: np.ndarray
    kind: str | None
    held_out: bool


# ------------------------------------------------------------------------------------------
# Reading and writing the scenes
# ------------------------------------------------------------------------------------------


def _index(root: Path) -> dict[str, dict[str, Any]]:
    entries = json.loads((Path(root) / "index.json").read_text(encoding="utf-8"))
    return {str(e["id"]): e for e in entries}


def read_volkov_scene(scene_id: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Read one scene as stored.

    Args:
        scene_id: Scene id, e.g. ``"003"``.
        root: The ``volkov-1024`` folder (default :data:`DEFAULT_VOLKOV_ROOT`).

    Returns:
        ``(optical (H, W, 3) uint8 RGB, SAR (H, W) uint8, GDAL geotransform in EPSG:3395)``.

    Raises:
        FileNotFoundError: An image is missing or unreadable.
        KeyError: ``scene_id`` is not in ``index.json``.
    """
    folder = Path(root) if root is not None else DEFAULT_VOLKOV_ROOT
    entry = _index(folder)[str(scene_id)]
    bgr = cv2.imread(str(folder / "opt" / f"{scene_id}.webp"), cv2.IMREAD_COLOR)
    sar = cv2.imread(str(folder / "sar" / f"{scene_id}.png"), cv2.IMREAD_GRAYSCALE)
    if bgr is None or sar is None:
        raise FileNotFoundError(f"volkov scene {scene_id}: cannot read opt/{scene_id}.webp or sar/{scene_id}.png "
                                f"under {folder}")
    gt = [float(entry["ulx"]), float(entry["pixel_size_x"]), 0.0, float(entry["uly"]), 0.0,
          float(entry["pixel_size_y"])]
    return np.ascontiguousarray(bgr[:, :, ::-1]), sar, gt


def _write_geotiff(path: Path, array: np.ndarray, geotransform: Sequence[float], crs: str = VOLKOV_CRS) -> Path:
    """Write ``(H, W)`` or ``(H, W, B)`` uint8 as a GeoTIFF with this geotransform and CRS."""
    from osgeo import gdal, osr

    bands = array[:, :, None] if array.ndim == 2 else array
    h, w, nb = bands.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, nb, gdal.GDT_Byte)
    ds.SetGeoTransform([float(v) for v in geotransform])
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(nb):
        ds.GetRasterBand(b + 1).WriteArray(np.ascontiguousarray(bands[:, :, b]))
    ds.FlushCache()
    ds = None
    return path


# ------------------------------------------------------------------------------------------
# Corrections: displacement, conventions, resampling
# ------------------------------------------------------------------------------------------


def _model(d: dict[str, Any]) -> Any:
    from sarcoreg.core.estimation.models import model_from_dict

    return model_from_dict(d)


def correction_displacement(model: Any, shape: tuple[int, int], step: int = 8) -> dict[str, Any]:
    """How far a correction moves the SAR content, over the whole image.

    Args:
        model: A geometric model (``apply((N, 2)) -> (N, 2)``) mapping SAR pixels to optical pixels.
        shape: ``(H, W)`` of the SAR image.
        step: Grid step in pixels (pixel centres ``step / 2``, ``3 step / 2`` ...; corners included).

    Returns:
        ``mean_px``, ``median_px``, ``max_px`` of ``|model(p) - p|`` over the grid, and ``centre_px``
        (the ``[dx, dy]`` at the image centre).
    """
    h, w = shape
    xs = np.unique(np.r_[np.arange(0.5, w, step), w - 0.5])
    ys = np.unique(np.r_[np.arange(0.5, h, step), h - 0.5])
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    d = model.apply(pts) - pts
    mag = np.hypot(d[:, 0], d[:, 1])
    centre = np.array([[w / 2.0, h / 2.0]])
    dc = (model.apply(centre) - centre)[0]
    return {"mean_px": float(mag.mean()), "median_px": float(np.median(mag)), "max_px": float(mag.max()),
            "centre_px": [float(dc[0]), float(dc[1])]}


def gdal_to_opencv_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2 x 3 OpenCV matrix (pixel centres on integers) of a 3 x 3 GDAL-convention pixel matrix.

    GDAL positions are OpenCV positions + 0.5, so ``M_cv = T(-0.5) M T(+0.5)``; use it with
    ``cv2.warpAffine(sar, M_cv, (W, H))`` to put the SAR on the optical grid.
    """
    m = np.asarray(matrix, dtype=np.float64)
    t = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    ti = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    return (ti @ m @ t)[:2]


def source_coordinates(
    correction: dict[str, Any], shape: tuple[int, int], iterations: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """For every optical pixel, the SAR position whose content belongs there (OpenCV convention).

    Inverts the SAR -> optical correction ``T`` at the optical pixel centres ``q`` by the fixed
    point ``p <- p + (q - T(p))`` from ``p = q`` (``T`` is within about 1 % of a shift, so each
    step shrinks the error about a hundredfold); exact for every model kind, polynomials included.

    Args:
        correction: A model dict (:meth:`GeometricModel.to_dict`), SAR pixel -> optical pixel.
        shape: ``(H, W)`` of the optical grid.
        iterations: Fixed-point steps.

    Returns:
        ``(map_x, map_y)`` float32 ``(H, W)`` for :func:`cv2.remap` (pixel centres on integers).
    """
    model = _model(correction)
    h, w = shape
    gx, gy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    q = np.column_stack([gx.ravel(), gy.ravel()])
    p = q.copy()
    for _ in range(iterations):
        p += q - model.apply(p)
    p -= 0.5
    return p[:, 0].reshape(h, w).astype(np.float32), p[:, 1].reshape(h, w).astype(np.float32)


def _resample_sar(sar: np.ndarray, correction: dict[str, Any] | None, shape: tuple[int, int],
                  interpolation: int) -> tuple[np.ndarray, np.ndarray]:
    """SAR resampled onto the optical grid through ``correction`` and its validity mask."""
    h, w = shape
    if correction is None:
        return sar.copy(), np.ones(shape, bool)
    mx, my = source_coordinates(correction, shape)
    out = np.asarray(cv2.remap(sar, mx, my, interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=(0,)))
    sh, sw = sar.shape[:2]
    valid = (mx >= 0) & (my >= 0) & (mx <= sw - 1) & (my <= sh - 1)
    return out, valid


# ------------------------------------------------------------------------------------------
# Refinement
# ------------------------------------------------------------------------------------------


def _run_summary(res: Any, report: dict[str, Any], shape: tuple[int, int], step: int) -> dict[str, Any]:
    """Verdict and quality numbers of one engine run (``res`` may be None for a failed run)."""
    out: dict[str, Any] = {
        "status": report.get("status", "failed"),
        "reasons": list(report.get("reasons", [])),
        "n_tiepoints": report.get("n_tiepoints"),
        "n_inliers": report.get("n_inliers"),
        "rmse_px": report.get("rmse_px"),
        "rmse_cv_px": report.get("rmse_cv_px"),
    }
    checks = (report.get("verdict") or {}).get("checks", {})
    for key in ("inlier_fraction", "hull_fraction"):
        if key in checks:
            out[key] = checks[key]
    if res is not None:
        out["displacement"] = correction_displacement(res.fit.model, shape, step)
    return out


def _engine_run(ref: Path, tgt: Path, kind: str, settings: RefineSettings,
                shape: tuple[int, int]) -> tuple[Any, dict[str, Any]]:
    """One engine run: ``(result or None, summary)``; a failed verdict is a summary, not an error."""
    from sarcoreg.core.engine import coregister
    from sarcoreg.core.verdict import CoregistrationFailed

    try:
        res = coregister(ref, tgt, None, settings.engine_options(kind))
    except CoregistrationFailed as exc:
        report = dict(exc.report or {})
        report.setdefault("status", "failed")
        report["reasons"] = list(exc.reasons)
        return None, _run_summary(None, report, shape, settings.displacement_step)
    # Both rasters share one grid: the correction must be the SAR pixel -> optical pixel map.
    probe = np.array([[0.5, 0.5], [shape[1] - 0.5, shape[0] - 0.5]])
    if res.grid is not None and not np.allclose(res.grid.target_to_grid(probe), probe, atol=1e-6):
        raise RuntimeError("SAR and optical were written on one grid but the engine's common grid differs")
    return res, _run_summary(res, res.report, shape, settings.displacement_step)


def _choose(runs: dict[str, tuple[Any, dict[str, Any]]], settings: RefineSettings) -> tuple[str | None, str]:
    """The kind kept (or None) and a sentence saying why."""
    ok = [k for k in settings.kinds if k in runs and runs[k][1]["status"] == "ok"]
    if not ok:
        parts = [f"{k}: {runs[k][1]['status']} ({'; '.join(runs[k][1]['reasons']) or 'no reason given'})"
                 for k in settings.kinds if k in runs]
        return None, "no run with verdict ok: " + " | ".join(parts)
    first = settings.kinds[0]
    if "poly2" in ok and first in ok and first != "poly2":
        a, p = runs[first][1], runs["poly2"][1]
        gain = 1.0 - float(p["rmse_cv_px"]) / float(a["rmse_cv_px"])
        spread = p["displacement"]["max_px"] - a["displacement"]["max_px"]
        if (gain >= settings.poly2_min_gain and int(p["n_inliers"]) >= int(a["n_inliers"])
                and spread <= settings.poly2_max_extra_px):
            return "poly2", (f"poly2 rmse_cv {p['rmse_cv_px']:.3f} px is {100 * gain:.0f} % below affine "
                             f"{a['rmse_cv_px']:.3f} px with {p['n_inliers']} >= {a['n_inliers']} inliers")
        return first, (f"{first} kept: poly2 rmse_cv {p['rmse_cv_px']:.3f} px vs {a['rmse_cv_px']:.3f} px "
                       f"({100 * gain:.0f} % gain), {p['n_inliers']} vs {a['n_inliers']} inliers, max "
                       f"displacement {p['displacement']['max_px']:.1f} vs {a['displacement']['max_px']:.1f} px "
                       "does not justify it")
    kind = ok[0]
    if kind == "poly2" and first != "poly2" and first in runs and "displacement" in runs[first][1]:
        # The first kind ran but is not ok: the same guard against quadratic extrapolation.
        excess = runs[kind][1]["displacement"]["max_px"] - runs[first][1]["displacement"]["max_px"]
        if excess > settings.poly2_max_extra_px:
            p_max, a_max = runs[kind][1]["displacement"]["max_px"], runs[first][1]["displacement"]["max_px"]
            return None, (f"poly2 is the only run with verdict ok but moves the image up to {p_max:.1f} px where "
                          f"{first} ({runs[first][1]['status']}) moves it up to {a_max:.1f} px: quadratic "
                          "extrapolation, not kept")
    others = [f"{k}: {runs[k][1]['status']}" for k in settings.kinds if k in runs and k != kind]
    return kind, f"{kind} is the only run with verdict ok" + (f" ({', '.join(others)})" if others else "")


def refine_scene(
    scene_id: str, root: str | Path | None = None, settings: RefineSettings | None = None, *, check: bool = True
) -> dict[str, Any]:
    """Refine one scene's alignment with the engine (see the module docstring).

    Args:
        scene_id: Scene id, e.g. ``"003"``.
        root: The ``volkov-1024`` folder (default :data:`DEFAULT_VOLKOV_ROOT`).
        settings: :class:`RefineSettings` (default: the documented ones).
        check: Run :func:`check_entry` on a kept correction (one more engine run) and store the
            scene as unrefined when the correction is not reproducible.

    Returns:
        The scene's JSON entry: ``refined`` (bool), ``why`` (the choice or why unrefined),
        ``kind``, ``correction`` (SAR pixel -> optical pixel model dict, GDAL convention),
        ``inverse``, ``matrix_gdal_3x3`` / ``matrix_opencv_2x3`` (affine only), ``status``,
        ``reasons``, ``n_inliers``, ``n_tiepoints``, ``rmse_px``, ``rmse_cv_px``, ``displacement``
        (mean / median / max / centre in px over the image) and ``runs`` (every run's summary).
    """
    settings = settings or RefineSettings()
    folder = Path(root) if root is not None else DEFAULT_VOLKOV_ROOT
    opt, sar, gt = read_volkov_scene(scene_id, folder)
    shape = (int(sar.shape[0]), int(sar.shape[1]))
    runs: dict[str, tuple[Any, dict[str, Any]]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"volkov{scene_id}_") as tmp:
        ref = _write_geotiff(Path(tmp) / "opt.tif", opt, gt)
        tgt = _write_geotiff(Path(tmp) / "sar.tif", sar, gt)
        for kind in settings.kinds:
            runs[kind] = _engine_run(ref, tgt, kind, settings, shape)
    chosen, why = _choose(runs, settings)
    entry: dict[str, Any] = {
        "id": str(scene_id),
        "tile": _index(folder)[str(scene_id)].get("tile"),
        "held_out": volkov_is_held_out(scene_id),
        "shape": list(shape),
        "refined": chosen is not None,
        "why": why,
        "kind": chosen,
        "runtime_s": round(time.perf_counter() - t0, 2),
        "runs": {k: v[1] for k, v in runs.items()},
    }
    if chosen is None:
        return entry
    res, summary = runs[chosen]
    entry.update({
        "status": summary["status"],
        "reasons": summary["reasons"],
        "n_tiepoints": summary["n_tiepoints"],
        "n_inliers": summary["n_inliers"],
        "rmse_px": summary["rmse_px"],
        "rmse_cv_px": summary["rmse_cv_px"],
        "inlier_fraction": summary.get("inlier_fraction"),
        "hull_fraction": summary.get("hull_fraction"),
        "displacement": summary["displacement"],
        "correction": res.fit.model.to_dict(),
        "inverse": res.fit.inverse.to_dict(),
    })
    if chosen == "affine":
        m = res.fit.model.matrix_px
        entry["matrix_gdal_3x3"] = m.tolist()
        entry["matrix_opencv_2x3"] = gdal_to_opencv_affine(m).tolist()
    if check:
        check_entry(entry, folder, settings)
    return entry


def compose_correction(correction: dict[str, Any], residual: dict[str, Any], crop: Sequence[int],
                       shape: tuple[int, int]) -> tuple[Any, Any]:
    """``residual`` after ``correction``, refitted as one model of the correction's kind.

    The residual correction was fitted on the corrected pair cropped to ``crop``
    (``[r0, r1, c0, c1]``), so it is shifted back to the full optical grid first. Affine after
    affine is affine and affine after poly2 is poly2, so the least-squares refit on a dense grid
    of the image is exact up to rounding.

    Args:
        correction: SAR pixel -> optical pixel model dict.
        residual: Model dict of the residual run (cropped corrected SAR -> cropped optical).
        crop: ``[r0, r1, c0, c1]`` of the residual run.
        shape: ``(H, W)`` of the SAR image.

    Returns:
        ``(model, inverse)`` of the composed correction.
    """
    from sarcoreg.core.estimation import fit_transform

    t, r = _model(correction), _model(residual)
    h, w = shape
    gx, gy = np.meshgrid(np.linspace(0.0, w, 33), np.linspace(0.0, h, 33))
    p = np.column_stack([gx.ravel(), gy.ravel()])
    off = np.array([float(crop[2]), float(crop[0])])
    q = r.apply(t.apply(p) - off) + off
    fit = fit_transform(p, q, t.kind, threshold_px=1e6)
    return fit.model, fit.inverse


def check_entry(entry: dict[str, Any], root: str | Path | None = None,
                settings: RefineSettings | None = None) -> dict[str, Any]:
    """Check a kept correction in place, refining it while a fresh run still finds a residual.

    Runs :func:`residual_after_correction`; while its verdict is ``ok`` but its correction still
    moves the image by :attr:`RefineSettings.max_residual_px` or more on average, the residual
    is composed into the correction (:func:`compose_correction`) and checked again, at most
    :attr:`RefineSettings.max_iterations` times. The last run is stored as ``entry["check"]``
    (with ``passed``, ``iterations`` and the ``history`` of residual means). A correction that
    does not pass is kept in the entry for reference, but the scene becomes unrefined
    (``refined`` False, ``why`` says so): on such scenes (mostly hills, where SAR terrain
    distortion is not smooth) the robust fit picks a different subset of tie points each time,
    so no single smooth correction is pixel-exact.

    Args:
        entry: A refined scene entry from :func:`refine_scene` (``check=False``).
        root: The ``volkov-1024`` folder.
        settings: :class:`RefineSettings`.

    Returns:
        The same ``entry``.
    """
    settings = settings or RefineSettings()
    if not entry.get("correction"):
        return entry
    sid = str(entry["id"])
    shape = (int(entry["shape"][0]), int(entry["shape"][1]))
    history: list[float] = []
    passed = False
    res: dict[str, Any] = {}
    keys = ("correction", "inverse", "displacement", "matrix_gdal_3x3", "matrix_opencv_2x3")
    best: tuple[float, dict[str, Any], dict[str, Any]] | None = None  # (residual, entry fields, run)
    for k in range(settings.max_iterations + 1):
        try:
            res = residual_after_correction(sid, root, {"scenes": {sid: {**entry, "refined": True}}}, settings)
        except ValueError as exc:  # no valid interior left after the correction
            res = {"status": "failed", "reasons": [str(exc)]}
        d = res.get("displacement")
        if res["status"] != "ok" or d is None:
            break
        history.append(round(float(d["mean_px"]), 4))
        if best is None or d["mean_px"] < best[0]:
            best = (float(d["mean_px"]), {key: entry[key] for key in keys if key in entry}, res)
        passed = d["mean_px"] < settings.max_residual_px
        if passed or k == settings.max_iterations:
            break
        model, inverse = compose_correction(entry["correction"], res["model"], res["crop"], shape)
        entry["correction"], entry["inverse"] = model.to_dict(), inverse.to_dict()
        entry["displacement"] = correction_displacement(model, shape, settings.displacement_step)
        if entry["kind"] == "affine":
            entry["matrix_gdal_3x3"] = model.matrix_px.tolist()
            entry["matrix_opencv_2x3"] = gdal_to_opencv_affine(model.matrix_px).tolist()
    if best is not None and not passed:  # the steps did not converge: keep the most reproducible one
        entry.update(best[1])
        res = best[2]
    res.pop("model", None)
    entry["check"] = {**res, "passed": bool(passed), "iterations": max(0, len(history) - 1), "history": history}
    if not passed:
        d = res.get("displacement")
        entry["refined"] = False
        entry["why"] = ("correction not reproducible: a fresh structural run on the corrected pair "
                        + (f"is {res['status']}" if d is None or res["status"] != "ok" else
                           f"still finds mean {d['mean_px']:.2f} / max {d['max_px']:.2f} px")
                        + f" after {max(0, len(history) - 1)} refinement step(s) (needs ok and mean < "
                        + f"{settings.max_residual_px:g} px); {entry['kind']} run: {entry['why']}")
    return entry


def refine_all(root: str | Path | None = None, ids: Iterable[str] | None = None,
               settings: RefineSettings | None = None,
               log: Callable[[str], None] | None = None, check: bool = True) -> dict[str, Any]:
    """Refine every scene (or ``ids``) and return the whole JSON document.

    Args:
        root: The ``volkov-1024`` folder (default :data:`DEFAULT_VOLKOV_ROOT`).
        ids: Scene ids (default: every scene of ``index.json``, in file order).
        settings: :class:`RefineSettings`.
        log: Called with one line per scene.
        check: Check each kept correction (:func:`check_entry`).

    Returns:
        ``{"dataset", "convention", "settings", "summary", "scenes": {id: entry}}``.
    """
    settings = settings or RefineSettings()
    folder = Path(root) if root is not None else DEFAULT_VOLKOV_ROOT
    scene_ids = list(ids) if ids is not None else volkov_scene_ids(folder)
    scenes: dict[str, Any] = {}
    for sid in scene_ids:
        e = refine_scene(sid, folder, settings, check=check)
        scenes[sid] = e
        if log is not None:
            d = e.get("displacement", {})
            log(f"{sid}{' (held out)' if e['held_out'] else ''}: "
                + (f"{e['kind']} ok, {e['n_inliers']} inliers, rmse_cv {e['rmse_cv_px']:.2f} px, moves mean "
                   f"{d['mean_px']:.2f} / max {d['max_px']:.2f} px" if e["refined"] else f"UNREFINED: {e['why']}")
                + f" [{e['runtime_s']:.0f} s]")
    return {
        "dataset": "s1s2/volkov-1024",
        "convention": ("correction: original SAR pixel -> optical pixel (same 1024 px grid), GDAL pixel "
                       "convention (centre of pixel [i, j] at (j + 0.5, i + 0.5)); matrix_opencv_2x3 is the "
                       "same affine map with pixel centres on integers, for cv2.warpAffine(sar, M, (W, H))"),
        "settings": {**asdict(settings), "kinds": list(settings.kinds), "method": "structural"},
        "summary": summarise(scenes),
        "scenes": scenes,
    }


def summarise(scenes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Counts and displacement distribution of refined scenes (all and training-only)."""
    ok = [e for e in scenes.values() if e["refined"]]
    mx = np.array([e["displacement"]["max_px"] for e in ok]) if ok else np.zeros(0)
    mean = np.array([e["displacement"]["mean_px"] for e in ok]) if ok else np.zeros(0)
    res = np.array([e["check"]["displacement"]["mean_px"] for e in ok if "check" in e])

    def q(a: np.ndarray, f: Callable[[np.ndarray], Any]) -> float | None:
        return round(float(f(a)), 3) if a.size else None

    return {
        "n_scenes": len(scenes),
        "n_refined": len(ok),
        "n_refined_training": sum(1 for e in ok if not e["held_out"]),
        "n_refined_held_out": sum(1 for e in ok if e["held_out"]),
        "kinds": {k: sum(1 for e in ok if e["kind"] == k) for k in sorted({e["kind"] for e in ok})},
        "n_checked": sum(1 for e in scenes.values() if "check" in e),
        "n_check_failed": sum(1 for e in scenes.values() if "check" in e and not e["check"]["passed"]),
        "unrefined": {sid: e["why"] for sid, e in scenes.items() if not e["refined"]},
        "max_displacement_px": {"median": q(mx, np.median), "max": q(mx, np.max)},
        "mean_displacement_px": {"median": q(mean, np.median), "max": q(mean, np.max)},
        "check_residual_mean_px": {"median": q(res, np.median), "max": q(res, np.max)},
    }


# ------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------


def load_alignment(path: str | Path | None = None) -> dict[str, Any]:
    """The stored refinement document (default :data:`ALIGNMENT_JSON`)."""
    return json.loads(Path(path or ALIGNMENT_JSON).read_text(encoding="utf-8"))


def aligned_pair(scene_id: str, root: str | Path | None = None, alignment: dict[str, Any] | None = None,
                 *, interpolation: int = cv2.INTER_LINEAR, allow_unrefined: bool = False) -> AlignedScene:
    """One scene as pixel-aligned arrays on the optical grid.

    Args:
        scene_id: Scene id, e.g. ``"003"``.
        root: The ``volkov-1024`` folder (default :data:`DEFAULT_VOLKOV_ROOT`).
        alignment: The refinement document (default :func:`load_alignment`).
        interpolation: OpenCV interpolation of the SAR resampling.
        allow_unrefined: Return an unrefined scene as stored (identity) instead of raising.

    Returns:
        :class:`AlignedScene` (held-out scenes too: training code must use
        :func:`volkov_training_pairs`).

    Raises:
        KeyError: The scene is not in the document.
        ValueError: The scene was not refined and ``allow_unrefined`` is off.
    """
    doc = alignment if alignment is not None else load_alignment()
    entry = doc["scenes"][str(scene_id)]
    if not entry["refined"] and not allow_unrefined:
        raise ValueError(f"volkov scene {scene_id} was not refined ({entry['why']}); pass allow_unrefined=True "
                         "to load it as stored")
    opt, sar, _ = read_volkov_scene(scene_id, root)
    correction = entry.get("correction") if entry["refined"] else None
    sar_on_opt, valid = _resample_sar(sar, correction, (int(opt.shape[0]), int(opt.shape[1])), interpolation)
    return AlignedScene(str(scene_id), opt, sar_on_opt, valid, entry.get("kind"), bool(entry["held_out"]))


def volkov_training_pairs(root: str | Path | None = None,
                          alignment: dict[str, Any] | None = None) -> Iterator[AlignedScene]:
    """Every volkov scene a training loader may use, pixel-aligned.

    Yields only scenes that are not held out (:data:`~sarcoreg.training.splits.VOLKOV_HELD_OUT`)
    and whose refinement verdict was ``ok``; unrefined scenes (alignment good only to a few px)
    and the held-out block are skipped. Scenes are loaded lazily, in the document's order.

    Args:
        root: The ``volkov-1024`` folder (default :data:`DEFAULT_VOLKOV_ROOT`).
        alignment: The refinement document (default :func:`load_alignment`).

    Yields:
        :class:`AlignedScene` with ``held_out`` False.
    """
    doc = alignment if alignment is not None else load_alignment()
    for sid, entry in doc["scenes"].items():
        if entry["refined"] and not entry["held_out"] and not volkov_is_held_out(sid):
            yield aligned_pair(sid, root, doc)


# ------------------------------------------------------------------------------------------
# Check: a fresh structural run on the corrected pair
# ------------------------------------------------------------------------------------------


def _valid_interior(valid: np.ndarray) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)`` of a rectangle inside the valid area: each side moves in while its edge has invalid pixels.

    Raises:
        ValueError: Less than 64 x 64 px are left.
    """
    r0, r1, c0, c1 = 0, valid.shape[0], 0, valid.shape[1]
    while r1 - r0 >= 64 and c1 - c0 >= 64 and not valid[r0:r1, c0:c1].all():
        top, bottom = not valid[r0, c0:c1].all(), not valid[r1 - 1, c0:c1].all()
        left, right = not valid[r0:r1, c0].all(), not valid[r0:r1, c1 - 1].all()
        r0, r1, c0, c1 = r0 + top, r1 - bottom, c0 + left, c1 - right
    if r1 - r0 < 64 or c1 - c0 < 64:
        raise ValueError(f"no usable valid interior rectangle (rows {r0}:{r1}, cols {c0}:{c1})")
    return r0, r1, c0, c1


def residual_after_correction(scene_id: str, root: str | Path | None = None,
                              alignment: dict[str, Any] | None = None,
                              settings: RefineSettings | None = None) -> dict[str, Any]:
    """Co-register the corrected pair again and measure what correction is left.

    The SAR is resampled onto the optical grid through the stored correction, both images are
    cropped to the interior where the resampled SAR is valid everywhere, written on one grid,
    and matched again with the same settings and an ``affine`` transform.

    Args:
        scene_id: A refined scene.
        root: The ``volkov-1024`` folder.
        alignment: The refinement document (default :func:`load_alignment`).
        settings: :class:`RefineSettings` of the fresh run.

    Returns:
        ``status``, ``reasons``, ``n_inliers``, ``rmse_cv_px`` of the fresh run and its
        ``displacement`` (mean / median / max / centre, px) over the cropped image (before the
        correction the same numbers are the scene's stored ``displacement``), ``crop``
        (``[r0, r1, c0, c1]`` on the optical grid) and, for a fitted run, ``model`` (the residual
        correction in cropped pixels).
    """
    settings = settings or RefineSettings()
    pair = aligned_pair(scene_id, root, alignment)
    r0, r1, c0, c1 = _valid_interior(pair.valid)
    opt, sar = pair.optical[r0:r1, c0:c1], pair.sar[r0:r1, c0:c1]
    _, _, gt = read_volkov_scene(scene_id, root)
    gt = [gt[0] + c0 * gt[1], gt[1], 0.0, gt[3] + r0 * gt[5], 0.0, gt[5]]
    one = RefineSettings(**{**asdict(settings), "kinds": ("affine",)})
    with tempfile.TemporaryDirectory(prefix=f"volkov{scene_id}_check_") as tmp:
        ref = _write_geotiff(Path(tmp) / "opt.tif", np.ascontiguousarray(opt), gt)
        tgt = _write_geotiff(Path(tmp) / "sar.tif", np.ascontiguousarray(sar), gt)
        res, summary = _engine_run(ref, tgt, "affine", one, (sar.shape[0], sar.shape[1]))
    summary["crop"] = [r0, r1, c0, c1]
    if res is not None:
        summary["model"] = res.fit.model.to_dict()
    return summary


def plot_summary(doc: dict[str, Any], path: str | Path) -> Path:
    """Histogram of the per-scene largest displacement of the corrections, kept vs not reproducible.

    Args:
        doc: The refinement document.
        path: PNG to write.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = doc["scenes"].values()
    kept = [e["displacement"]["max_px"] for e in scenes if e["refined"]]
    dropped = [e["displacement"]["max_px"] for e in scenes if not e["refined"] and "displacement" in e]
    top = max([*kept, *dropped, 1.0])
    bins = np.arange(0.0, math.ceil(top) + 1.0, 1.0)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.hist([kept, dropped], bins=bins, stacked=True, color=["tab:blue", "tab:orange"],
            label=[f"refined, check passed ({len(kept)})", f"verdict ok, not reproducible ({len(dropped)})"])
    ax.set_xlabel("largest displacement of the correction over the scene (px, 10 m)")
    ax.set_ylabel("scenes")
    n_none = sum(1 for e in scenes if "displacement" not in e)
    ax.set_title(f"volkov-1024 alignment refinement: {len(kept)} of {len(doc['scenes'])} scenes"
                 + (f" ({n_none} without an ok run)" if n_none else ""), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------


def _clean(v: Any) -> Any:
    """JSON-able copy: numpy scalars to Python, non-finite floats to None (strict JSON)."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def main(argv: list[str] | None = None) -> int:
    """``sarcoreg-train refine-volkov``: refine every scene and write the JSON (or ``--verify`` ids)."""
    p = argparse.ArgumentParser(prog="sarcoreg-train refine-volkov", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_VOLKOV_ROOT), help="the s1s2/volkov-1024 folder")
    p.add_argument("--out", default=str(ALIGNMENT_JSON), help="JSON of the corrections to write")
    p.add_argument("--ids", nargs="*", default=None,
                   help="only these scenes (default: all of index.json); merged into --out when it exists")
    p.add_argument("--verify", nargs="*", default=None, metavar="ID",
                   help="instead of refining: re-match these stored scenes after their correction")
    p.add_argument("--no-check", action="store_true", help="skip the reproducibility check of each correction")
    p.add_argument("--check-only", action="store_true",
                   help="only run the check on refined, unchecked scenes of --out and rewrite it")
    p.add_argument("--plot", metavar="PNG", help="only write the displacement histogram of --out to this PNG")
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    a = p.parse_args(argv)
    cv2.setNumThreads(max(1, a.threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, a.threads)))
    if a.verify is not None:
        doc = load_alignment(a.out)
        ids = a.verify or [s for s, e in doc["scenes"].items() if e["refined"]]
        for sid in ids:
            r = residual_after_correction(sid, a.data, doc)
            d = r.get("displacement", {})
            print(f"{sid}: before mean {doc['scenes'][sid]['displacement']['mean_px']:.2f} px; after: {r['status']}, "
                  f"{r['n_inliers']} inliers, residual mean {d.get('mean_px', float('nan')):.3f} / max "
                  f"{d.get('max_px', float('nan')):.3f} px", flush=True)
        return 0
    out = Path(a.out)
    if a.plot:
        print(plot_summary(load_alignment(out), a.plot))
        return 0
    if a.check_only:
        doc = load_alignment(out)
        for sid, e in doc["scenes"].items():
            if e["refined"] and "check" not in e and (not a.ids or sid in a.ids):
                check_entry(e, a.data)
                c = e["check"]
                print(f"{sid}: check {'passed' if c['passed'] else 'FAILED'}: {c['status']}, residual mean "
                      f"{(c.get('displacement') or {}).get('mean_px', float('nan')):.3f} px", flush=True)
                doc["summary"] = summarise(doc["scenes"])
                out.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        print(json.dumps(doc["summary"], indent=1), flush=True)
        return 0
    doc = refine_all(a.data, a.ids, log=lambda s: print(s, flush=True), check=not a.no_check)
    if a.ids and out.exists():
        old = load_alignment(out)
        old["scenes"].update(doc["scenes"])
        doc = {**old, "summary": summarise(old["scenes"])}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    print(json.dumps(doc["summary"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
