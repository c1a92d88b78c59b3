"""The run verdict (ok / uncertain / failed): its rules on point sets, and the silent-failure cases from real pixels."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.estimation import AffineModel, ShiftModel, fit_transform
from sarcoreg.core.synthetic import write_geotiff
from sarcoreg.core.verdict import (
    CoregistrationFailed,
    VerdictOptions,
    cross_validated_rmse,
    decompose_linear,
    judge,
    split_half_disagreement,
    spread_cells,
)

from tests.conftest import shared_data

#: The georeferencing offset put into the demo's Sentinel-1 target (pixels).
SHIFT = (3.4, -2.6)
#: The demo's settings for the 120 x 120 px BigEarthNet patches.
DEMO = {"transform": "shift", "spacing": 8, "window": 64, "search_radius": 8, "reference_bands": [1, 2, 3]}


# ------------------------------------------------------------------------------------ point sets
def _grid_points(n_side: int = 6, size: float = 500.0) -> np.ndarray:
    g = np.linspace(20.0, size - 20.0, n_side)
    x, y = np.meshgrid(g, g)
    return np.column_stack([x.ravel(), y.ravel()])


@pytest.mark.parametrize(("kind", "n"), [("shift", 1), ("affine", 3), ("homography", 4), ("poly2", 6)])
def test_cv_of_an_exactly_determined_fit_is_infinite(kind: str, n: int) -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, (n, 2))
    cv = cross_validated_rmse(src, src + [3.0, -2.0], kind)
    assert math.isinf(cv.rmse_px) and cv.scheme == "none" and cv.note


def test_cv_on_noisy_points_exceeds_the_fit_residual_and_matches_leave_one_out() -> None:
    rng = np.random.default_rng(2)
    src = _grid_points(6)
    sigma = 0.7
    m = np.array([[1.001, 0.002, 4.0], [-0.001, 0.999, -3.0]])
    dst = src @ m[:, :2].T + m[:, 2] + rng.normal(0, sigma, src.shape)
    fit = fit_transform(src, dst, "affine", threshold_px=10.0)
    assert fit.n_inliers == len(src)
    cv = cross_validated_rmse(src, dst, "affine")
    assert cv.scheme == "leave-one-out" and cv.n_points == 36
    assert cv.rmse_px > fit.rmse_px  # honest: larger than the residual of the points the fit saw
    assert cv.rmse_px == pytest.approx(fit.loo_rmse_px, rel=1e-6)  # explicit LOO = the hat-matrix formula
    assert 0.7 * sigma * math.sqrt(2) < cv.rmse_px < 1.4 * sigma * math.sqrt(2)


def test_cv_uses_k_folds_for_many_points_and_handles_tps() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 1000, (300, 2))
    dst = src + [1.5, 2.5] + rng.normal(0, 0.5, src.shape)
    cv = cross_validated_rmse(src, dst, "shift", loo_max_points=60, folds=10)
    assert cv.scheme == "k-fold" and cv.rmse_px == pytest.approx(0.5 * math.sqrt(2), rel=0.15)
    few = src[:30]
    tps = cross_validated_rmse(few, dst[:30], "tps", tps_smoothing=0.1)
    assert math.isfinite(tps.rmse_px) and tps.rmse_px > 0.3


def test_decompose_linear_reads_scale_rotation_and_shear() -> None:
    a = math.radians(5.0)
    m = np.eye(3)
    m[:2, :2] = 1.1 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    parts = decompose_linear(m)
    assert parts["rotation_deg"] == pytest.approx(5.0)
    assert parts["scale_dev"] == pytest.approx(0.1) and parts["shear"] == pytest.approx(0.0, abs=1e-9)
    sheared = np.array([[0.68, 0.3, 0.0], [0.05, 0.9, 0.0], [0.0, 0.0, 1.0]])
    assert decompose_linear(sheared)["shear"] > 0.3


def test_spread_cells() -> None:
    box = (0.0, 0.0, 90.0, 90.0)
    assert spread_cells(np.array([[1.0, 1.0], [2.0, 2.0]]), box) == 1
    assert spread_cells(_grid_points(3, 90.0), box) == 9


def _judge_points(model: ShiftModel | AffineModel, src: np.ndarray, dst: np.ndarray, **kw: object):  # type: ignore[no-untyped-def]
    n = len(src)
    args = {
        "model": model, "requested_kind": model.kind, "src_xy": src, "ref_xy": dst, "grid_xy": src,
        "inliers": np.ones(n, bool), "usable": np.ones(n, bool), "overlap": (0, 0, 500, 500),
        "georeferenced": True,
    }
    args.update(kw)
    return judge(**args)


def test_judge_a_good_translation_is_ok() -> None:
    rng = np.random.default_rng(4)
    src = _grid_points(6)
    dst = src + [3.0, -2.0] + rng.normal(0, 0.3, src.shape)
    fit = fit_transform(src, dst, "shift")
    v = _judge_points(fit.model, src, dst)
    assert v.status == "ok" and v.reasons == [] and 0.3 < v.rmse_cv_px < 0.6
    assert v.checks["fitted_shift_at_centre_px"] == pytest.approx([-3.0, 2.0], abs=0.2)


def test_judge_an_implausible_affine_fails_even_when_the_points_agree() -> None:
    """The issue's case: scale 0.68 and strong shear, residual ~0 (the points were made by it)."""
    src = _grid_points(6)
    m = np.array([[0.68, 0.3, 10.0], [0.05, 0.9, -5.0], [0.0, 0.0, 1.0]])
    dst = src @ m[:2, :2].T + m[:2, 2]
    fit = fit_transform(src, dst, "affine")
    assert fit.rmse_px < 1e-6
    v = _judge_points(fit.model, src, dst)
    assert v.status == "failed" and any("Implausible transform" in r for r in v.reasons)
    assert _judge_points(fit.model, src, dst, georeferenced=False).status == "failed"  # shear alone


@pytest.mark.parametrize(("kind", "n", "status"), [("shift", 3, "uncertain"), ("shift", 2, "failed"),
                                                  ("affine", 3, "failed"), ("affine", 6, "uncertain")])
def test_judge_few_inliers_are_never_ok(kind: str, n: int, status: str) -> None:
    src = _grid_points(3)[[0, 8, 2, 6, 4, 1]][:n]
    dst = src + [2.0, 1.0] + np.random.default_rng(5).normal(0, 0.1, src.shape)
    fit = fit_transform(src, dst, kind)
    v = _judge_points(fit.model, src, dst)
    assert v.status == status, v.reasons
    assert any(f"Only {n} tie points agree" in r for r in v.reasons)


def test_judge_disagreement_with_a_confident_coarse_offset_is_uncertain() -> None:
    src = _grid_points(6)
    dst = src + [3.0, -2.0]
    fit = fit_transform(src, dst, "shift")
    coarse = {"used": True, "confident": True, "offset_px": [-20.0, 2.0], "factor": 1.0}
    v = _judge_points(fit.model, src, dst, coarse=coarse)
    assert v.status == "uncertain" and any("coarse stage" in r for r in v.reasons)
    agree = {**coarse, "offset_px": [-3.5, 2.0]}
    assert _judge_points(fit.model, src, dst, coarse=agree).status == "ok"


def test_consistent_points_give_two_halves_that_agree() -> None:
    rng = np.random.default_rng(7)
    dst = _grid_points(9, 1000.0)  # the candidates' reference pixels (a grid, as in the engine)
    src = dst - [3.0, -2.0] + rng.normal(0, 0.5, dst.shape)
    gap, counts = split_half_disagreement("affine", src, dst, 2.0)
    assert gap < 1.0 and counts == (41, 40)
    fit = fit_transform(src, dst, "affine", threshold_px=2.0)
    v = _judge_points(fit.model, src, dst, threshold_px=2.0)
    assert v.status == "ok" and v.checks["split_disagreement_px"] == pytest.approx(gap)


def test_halves_that_see_different_transforms_are_not_ok() -> None:
    """Black squares of the checkerboard say (0, 0), white ones a 1.5 % scale about the centre."""
    rng = np.random.default_rng(3)
    dst = _grid_points(10, 1000.0)
    ix, iy = np.meshgrid(np.arange(10), np.arange(10))
    white = ((ix + iy) % 2 == 0).ravel()
    src = dst + rng.normal(0, 0.3, dst.shape)
    src[white] = (dst[white] - 500.0) / 1.015 + 500.0 + rng.normal(0, 0.3, (int(white.sum()), 2))
    gap, counts = split_half_disagreement("affine", src, dst, 2.0)
    assert gap > 8.0 and counts == (50, 50)
    fit = fit_transform(src, dst, "affine", threshold_px=2.0)
    v = _judge_points(fit.model, src, dst, threshold_px=2.0, overlap=(0, 0, 1000, 1000))
    assert v.status == "uncertain" and any("Two halves of the tie points" in r for r in v.reasons)
    assert _judge_points(fit.model, src, dst).checks.get("split_disagreement_px") is None  # no threshold: skipped


def test_tie_points_that_do_not_determine_the_transform_are_not_ok(tmp_path: Path) -> None:
    """Real held-out Sentinel-1/2 scene 216 (mountains) with ncc: 13-18 agreeing tie points; fits of their two
    interleaved halves lie far apart at the corners (and the whole fit 7-9 px from the refined alignment in
    bench/bench_engine.py). Once reported ``ok``; the split-half rule makes it ``uncertain``."""
    root = shared_data("s1s2", "volkov-1024")
    opt = cv2.imread(str(root / "opt" / "216.webp"), cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1).copy()
    sar = cv2.imread(str(root / "sar" / "216.png"), cv2.IMREAD_GRAYSCALE)
    ref = write_geotiff(tmp_path / "s2.tif", opt)
    tgt = write_geotiff(tmp_path / "s1.tif", sar, origin=(500000.0 + 140.0, 5000000.0 + 210.0))
    status, rep = _status(ref, tgt, method="ncc")
    assert status == "uncertain", rep.get("reasons")
    assert rep["verdict"]["checks"]["split_disagreement_px"] > 5.0
    assert any("Two halves of the tie points" in r for r in rep["reasons"])


def test_verdict_options_from_json() -> None:
    opts = VerdictOptions.from_any({"min_inliers": {"shift": 6}, "max_cv_px": 1.0})
    assert opts.min_inliers["shift"] == 6 and opts.min_inliers["affine"] == 8 and opts.max_cv_px == 1.0
    with pytest.raises(ValueError, match="unknown verdict option.*max_cv_px"):
        VerdictOptions.from_any({"max_cv": 1.0})
    with pytest.raises(ValueError, match="max_cv_px"):
        VerdictOptions.from_any({"max_cv_px": 9.0})
    assert CoregOptions(verdict={"keep_uncertain": False}).verdict.keep_uncertain is False


# ------------------------------------------------------------------------------ real pixels
@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real Sentinel-2 (reference) and Sentinel-1 (target, georeferencing moved by SHIFT) patches."""
    return make_demo_inputs(tmp_path_factory.mktemp("verdict-demo"), SHIFT)


@pytest.fixture(scope="module")
def offset_100(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A real 400 px Sentinel-2 / Sentinel-1 pair (Volkov scene 003) whose target is 100 px off."""
    d = tmp_path_factory.mktemp("verdict-100")
    root = shared_data("s1s2", "volkov-1024")
    opt = cv2.imread(str(root / "opt" / "003.webp"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    sar = cv2.imread(str(root / "sar" / "003.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    y0 = x0 = 200
    ref = write_geotiff(d / "s2.tif", opt[y0:y0 + 400, x0:x0 + 400])
    tgt = write_geotiff(d / "s1_100px_off.tif", sar[y0:y0 + 400, x0 + 100:x0 + 500])
    return ref, tgt


def _status(ref: Path, tgt: Path, out: Path | None = None, /, **options: object) -> tuple[str, dict]:
    try:
        res = coregister(ref, tgt, out, CoregOptions(**options))
    except CoregistrationFailed as exc:
        assert exc.report is None or exc.report["status"] in ("failed", "uncertain")
        return "failed", exc.report or {}
    return res.report["status"], res.report


def test_good_real_pair_is_ok_and_its_cv_error_is_close_to_the_true_error(demo_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt = demo_pair
    res = coregister(ref, tgt, tmp_path / "out", CoregOptions(**DEMO))
    rep = res.report
    assert rep["status"] == "ok" and rep["reasons"] == [], rep["reasons"]
    inl = res.tiepoints.inlier
    true_err = float(np.sqrt(np.mean(np.sum((res.tiepoints.shift_px[inl] - SHIFT) ** 2, axis=1))))
    assert rep["rmse_cv_px"] > rep["rmse_px"]
    assert true_err / 2 <= rep["rmse_cv_px"] <= 2 * true_err, (rep["rmse_cv_px"], true_err)
    assert rep["rmse_cv_map"] == pytest.approx(10.0 * rep["rmse_cv_px"])
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["status"] == "ok" and saved["rmse_cv_px"] == pytest.approx(rep["rmse_cv_px"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.index('class="badge"') < html.index("<h2>Summary</h2>")
    assert "Cross-validated check-point RMSE" in html


@pytest.mark.parametrize(("transform", "spacing"), [("shift", 20), ("shift", 30), ("affine", 20)])
def test_very_few_inliers_are_never_ok(demo_pair, transform: str, spacing: int) -> None:  # type: ignore[no-untyped-def]
    """The 120 px patches with a coarse grid give 2-4 tie points: a fit through them is not trusted."""
    ref, tgt = demo_pair
    status, rep = _status(ref, tgt, **{**DEMO, "transform": transform, "spacing": spacing})
    assert status != "ok"
    if rep:
        assert rep["n_inliers"] < {"shift": 4, "affine": 8}[transform]
        assert rep["reasons"] and any("tie points agree" in r for r in rep["reasons"])


@pytest.mark.parametrize("transform", ["shift", "affine"])
def test_a_100_px_offset_beyond_the_search_radius_is_not_ok(offset_100, tmp_path: Path, transform: str) -> None:  # type: ignore[no-untyped-def]
    ref, tgt = offset_100
    out = tmp_path / "out"
    with pytest.raises(CoregistrationFailed) as info:
        coregister(ref, tgt, out, CoregOptions(transform=transform, spacing=32, window=64, search_radius=8,
                                               coarse=False, reference_modality="optical", target_modality="sar"))
    exc = info.value
    assert exc.reasons and all(r.endswith(".") for r in exc.reasons)
    if exc.report is not None:
        assert exc.report["status"] == "failed" and exc.report["reasons"] == exc.reasons
    assert not out.exists() or not any(out.rglob("*.*"))  # a failed run writes nothing


def test_keep_uncertain_off_refuses_an_uncertain_run(demo_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt = demo_pair
    options = {**DEMO, "spacing": 20}
    status, rep = _status(ref, tgt, tmp_path / "kept", **options)
    assert status == "uncertain" and (tmp_path / "kept" / "coregistered.tif").is_file()
    with pytest.raises(CoregistrationFailed, match="uncertain") as info:
        coregister(ref, tgt, tmp_path / "refused", CoregOptions(**options, verdict={"keep_uncertain": False}))
    assert info.value.report is not None and info.value.report["status"] == "uncertain"
    refused = tmp_path / "refused"
    assert not refused.exists() or not any(refused.rglob("*.*"))


def test_cli_exit_codes_follow_the_verdict(demo_pair, offset_100, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, tgt = demo_pair
    base = [sys.executable, "-m", "sarcoreg.core.cli", "coregister"]
    demo_args = ["--transform", "shift", "--window", "64", "--radius", "8", "--reference-bands", "1", "2", "3"]

    ok = subprocess.run([*base, str(ref), str(tgt), "--out", str(tmp_path / "ok"), *demo_args, "--spacing", "8"],
                        capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert "verdict: ok" in ok.stdout

    unsure = subprocess.run([*base, str(ref), str(tgt), "--out", str(tmp_path / "unsure"), *demo_args,
                             "--spacing", "20", "--json"], capture_output=True, text=True, timeout=180)
    assert unsure.returncode == 3, unsure.stderr
    assert "uncertain" in unsure.stderr and "tie points agree" in unsure.stderr
    assert json.loads((tmp_path / "unsure" / "report.json").read_text())["status"] == "uncertain"
    assert (tmp_path / "unsure" / "coregistered.tif").is_file()
    refused = subprocess.run([*base, str(ref), str(tgt), "--out", str(tmp_path / "refused"), *demo_args,
                              "--spacing", "20", "--refuse-uncertain"], capture_output=True, text=True, timeout=180)
    assert refused.returncode == 2 and "tie points agree" in refused.stderr, refused.stderr
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").rglob("*.*"))

    ref100, tgt100 = offset_100
    failed = subprocess.run([*base, str(ref100), str(tgt100), "--out", str(tmp_path / "failed"), "--transform",
                             "affine", "--spacing", "32", "--window", "64", "--radius", "8", "--no-coarse",
                             "--target-modality", "sar"], capture_output=True, text=True, timeout=180)
    assert failed.returncode == 2, failed.stderr
    assert "failed" in failed.stderr and "Traceback" not in failed.stderr
    assert "agree" in failed.stderr  # the reasons, in words
    folder = tmp_path / "failed"
    assert not folder.exists() or not any(folder.rglob("*.*"))


@pytest.mark.parametrize("transform", ["shift", "affine"])
def test_shared_modality_path_is_judged_too(demo_pair, transform: str) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: the shipped shared model + DISK/LightGlue on a real pair is not accurate
    enough (a handful of inliers, an affine with wild scale and shear); the verdict must not say ok."""
    ref, tgt = demo_pair
    status, rep = _status(ref, tgt, method="shared", transform=transform, reference_modality="optical",
                          target_modality="sar", reference_bands=[1, 2, 3], target_bands=[1], coarse=False,
                          matcher_options={"keypoints": "disk-lightglue", "device": "cpu"})
    assert status != "ok", rep.get("reasons")
    if transform == "affine":
        assert status == "failed"
    if rep:
        assert rep["reasons"] and "rmse_cv_px" in rep
