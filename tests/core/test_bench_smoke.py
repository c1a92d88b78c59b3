"""Smoke test of the engine benchmarks (``bench/``): a tiny run so that their code does not rot.

Runs the real benchmark functions on two small real cases (a sub-pixel shifted optical copy and
a real BigEarthNet S1/S2 pair with an offset in its georeferencing) and checks the scoring and
the table output, not the engine's accuracy targets (those are the benchmarks' job).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import engine_cases as ec  # noqa: E402


def test_srif_ground_truth_maps_the_sar_centre_into_the_optical_tile() -> None:
    # Pair 1: optical 337 px, rotated 37.6 deg about the 256 px SAR centre. The SAR centre
    # (128, 128) is the optical centre (168.5, 168.5) whatever the angle.
    gt = ec.srif_gt(1)
    centre = gt(np.array([[128.0, 128.0]]))[0]
    assert np.allclose(centre, [168.5, 168.5], atol=0.6)
    # A SAR step of 256 px along the rotated axis spans the whole optical side (scale 337/256).
    a, b = gt(np.array([[0.0, 128.0], [256.0, 128.0]]))
    assert math.hypot(*(b - a)) == pytest.approx(337.0, abs=1.0)


def test_run_case_scores_a_shift_and_a_real_s1_s2_pair(tmp_path: Path) -> None:
    cases = ec.build_group("optical_shift", tmp_path, count=1)
    cases += ec.build_group("ben_common", tmp_path, count=1)
    assert [c.group for c in cases] == ["optical_shift", "ben_common"]
    rows = [ec.run_case(c, "structural") for c in cases]
    for row in rows:
        assert row["error"] == "", row["error"]
        assert np.isfinite(row["ace_px"]) and row["time_s"] > 0 and row["peak_rss_mb"] > 10
        assert row["n_inliers"] >= 1
    # The optical copy moved through its geotransform: the structural matcher finds it well
    # within a pixel (the benchmark's own target is 0.2 px).
    assert rows[0]["ace_px"] < 0.5
    assert rows[0]["success"] == (rows[0]["ace_px"] < 0.2)

    summary = ec.summarise(rows)
    assert [(s["group"], s["n"]) for s in summary] == [("optical_shift", 1), ("ben_common", 1)]
    table = ec.format_table(summary, ["group", "method", "success", "ace_med"])
    lines = table.splitlines()
    assert len(lines) == 4 and set(lines[1]) == {"-"}
    assert lines[0].index("method") == lines[2].index("structural")
    assert json.loads(ec.to_json(rows))[0]["case"] == rows[0]["case"]


def test_a_failing_run_is_a_row_not_a_crash(tmp_path: Path) -> None:
    case = ec.build_group("ben_common", tmp_path, count=1)[0]
    # A 4 px grid with a 100 px window leaves no candidate inside a 120 px patch.
    row = ec.run_case(case, "ncc", window=100, spacing=4, search_radius=30)
    assert row["success"] is False and math.isnan(row["ace_px"]) and row["error"]
