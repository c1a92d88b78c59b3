"""Alignment refinement of the volkov-1024 scenes: conventions, choice of model, loaders, and the residual check."""

from __future__ import annotations

import copy
from typing import Any

import cv2
import numpy as np
import pytest
from sarcoreg.core.estimation import fit_transform
from sarcoreg.core.estimation.models import AffineModel, ShiftModel, model_from_dict
from sarcoreg.training.refine_alignment import (
    ALIGNMENT_JSON,
    RefineSettings,
    _choose,
    aligned_pair,
    compose_correction,
    correction_displacement,
    gdal_to_opencv_affine,
    load_alignment,
    refine_scene,
    residual_after_correction,
    source_coordinates,
    volkov_training_pairs,
)
from sarcoreg.training.splits import VOLKOV_HELD_OUT, volkov_scene_ids

from tests.conftest import shared_data


def _root() -> Any:
    return shared_data("s1s2", "volkov-1024")


def _doc_with(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"scenes": entries}


def _entry(sid: str, correction: dict[str, Any] | None, held_out: bool) -> dict[str, Any]:
    return {"id": sid, "refined": correction is not None, "why": "test", "kind": correction and correction["kind"],
            "held_out": held_out, "correction": correction}


# ------------------------------------------------------------------------------------------
# Conventions and resampling
# ------------------------------------------------------------------------------------------


def test_opencv_matrix_and_remap_agree_with_the_gdal_model() -> None:
    """warpAffine with the OpenCV matrix and the remap of the model dict give the same image."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (200, 240)).astype(np.uint8), (0, 0), 2.0)
    m = np.array([[1.01, 0.004, 3.3], [-0.003, 0.992, -2.1], [0.0, 0.0, 1.0]])
    model = AffineModel(m)
    warped = cv2.warpAffine(img, gdal_to_opencv_affine(m), (240, 200), flags=cv2.INTER_LINEAR)
    mx, my = source_coordinates(model.to_dict(), (200, 240))
    remapped = cv2.remap(img, mx, my, cv2.INTER_LINEAR)
    inner = (slice(10, -10), slice(10, -10))
    assert np.abs(warped[inner].astype(int) - remapped[inner].astype(int)).max() <= 1
    # The source of optical pixel centre q is T^-1(q) in GDAL terms, minus 0.5 for OpenCV.
    q = np.array([[100.5, 50.5]])
    p = model.inverted().apply(q)[0] - 0.5
    assert abs(mx[50, 100] - p[0]) < 1e-3 and abs(my[50, 100] - p[1]) < 1e-3


def test_source_coordinates_invert_a_quadratic_correction() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 1024, (300, 2))
    x, y = src[:, 0] / 1024, src[:, 1] / 1024
    dst = src + np.column_stack([4 * x * x - 3 * y + 1.5, 2 * x * y - 1.0 + 5 * y * y])
    fit = fit_transform(src, dst, "poly2", threshold_px=0.5)
    mx, my = source_coordinates(fit.model.to_dict(), (1024, 1024))
    p = np.column_stack([mx.ravel(), my.ravel()]).astype(np.float64) + 0.5
    gx, gy = np.meshgrid(np.arange(1024) + 0.5, np.arange(1024) + 0.5)
    back = fit.model.apply(p)
    assert np.abs(back - np.column_stack([gx.ravel(), gy.ravel()])).max() < 2e-3  # float32 maps


def test_composed_correction_is_residual_after_correction_with_the_crop_offset() -> None:
    t = AffineModel(np.array([[1.01, 0.002, -4.0], [0.001, 0.995, 3.0], [0.0, 0.0, 1.0]]))
    r = AffineModel(np.array([[1.001, 0.0, 0.4], [0.0, 0.999, -0.3], [0.0, 0.0, 1.0]]))
    crop = [7, 1015, 5, 1020]  # r0, r1, c0, c1
    model, inverse = compose_correction(t.to_dict(), r.to_dict(), crop, (1024, 1024))
    p = np.array([[0.0, 0.0], [1024.0, 0.0], [512.0, 700.0], [1024.0, 1024.0]])
    off = np.array([5.0, 7.0])
    assert np.allclose(model.apply(p), r.apply(t.apply(p) - off) + off, atol=1e-6)
    assert np.allclose(inverse.apply(model.apply(p)), p, atol=1e-6) and model.kind == "affine"


def test_displacement_of_a_shift_and_a_scale() -> None:
    d = correction_displacement(ShiftModel(3.0, -4.0), (1024, 1024))
    assert d["mean_px"] == pytest.approx(5.0) and d["max_px"] == pytest.approx(5.0)
    assert d["centre_px"] == pytest.approx([3.0, -4.0])
    # 1 % scale about the centre: 0 px there, 511.5 * sqrt(2) * 0.01 at the corner pixel centres.
    m = np.array([[1.01, 0, -5.12], [0, 1.01, -5.12], [0, 0, 1.0]])
    d = correction_displacement(AffineModel(m), (1024, 1024))
    assert d["max_px"] == pytest.approx(0.01 * 511.5 * np.sqrt(2), rel=1e-9)
    assert d["centre_px"] == pytest.approx([0.0, 0.0], abs=1e-9)


# ------------------------------------------------------------------------------------------
# Choice of model
# ------------------------------------------------------------------------------------------


def _run(status: str, cv: float, inl: int, mx: float, reasons: list[str] | None = None) -> tuple[None, dict[str, Any]]:
    return None, {"status": status, "reasons": reasons or [], "rmse_cv_px": cv, "n_inliers": inl,
                  "displacement": {"max_px": mx}}


def test_poly2_is_kept_only_when_justified() -> None:
    s = RefineSettings()
    assert _choose({"affine": _run("ok", 1.2, 100, 5.0), "poly2": _run("ok", 1.0, 110, 6.0)}, s)[0] == "poly2"
    # 5 % better only: affine.
    assert _choose({"affine": _run("ok", 1.2, 100, 5.0), "poly2": _run("ok", 1.14, 110, 6.0)}, s)[0] == "affine"
    # Better by dropping tie points: affine.
    assert _choose({"affine": _run("ok", 1.2, 100, 5.0), "poly2": _run("ok", 0.9, 80, 6.0)}, s)[0] == "affine"
    # Quadratic extrapolation into the corners (40 px where affine says 15): affine.
    assert _choose({"affine": _run("ok", 1.2, 100, 15.0), "poly2": _run("ok", 1.0, 130, 40.0)}, s)[0] == "affine"
    # poly2 ok where affine is not: poly2, saying so.
    kind, why = _choose({"affine": _run("uncertain", 1.7, 60, 5.0), "poly2": _run("ok", 1.1, 90, 6.0)}, s)
    assert kind == "poly2" and "affine: uncertain" in why
    # ... unless it extrapolates (scene 213: 53 px where the uncertain affine fit said 11).
    kind, why = _choose({"affine": _run("uncertain", 1.2, 63, 10.8), "poly2": _run("ok", 1.1, 66, 53.1)}, s)
    assert kind is None and "extrapolation" in why


def test_no_ok_run_leaves_the_scene_unrefined_with_the_reasons() -> None:
    kind, why = _choose({"affine": _run("uncertain", 1.7, 20, 5.0, ["cross-validated error 1.7 px"]),
                         "poly2": _run("failed", 6.0, 9, 30.0, ["too few inliers"])}, RefineSettings())
    assert kind is None
    assert "affine: uncertain (cross-validated error 1.7 px)" in why and "poly2: failed (too few inliers)" in why


# ------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------


def test_aligned_pair_moves_the_sar_by_the_correction() -> None:
    """A correction of (+3, -2) px puts SAR pixel (r + 2, c - 3) at optical pixel (r, c)."""
    doc = _doc_with({"003": _entry("003", ShiftModel(3.0, -2.0).to_dict(), False)})
    pair = aligned_pair("003", _root(), doc)
    raw = cv2.imread(str(_root() / "sar" / "003.png"), cv2.IMREAD_GRAYSCALE)
    assert pair.optical.shape == (1024, 1024, 3) and pair.sar.shape == (1024, 1024) and pair.sar.dtype == np.uint8
    assert np.array_equal(pair.sar[:-2, 3:], raw[2:, :-3])
    assert not pair.valid[:, :3].any() and not pair.valid[-2:, :].any() and pair.valid[:-2, 3:].all()
    assert pair.kind == "shift" and not pair.held_out


def test_unrefined_scene_is_refused_unless_asked() -> None:
    doc = _doc_with({"003": _entry("003", None, False)})
    with pytest.raises(ValueError, match="not refined"):
        aligned_pair("003", _root(), doc)
    pair = aligned_pair("003", _root(), doc, allow_unrefined=True)
    assert pair.valid.all() and pair.kind is None


def test_training_pairs_never_yield_held_out_or_unrefined_scenes() -> None:
    held = sorted(VOLKOV_HELD_OUT)[0]
    ident = ShiftModel(0.0, 0.0).to_dict()
    doc = _doc_with({
        "003": _entry("003", ident, False),
        held: _entry(held, ident, True),
        "004": _entry("004", None, False),
        # Even a document that forgets to flag a held-out scene cannot leak it.
        sorted(VOLKOV_HELD_OUT)[1]: _entry(sorted(VOLKOV_HELD_OUT)[1], ident, False),
    })
    assert [p.scene_id for p in volkov_training_pairs(_root(), doc)] == ["003"]


def test_stored_document_covers_every_scene_consistently() -> None:
    doc = load_alignment()
    ids = volkov_scene_ids(_root())
    assert list(doc["scenes"]) == ids and len(ids) == 58
    assert doc["summary"]["n_refined"] == sum(e["refined"] for e in doc["scenes"].values())
    for sid, e in doc["scenes"].items():
        assert e["held_out"] == (sid in VOLKOV_HELD_OUT)
        if not e["refined"]:
            assert e["why"]
            # A correction is kept only when it was ok but failed the reproducibility check.
            assert ("correction" in e) == ("check" in e and not e["check"]["passed"])
            continue
        assert e["status"] == "ok" and e["kind"] in ("affine", "poly2")
        assert e["check"]["passed"] and e["check"]["displacement"]["mean_px"] < 0.5
        model = model_from_dict(e["correction"])
        assert correction_displacement(model, (1024, 1024))["max_px"] == pytest.approx(e["displacement"]["max_px"])
        if e["kind"] == "affine":
            assert np.allclose(gdal_to_opencv_affine(np.array(e["matrix_gdal_3x3"])), e["matrix_opencv_2x3"])
    first = next(volkov_training_pairs(_root(), doc))
    assert first.scene_id not in VOLKOV_HELD_OUT and doc["scenes"][first.scene_id]["refined"]
    assert ALIGNMENT_JSON.stat().st_size < 400_000  # small enough to live in the repository


# ------------------------------------------------------------------------------------------
# The refinement is real: a fresh structural run on the corrected pair finds (almost) nothing left
# ------------------------------------------------------------------------------------------


def _refined_with_largest_move(doc: dict[str, Any], held_out: bool) -> str:
    """The refined scene that moves most among those whose stored check found < 0.3 px."""
    ok = [(e["displacement"]["mean_px"], sid) for sid, e in doc["scenes"].items()
          if e["refined"] and e["held_out"] == held_out and e["check"]["displacement"]["mean_px"] < 0.3]
    return max(ok)[1]


def test_corrected_training_scene_has_no_residual_correction() -> None:
    doc = load_alignment()
    sid = _refined_with_largest_move(doc, held_out=False)
    before = doc["scenes"][sid]["displacement"]
    after = residual_after_correction(sid, _root(), doc)
    assert before["mean_px"] > 1.0  # there was something to correct
    assert after["status"] == "ok"
    assert after["displacement"]["mean_px"] < 0.3, after


def test_corrected_held_out_and_poly2_scenes_have_no_residual_correction() -> None:
    doc = load_alignment()
    ids = [_refined_with_largest_move(doc, held_out=True)]
    ids += [sid for sid, e in doc["scenes"].items() if e["refined"] and e["kind"] == "poly2"][:1]
    for sid in ids:
        after = residual_after_correction(sid, _root(), doc)
        assert after["status"] == "ok" and after["displacement"]["mean_px"] < 0.5, (sid, after)
        if sid == ids[0]:
            assert after["displacement"]["mean_px"] < 0.3, (sid, after)


def test_refining_a_scene_again_reproduces_the_stored_entry() -> None:
    doc = load_alignment()
    sid = next(s for s, e in doc["scenes"].items() if e["refined"])
    fresh = refine_scene(sid, _root())
    stored = copy.deepcopy(doc["scenes"][sid])
    assert fresh["kind"] == stored["kind"] and fresh["n_inliers"] == stored["n_inliers"]
    assert np.allclose(model_from_dict(fresh["correction"]).matrix_px, model_from_dict(stored["correction"]).matrix_px)
