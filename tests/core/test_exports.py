"""Output writers on a small real GeoTIFF pair (OSMNet optical/SAR chips, put on a UTM grid)."""

from __future__ import annotations

import base64
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from matplotlib import _pylab_helpers
from osgeo import gdal, ogr, osr
from sarcoreg.core.exports import (
    NODATA_VALUE,
    POINTS_HEADER,
    SHIFT_FIELD_NODATA,
    atomic_path,
    atomic_write_text,
    checkerboard,
    gcp_translate_args,
    read_points,
    read_tiepoints_gpkg,
    render_report_html,
    write_gcp_vrt,
    write_points,
    write_report_html,
    write_shift_field,
    write_tiepoints_gpkg,
)
from sarcoreg.core.exports.plots import array_png, ce90_px
from sarcoreg.core.georef import Georef
from sarcoreg.core.tiepoints import TIEPOINT_FIELDS, TiePoints

gdal.UseExceptions()

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
OPTICAL = DATA / "sar-optical" / "osmnet" / "ims" / "opt1.png"
SAR = DATA / "sar-optical" / "osmnet" / "ims" / "sar1.png"

REF_GT = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
# The target's geotransform is off by (+30 m, -20 m): its content lies (+3, +2) reference
# pixels away from where it belongs.
TGT_GT = (500030.0, 10.0, 0.0, 4999980.0, 0.0, -10.0)
TRUE_SHIFT = np.array([3.0, 2.0])
FAILED = [5, 11, 20]
OUTLIERS = [3, 17]


def _utm33_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return str(srs.ExportToWkt())


def _read_png(path: Path) -> np.ndarray:
    assert path.exists(), f"real test data missing: {path}"
    ds = gdal.Open(str(path))
    return np.asarray(ds.GetRasterBand(1).ReadAsArray())


def _write_geotiff(path: Path, array: np.ndarray, gt: tuple[float, ...], wkt: str) -> None:
    ds = gdal.GetDriverByName("GTiff").Create(
        str(path), array.shape[1], array.shape[0], 1, gdal.GDT_Byte
    )
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    ds.GetRasterBand(1).WriteArray(array)
    ds = None


def _tiepoints(reference: Georef) -> TiePoints:
    """25 tie points on a 5 x 5 grid: 3 failed, 2 robust-fit outliers, 0.2 px noise."""
    g = np.linspace(20.5, 230.5, 5)
    ref_xy = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    n = ref_xy.shape[0]
    noise = np.random.default_rng(7).normal(0.0, 0.2, (n, 2))
    target_xy = ref_xy + noise  # target raster pixels (the content itself is not moved)
    shift = TRUE_SHIFT + noise  # on the reference grid
    residual = noise.copy()
    l1 = np.zeros(n, bool)
    l2 = np.zeros(n, bool)
    errors = [""] * n
    for i in OUTLIERS:
        target_xy[i] += (15.0, -12.0)
        shift[i] += (15.0, -12.0)
        residual[i] += (15.0, -12.0)
        l2[i] = True
    for i in FAILED:
        target_xy[i] = np.nan
        shift[i] = np.nan
        residual[i] = np.nan
        l1[i] = True
        errors[i] = "no match: flat <template>"
    return TiePoints(
        ref_xy=ref_xy,
        target_xy=target_xy,
        shift_px=shift,
        score=np.linspace(0.3, 0.9, n),
        reliability=np.where(l1, 0.05, 0.8),
        residual_px=residual,
        l1_outlier=l1,
        l2_outlier=l2,
        errors=errors,
        matcher="ncc",
        window=32,
        reference=reference,
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("scene")
    wkt = _utm33_wkt()
    ref_arr, tgt_arr = _read_png(OPTICAL), _read_png(SAR)
    assert ref_arr.shape == tgt_arr.shape == (256, 256)
    _write_geotiff(folder / "ref.tif", ref_arr, REF_GT, wkt)
    _write_geotiff(folder / "tgt.tif", tgt_arr, TGT_GT, wkt)
    reference = Georef(REF_GT, wkt, 256, 256)
    target = Georef(TGT_GT, wkt, 256, 256)
    return {
        "folder": folder,
        "wkt": wkt,
        "reference": reference,
        "target": target,
        "ref_arr": ref_arr,
        "tgt_arr": tgt_arr,
        "tp": _tiepoints(reference),
    }


def _same_crs(text: str, epsg: int) -> bool:
    srs = osr.SpatialReference()
    srs.SetFromUserInput(text)
    other = osr.SpatialReference()
    other.ImportFromEPSG(epsg)
    return bool(srs.IsSame(other))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- atomic


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    final = tmp_path / "out.tif"
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".") and ".partial" in tmp.name
        assert tmp.suffix == ".tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(tmp), 4, 3, 1, gdal.GDT_Byte)
        del ds  # closes the file
    assert _files(tmp_path) == ["out.tif"]
    assert gdal.Open(str(final)).RasterXSize == 4

    # An exception inside the block: the half-written file goes, the old file stays.
    with pytest.raises(RuntimeError, match="cancelled"), atomic_path(final) as tmp:
        ds = gdal.GetDriverByName("GTiff").Create(str(tmp), 9, 9, 1, gdal.GDT_Byte)
        del ds  # closes the file
        assert tmp.exists()
        raise RuntimeError("cancelled")
    assert _files(tmp_path) == ["out.tif"]
    assert gdal.Open(str(final)).RasterXSize == 4

    with pytest.raises(FileNotFoundError, match="without creating"), atomic_path(final):
        pass
    assert _files(tmp_path) == ["out.tif"]

    atomic_write_text(tmp_path / "a.txt", "x\r\ny\n")
    assert (tmp_path / "a.txt").read_bytes() == b"x\r\ny\n"
    assert _files(tmp_path) == ["a.txt", "out.tif"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "a.txt", "x")


# ---------------------------------------------------------------- .points


def test_points_file_qgis_format_and_round_trip(scene: dict, tmp_path: Path) -> None:
    tp: TiePoints = scene["tp"]
    path = tmp_path / "gcps.points"
    n = write_points(path, tp, scene["target"], scene["wkt"])
    valid = np.isfinite(tp.target_xy).all(axis=1)
    assert n == valid.sum() == 22

    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#CRS: ") and _same_crs(lines[0][6:], 32633)
    assert lines[1] == POINTS_HEADER
    assert lines[-1] == "" and len(lines) == 2 + n + 1

    crs_text, rows, enabled = read_points(path)
    assert _same_crs(crs_text, 32633)
    ref_map = scene["reference"].pixel_to_map(tp.ref_xy[valid])
    # Source = the target raster's own map coordinates (it is georeferenced).
    src_map = scene["target"].pixel_to_map(tp.target_xy[valid])
    np.testing.assert_array_equal(rows[:, :2], ref_map)
    np.testing.assert_array_equal(rows[:, 2:], src_map)
    np.testing.assert_array_equal(enabled, ~tp.outlier[valid])
    assert enabled.sum() == 20

    # dX, dY, residual: residuals in map units (10 m pixels, y axis flipped).
    extra = np.array([[float(v) for v in line.split(",")[5:]] for line in lines[2:-1]])
    res = tp.residual_px[valid]
    np.testing.assert_allclose(extra[:, 0], res[:, 0] * 10.0)
    np.testing.assert_allclose(extra[:, 1], res[:, 1] * -10.0)
    np.testing.assert_allclose(extra[:, 2], np.hypot(res[:, 0], res[:, 1]) * 10.0)

    n_in = write_points(tmp_path / "inliers.points", tp, scene["target"], "EPSG:32633",
                        include_outliers=False)
    _, rows_in, enabled_in = read_points(tmp_path / "inliers.points")
    assert n_in == rows_in.shape[0] == 20 and enabled_in.all()


def test_points_file_plain_image_uses_col_minus_row(scene: dict, tmp_path: Path) -> None:
    plain_ref = Georef.plain(256, 256)
    tp = _tiepoints(plain_ref)
    path = tmp_path / "plain.points"
    write_points(path, tp, Georef.plain(256, 256), "")
    first = path.read_text(encoding="utf-8").split("\n")[0]
    assert first == POINTS_HEADER  # no CRS line

    crs_text, rows, enabled = read_points(path)
    assert crs_text == ""
    valid = np.isfinite(tp.target_xy).all(axis=1)
    np.testing.assert_array_equal(rows[:, 0], tp.ref_xy[valid, 0])
    np.testing.assert_array_equal(rows[:, 1], -tp.ref_xy[valid, 1])
    np.testing.assert_array_equal(rows[:, 2], tp.target_xy[valid, 0])
    np.testing.assert_array_equal(rows[:, 3], -tp.target_xy[valid, 1])
    assert (rows[:, 3] < 0).all()


def test_read_points_follows_qgis_load_rules(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.points"
    legacy.write_text(
        "#CRS: EPSG:32633\nmapX\tmapY\tpixelX\tpixelY\n1\t2\t3\t4\n5\t6\t7\t-8\t0\n9\t8\t7\t6\t1\n"
    )
    crs, rows, enabled = read_points(legacy)
    assert crs == "EPSG:32633"
    np.testing.assert_array_equal(rows, [[1, 2, 3, 4], [5, 6, 7, -8], [9, 8, 7, 6]])
    assert enabled.tolist() == [True, False, True]

    bad = tmp_path / "bad.points"
    bad.write_text("mapX,mapY,sourceX,sourceY\n1,2,3\n")
    with pytest.raises(ValueError, match="at least 4 columns"):
        read_points(bad)


# ---------------------------------------------------------------- GDAL GCPs


def test_gcp_vrt_holds_exact_gcps_and_warps(scene: dict, tmp_path: Path) -> None:
    tp: TiePoints = scene["tp"]
    vrt = tmp_path / "tgt_gcps.vrt"
    n = write_gcp_vrt(vrt, scene["folder"] / "tgt.tif", tp, scene["wkt"])
    use = np.isfinite(tp.target_xy).all(axis=1) & tp.inlier
    assert n == use.sum() == 20
    assert _files(tmp_path) == ["tgt_gcps.vrt"]

    ds = gdal.Open(str(vrt))
    gcps = ds.GetGCPs()
    assert _same_crs(ds.GetGCPProjection(), 32633)
    got = np.array([[g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY] for g in gcps])
    expected = np.concatenate(
        [tp.target_xy[use], scene["reference"].pixel_to_map(tp.ref_xy[use])], axis=1
    )
    np.testing.assert_array_equal(got, expected)
    assert [g.Id for g in gcps] == [str(i) for i in np.flatnonzero(use)]
    ds = None

    # GDAL fits a first-order polynomial to the GCPs: the result lands on the reference grid.
    out = gdal.Warp(str(tmp_path / "warped.tif"), str(vrt), polynomialOrder=1,
                    format="GTiff", resampleAlg="near")
    assert out.RasterCount == 1 and out.RasterXSize > 200
    gt = out.GetGeoTransform()
    assert abs(gt[0] - REF_GT[0]) < 5.0 and abs(gt[3] - REF_GT[3]) < 5.0
    assert abs(gt[1] - 10.0) < 0.2 and abs(gt[5] + 10.0) < 0.2
    assert _same_crs(out.GetProjection(), 32633)
    out = None

    with_outliers = write_gcp_vrt(tmp_path / "all.vrt", scene["folder"] / "tgt.tif", tp,
                                  scene["wkt"], include_outliers=True)
    assert with_outliers == 22
    infos = [g.Info for g in gdal.Open(str(tmp_path / "all.vrt")).GetGCPs()]
    assert infos.count("outlier") == 2


def test_gcp_vrt_plain_reference_has_no_projection(scene: dict, tmp_path: Path) -> None:
    tp = _tiepoints(Georef.plain(256, 256))
    write_gcp_vrt(tmp_path / "plain.vrt", scene["folder"] / "tgt.tif", tp, "")
    ds = gdal.Open(str(tmp_path / "plain.vrt"))
    assert ds.GetGCPProjection() == ""
    g = ds.GetGCPs()[0]
    i = int(g.Id)
    assert (g.GCPX, g.GCPY) == (tp.ref_xy[i, 0], -tp.ref_xy[i, 1])


def test_gcp_translate_args(scene: dict) -> None:
    tp: TiePoints = scene["tp"]
    text = gcp_translate_args(tp, scene["wkt"])
    assert text.count("-gcp ") == 20
    assert text.endswith("-a_srs EPSG:32633")
    first = [float(v) for v in text.split("-gcp ")[1].split()[:4]]
    ref_map = scene["reference"].pixel_to_map(tp.ref_xy[:1])[0]
    assert first == [tp.target_xy[0, 0], tp.target_xy[0, 1], ref_map[0], ref_map[1]]
    assert "-a_srs" not in gcp_translate_args(_tiepoints(Georef.plain(256, 256)), "")


# ---------------------------------------------------------------- GeoPackage


def test_tiepoint_gpkg_fields_crs_and_nodata(scene: dict, tmp_path: Path) -> None:
    tp: TiePoints = scene["tp"]
    path = tmp_path / "tiepoints.gpkg"
    assert write_tiepoints_gpkg(path, tp) == 25
    assert _files(tmp_path) == ["tiepoints.gpkg"]

    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("tiepoints")
    assert layer.GetFeatureCount() == 25
    assert layer.GetGeomType() == ogr.wkbPoint
    srs = layer.GetSpatialRef()
    assert srs is not None and srs.GetAuthorityCode(None) == "32633"
    defn = layer.GetLayerDefn()
    fields = {defn.GetFieldDefn(k).GetName(): defn.GetFieldDefn(k) for k in
              range(defn.GetFieldCount())}
    assert list(fields) == [name for name, _ in TIEPOINT_FIELDS]
    assert fields["POINT_ID"].GetType() == ogr.OFTInteger64
    assert fields["ABS_SHIFT"].GetType() == ogr.OFTReal
    assert fields["LAST_ERR"].GetType() == ogr.OFTString
    assert fields["OUTLIER"].GetType() == ogr.OFTInteger
    assert fields["OUTLIER"].GetSubType() == ogr.OFSTBoolean
    feat = layer.GetFeature(1)  # GeoPackage FIDs start at 1
    geom = feat.GetGeometryRef()
    assert (geom.GetX(), geom.GetY()) == (feat.GetField("X_MAP"), feat.GetField("Y_MAP"))
    ds = None

    cols = read_tiepoints_gpkg(path)
    ref_cols = tp.columns()
    for i in FAILED:
        assert cols["X_SHIFT_PX"][i] == NODATA_VALUE == cols["RESIDUAL_PX"][i]
        assert cols["TGT_X_IM"][i] == -9999.0
        assert cols["LAST_ERR"][i] == "no match: flat <template>"
        assert cols["L1_OUTLIER"][i] and cols["OUTLIER"][i]
    ok = np.isfinite(tp.target_xy).all(axis=1)
    for name, kind in TIEPOINT_FIELDS:
        if kind == "float":
            np.testing.assert_array_equal(cols[name][ok], np.asarray(ref_cols[name])[ok])
        elif kind in ("int", "bool"):
            np.testing.assert_array_equal(cols[name], ref_cols[name])
    assert cols["OUTLIER"].dtype == bool and cols["OUTLIER"].sum() == 5
    assert cols["MATCHER"] == ["ncc"] * 25


def test_tiepoint_gpkg_plain_image_has_no_crs(tmp_path: Path) -> None:
    path = tmp_path / "plain.gpkg"
    write_tiepoints_gpkg(path, _tiepoints(Georef.plain(256, 256)), layer_name="tp")
    ds = ogr.Open(str(path))  # keep the data set alive while its layer is used
    layer = ds.GetLayerByName("tp")
    srs = layer.GetSpatialRef()  # GeoPackage srs_id -1, the spec's "undefined Cartesian SRS"
    assert srs is None or (srs.IsLocal() and srs.GetName() == "Undefined Cartesian SRS")
    assert not (srs and srs.IsGeographic())
    with sqlite3.connect(str(path)) as con:
        assert con.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchall() == [(-1,)]
    assert layer.GetFeature(1).GetGeometryRef().GetY() == -20.5
    ds = None


# ---------------------------------------------------------------- shift field


def test_shift_field_values_and_georeferencing(scene: dict, tmp_path: Path) -> None:
    reference: Georef = scene["reference"]
    a = np.array([[1.01, 0.02], [-0.03, 0.99]])
    t = np.array([3.0, -2.0])

    def inverse_model(xy: np.ndarray) -> np.ndarray:
        out = xy @ a.T + t
        out[xy[:, 0] > 200] = np.nan  # a model that is undefined on the right edge
        return out

    path = tmp_path / "shift.tif"
    assert write_shift_field(path, reference, inverse_model, 50) == (6, 6)
    assert _files(tmp_path) == ["shift.tif"]
    ds = gdal.Open(str(path))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (6, 6, 2)
    assert ds.GetGeoTransform() == (500000.0, 500.0, 0.0, 5000000.0, 0.0, -500.0)
    assert _same_crs(ds.GetProjection(), 32633)
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    b1, b2 = ds.GetRasterBand(1), ds.GetRasterBand(2)
    assert b1.DataType == gdal.GDT_Float32
    assert b1.GetDescription().startswith("dx") and b2.GetDescription().startswith("dy")
    assert b1.GetNoDataValue() == SHIFT_FIELD_NODATA
    dx, dy = b1.ReadAsArray(), b2.ReadAsArray()
    ds = None

    centres = (np.arange(6) + 0.5) * 50.0
    cc, rr = np.meshgrid(centres, centres)
    p = np.stack([cc, rr], axis=-1).reshape(-1, 2)
    want = (p @ a.T + t - p).reshape(6, 6, 2)
    defined = cc <= 200
    np.testing.assert_allclose(dx[defined], want[..., 0][defined], atol=1e-5)
    np.testing.assert_allclose(dy[defined], want[..., 1][defined], atol=1e-5)
    assert (dx[~defined] == SHIFT_FIELD_NODATA).all() and (dy[~defined] == -9999.0).all()

    # A pure translation gives a constant field.
    write_shift_field(path, reference, lambda xy: xy + TRUE_SHIFT, 32)
    ds = gdal.Open(str(path))
    assert (ds.RasterXSize, ds.RasterYSize) == (8, 8)
    assert (ds.GetRasterBand(1).ReadAsArray() == 3.0).all()
    assert (ds.GetRasterBand(2).ReadAsArray() == 2.0).all()

    with pytest.raises(ValueError, match="step_px"):
        write_shift_field(path, reference, lambda xy: xy, 0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        write_shift_field(path, reference, lambda xy: xy[:, 0], 32)


# ---------------------------------------------------------------- report


def test_checkerboard_alternates_tiles() -> None:
    a, b = np.zeros((8, 6)), np.ones((8, 6))
    cb = checkerboard(a, b, tiles=2)
    assert (cb[:4, :3] == 0).all() and (cb[:4, 3:] == 1).all()
    assert (cb[4:, :3] == 1).all() and (cb[4:, 3:] == 0).all()
    with pytest.raises(ValueError, match="one shape"):
        checkerboard(a, np.ones((8, 5)))


def test_report_html_is_self_contained(scene: dict, tmp_path: Path) -> None:
    tp: TiePoints = scene["tp"]
    ref = scene["ref_arr"].astype(np.float64) / 255.0
    tgt = scene["tgt_arr"].astype(np.float64) / 255.0
    aligned = np.roll(tgt, (-2, -3), axis=(0, 1))
    report = {
        "method": "ncc <script>alert(1)</script>",
        "transform": {"type": "affine", "matrix_px": [[1.0, 0.0, -3.0], [0.0, 1.0, -2.0],
                                                      [0.0, 0.0, 1.0]]},
        "rmse_px": 0.2468,
        "rmse_map": 2.468,
        "ce90_px": 0.3579,
        "n_tiepoints": 25,
        "n_inliers": 20,
        "runtime_s": 1.5,
        "device": "cpu",
        "reference": "ref & co.tif",
    }
    figures_before = _pylab_helpers.Gcf.get_num_fig_managers()
    path = tmp_path / "report.html"
    write_report_html(path, report, tp,
                      checkerboard_before=checkerboard(ref, tgt),
                      checkerboard_after=(checkerboard(ref, aligned) * 255).astype(np.uint8),
                      extra_images={"Extra <chip>": array_png(ref)})
    assert _files(tmp_path) == ["report.html"]
    assert _pylab_helpers.Gcf.get_num_fig_managers() == figures_before  # no pyplot figures
    text = path.read_text(encoding="utf-8")

    uris = re.findall(r'src="([^"]*)"', text)
    assert len(uris) == 6  # 3 plots, 2 checkerboards, 1 extra
    for uri in uris:
        assert uri.startswith("data:image/png;base64,")
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "ref &amp; co.tif" in text and "Extra &lt;chip&gt;" in text
    for needle in ("0.2468", "2.468", "0.3579", "affine", "RMSE (metre)", "20 (80.0 %)",
                   "1.5 s", "cpu", "-3", "no match: flat &lt;template&gt;"):
        assert needle in text, needle
    assert text.count("<tr") >= 25 + 1 + 9  # tie-point table, its header, the summary


def test_report_html_tolerates_missing_keys(scene: dict) -> None:
    tp = _tiepoints(Georef.plain(256, 256))
    text = render_report_html({}, tp, checkerboard_before=None, checkerboard_after=None)
    assert text.count("data:image/png;base64,") == 3
    assert "No transform matrix" in text and "RMSE (px)" in text
    assert f"{ce90_px(tp):.4g} (from tie points)" in text
