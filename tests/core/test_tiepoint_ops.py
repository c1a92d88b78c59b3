"""Tie-point layer operations on a real engine run (Sentinel-1/2 demo pair with a known offset)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osgeo import gdal
from sarcoreg.core import tiepoint_ops as ops
from sarcoreg.core.demo import make_demo_inputs
from sarcoreg.core.engine import CoregOptions, coregister
from sarcoreg.core.exports import read_points
from sarcoreg.core.jobs import get_job
from sarcoreg.core.progress import Progress

SHIFT = (3.4, -2.6)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tpops")
    ref, tgt = make_demo_inputs(root / "inputs", SHIFT)
    options = CoregOptions(method="structural", transform="shift", spacing=8, window=64, search_radius=8,
                           reference_bands=[1, 2, 3], write_outputs=["tiepoints"])
    res = coregister(ref, tgt, root / "out", options)
    columns, wkt = ops.layer_columns(res.outputs["tiepoints"])
    return {"root": root, "ref": ref, "tgt": tgt, "res": res, "table": ops.table_from_columns(columns, wkt)}


def test_table_matches_the_engine(run: dict[str, Any]) -> None:
    table, tp = run["table"], run["res"].tiepoints
    assert len(table) == len(tp)
    assert np.array_equal(table.outlier, tp.outlier)
    ok = np.isfinite(tp.target_xy).all(axis=1)
    assert np.allclose(table.target_px[ok], tp.target_xy[ok]) and np.isnan(table.target_px[~ok]).all()  # -9999
    assert np.allclose(table.map_xy, tp.reference.pixel_to_map(tp.ref_xy))
    grid = ops.infer_reference_grid(table)
    assert grid is not None and grid.geotransform == gdal.Open(str(run["ref"])).GetGeoTransform()


def test_missing_fields_and_empty_layer_are_named() -> None:
    with pytest.raises(ValueError, match="TGT_X_IM, TGT_Y_IM.*A"):
        ops.table_from_columns({"x": [1.0], "y": [2.0], "fields": {"A": [1]}})
    with pytest.raises(ValueError, match="no points"):
        ops.table_from_columns({"x": [], "y": [], "fields": {"TGT_X_IM": [], "TGT_Y_IM": []}})


def test_export_gcps_honours_outlier_flags(run: dict[str, Any]) -> None:
    root, table = run["root"], run["table"]
    out = ops.export_gcps(table, run["tgt"], points_path=root / "in.points", vrt_path=root / "in.vrt")
    n_in = int(run["res"].fit.n_inliers)
    assert out["n_gcps"] == n_in and out["gcp_args"].count("-gcp") == n_in
    assert gdal.Open(str(root / "in.vrt")).GetGCPCount() == n_in
    _, rows, enabled = read_points(root / "in.points")
    assert rows.shape == (n_in, 4) and enabled.all()
    # sourceX/Y are the target's own map coordinates of the matched pixel.
    tgt_gt = gdal.Open(str(run["tgt"])).GetGeoTransform()
    inl = table.usable(False)
    assert np.allclose(rows[:, 2], tgt_gt[0] + table.target_px[inl, 0] * tgt_gt[1])

    # Flag one placed inlier as an outlier (as a user editing the layer would).
    edited = table.outlier.copy()
    edited[np.flatnonzero(inl)[0]] = True
    one = ops.TiePointTable(table.map_xy, table.target_px, edited, table.point_id, table.ref_px,
                            table.field_map_xy, table.residual_px, table.crs_wkt)
    assert ops.export_gcps(one, run["tgt"])["n_gcps"] == n_in - 1
    everything = ops.export_gcps(one, run["tgt"], points_path=root / "all.points", include_outliers=True)
    _, rows_all, enabled_all = read_points(root / "all.points")
    assert everything["n_gcps"] == len(rows_all) == int(table.usable(True).sum()) == n_in
    assert int(enabled_all.sum()) == n_in - 1 and not enabled_all[0]

    flagged = ops.TiePointTable(table.map_xy, table.target_px, np.ones(len(table), bool), table.point_id,
                                table.ref_px, table.field_map_xy, table.residual_px, table.crs_wkt)
    with pytest.raises(ValueError, match="include outliers"):
        ops.export_gcps(flagged, run["tgt"], points_path=root / "none.points")
    assert not (root / "none.points").exists()


def test_warp_shift_and_poly2_on_the_inferred_grid(run: dict[str, Any]) -> None:
    root = run["root"]
    ref_gt = gdal.Open(str(run["ref"])).GetGeoTransform()
    shift = ops.warp_with_tiepoints(run["table"], run["tgt"], root / "shift.tif", "shift")
    gt = gdal.Open(shift["output"]).GetGeoTransform()
    assert shift["how"] == "geotransform" and abs(gt[0] - ref_gt[0]) < 10 and abs(gt[3] - ref_gt[3]) < 10
    poly = ops.warp_with_tiepoints(run["table"], run["tgt"], root / "poly2.tif", "poly2")
    ds = gdal.Open(poly["output"])
    assert poly["how"] == "warp" and ds.RasterCount == 2
    pgt = ds.GetGeoTransform()
    # On the reference grid (whole-pixel offsets of it) and about the target's size.
    assert pgt[1] == pytest.approx(10.0) and ((pgt[0] - ref_gt[0]) / 10.0) == pytest.approx(
        round((pgt[0] - ref_gt[0]) / 10.0), abs=1e-6)
    assert 100 < ds.RasterXSize < 200 and 100 < ds.RasterYSize < 200


def test_evaluate_measures_the_applied_offset(run: dict[str, Any]) -> None:
    ref_gt = gdal.Open(str(run["ref"])).GetGeoTransform()
    pix = np.array([[c + 0.5, r + 0.5] for c in range(10, 110, 25) for r in range(10, 110, 25)])
    true = np.column_stack([ref_gt[0] + pix[:, 0] * ref_gt[1], ref_gt[3] + pix[:, 1] * ref_gt[5]])
    html = run["root"] / "eval.html"
    before = ops.evaluate_checkpoints(run["tgt"], true, pix, "EPSG:32633", report_html=html)
    assert before["rmse"] == pytest.approx(math.hypot(34.0, 26.0)) and before["n"] == len(pix)
    assert before["rmse_px"] == pytest.approx(math.hypot(3.4, 2.6)) and before["ce90"] == pytest.approx(before["rmse"])
    assert np.allclose(before["points"]["dx"], 34.0) and np.allclose(before["points"]["dy"], 26.0)
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # The same check points in degrees are transformed to the raster's CRS first.
    from osgeo import osr

    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32633)
    utm.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lonlat = np.asarray(osr.CoordinateTransformation(utm, wgs).TransformPoints(true.tolist()))[:, :2]
    again = ops.evaluate_checkpoints(run["tgt"], lonlat, pix, wgs.ExportToWkt())
    assert again["rmse"] == pytest.approx(before["rmse"], abs=1e-3)


def test_points_file_check_points_in_both_frames(run: dict[str, Any]) -> None:
    root = run["root"]
    tgt_gt = gdal.Open(str(run["tgt"])).GetGeoTransform()
    ref_gt = gdal.Open(str(run["ref"])).GetGeoTransform()
    pix = [(20.5, 30.5), (80.5, 90.5), (50.5, 10.5)]
    true = [(ref_gt[0] + c * 10, ref_gt[3] - r * 10) for c, r in pix]
    (root / "pixel.points").write_text("mapX,mapY,sourceX,sourceY,enable\n" + "".join(
        f"{x},{y},{c},{-r},1\n" for (x, y), (c, r) in zip(true, pix, strict=True)) + "0,0,0,0,0\n")
    (root / "map.points").write_text("mapX,mapY,sourceX,sourceY,enable\n" + "".join(
        f"{x},{y},{tgt_gt[0] + c * 10},{tgt_gt[3] - r * 10},1\n" for (x, y), (c, r) in zip(true, pix, strict=True)))
    for name, frame in (("pixel.points", "pixel"), ("map.points", "map")):
        t, p, crs = ops.checkpoints_from_points_file(root / name, run["tgt"], frame)
        assert crs == "" and np.allclose(p, pix) and np.allclose(t, true)
    with pytest.raises(ValueError, match="source_frame"):
        ops.checkpoints_from_points_file(root / "map.points", run["tgt"], "image")


def test_worker_jobs_accept_plain_columns(run: dict[str, Any]) -> None:
    """The jobs take what the QGIS side sends: JSON columns, NULL as None, -9999 for failed points."""
    columns, wkt = ops.layer_columns(run["res"].outputs["tiepoints"])
    out = get_job("export_gcps")({"columns": columns, "crs_wkt": wkt, "target": str(run["tgt"]),
                                  "points": str(run["root"] / "job.points")}, Progress())
    assert out["n_gcps"] == run["res"].fit.n_inliers and out["vrt"] == ""
    warp = get_job("warp_tiepoints")({"layer_path": str(run["res"].outputs["tiepoints"]), "target": str(run["tgt"]),
                                      "output": str(run["root"] / "job.tif"), "transform": "affine"}, Progress())
    assert warp["fit"]["kind"] == "affine" and Path(warp["output"]).is_file()
    ev = get_job("evaluate")({"raster": str(run["tgt"]), "true_xy": [[404500.0, 5342000.0], [404600.0, 5341900.0]],
                              "pixel_xy": [[10.0, 40.0], [-9999.0, -9999.0]], "ids": ["a", "b"]}, Progress())
    assert ev["n"] == 1 and ev["n_skipped"] == 1 and ev["points"]["id"] == ["a"]
