"""The report shows the matcher's map over the search window for a few tie points (PNG)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sarcoreg.core import CoregOptions, coregister
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.outputs import REPORT_MAPS, tiepoint_map_images

DEMO_OPTIONS = dict(transform="shift", spacing=8, window=64, search_radius=8, reference_bands=[1, 2, 3],
                    coarse=False)


@pytest.fixture(scope="module")
def structural_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    folder = tmp_path_factory.mktemp("report-maps")
    ref, tgt = make_demo_inputs(folder / "inputs", (3.4, -2.6))
    res = coregister(ref, tgt, folder / "out", CoregOptions(method="structural", **DEMO_OPTIONS))
    return res, folder / "out"


def test_report_embeds_maps_of_the_best_tie_points(structural_run: tuple[object, Path]) -> None:
    res, out = structural_run
    report = json.loads((out / "report.json").read_text())
    shown = report["report_maps"]
    assert len(shown) == REPORT_MAPS
    tp = res.tiepoints  # type: ignore[attr-defined]
    scores = [float(tp.score[s["tiepoint"]]) for s in shown]
    assert scores == sorted(scores, reverse=True)
    assert all(tp.inlier[s["tiepoint"]] and s["map"] == "similarity" and s["size"] == 17 for s in shown)
    html = (out / "report.html").read_text()
    for s in shown:
        assert f"Tie point {s['tiepoint']} (inlier, score" in html
    assert "structural similarity map over the search window" in html
    assert html.count("data:image/png;base64,") >= 3 + REPORT_MAPS  # three plots, the maps (+ checkerboards)


def test_bnn_maps_are_shown_as_distances(structural_run: tuple[object, Path]) -> None:
    res, _ = structural_run
    tp = dataclasses.replace(res.tiepoints, matcher="bnn")  # type: ignore[attr-defined]
    n = len(tp.score)
    maps = np.full((n, 5, 5), 0.5, np.float32)
    maps[:, 2, 3] = 0.9  # best score = smallest distance h = 1/0.9 - 1
    images, shown = tiepoint_map_images(maps, tp, count=2)
    assert len(images) == 2 and all(s["map"] == "distance" for s in shown)
    assert all(k.startswith("Tie point") and "bnn distance map" in k for k in images)
    assert all(v[:8] == b"\x89PNG\r\n\x1a\n" for v in images.values())
    assert tiepoint_map_images(None, tp) == ({}, [])
    assert tiepoint_map_images(maps[:1], tp) == ({}, [])  # maps that do not match the rows are ignored
