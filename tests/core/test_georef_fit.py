"""The transform is fitted in the reference grid's pixels, after the target's own georeferencing.

Every case starts from a real optical image (EPFL RGB-NIR 'country' scene) written as a 10 m
UTM GeoTIFF (the "world"). The reference is a crop of it with the right georeferencing; the
target is the same world whose georeferencing is wrong by a known map error ``E`` (metres),
brought by GDAL onto another grid: 20 m pixels, EPSG:3857, a rotated geotransform, no CRS, or a
reference without georeferencing. The correction the engine fits must then be the translation
``-E`` in reference pixels, and every output must put the target's content where it belongs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from osgeo import gdal, osr
from sarcoreg.core.engine import CoregOptions, CoregResult, coregister
from sarcoreg.core.exports import read_points

from tests.conftest import shared_data

gdal.UseExceptions()

#: Map error of the target's georeferencing (metres, x east / y north): claimed = true + E.
E = (37.0, -23.0)
#: The correction it implies in reference pixels (10 m, rows downwards).
D = (-E[0] / 10.0, E[1] / 10.0)
UTM = "EPSG:32633"
#: The world image's top-left corner: reference pixel (0, 0) is world pixel (200, 100).
WORLD_ORIGIN = (498000.0, 5001000.0)
REF_ORIGIN = (500000.0, 5000000.0)
REF_SIZE = 360
OPTIONS = {"method": "ncc", "spacing": 40, "window": 48, "search_radius": 10, "reference_modality": "optical",
           "target_modality": "optical"}


def _wkt(crs: str) -> str:
    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    return str(srs.ExportToWkt())


def _write(path: Path, arr: np.ndarray, gt: tuple[float, ...] | None, crs: str) -> Path:
    """A float32 GeoTIFF; ``gt`` None: no geotransform; ``crs`` "": no CRS."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[1], arr.shape[0], 1, gdal.GDT_Float32)
    if gt is not None:
        ds.SetGeoTransform(gt)
    if crs:
        ds.SetProjection(_wkt(crs))
    ds.GetRasterBand(1).WriteArray(arr.astype(np.float32))
    ds = None
    return path


def _read(path: Path | str) -> np.ndarray:
    ds = gdal.Open(str(path))  # kept while its band is read (a band outliving its dataset crashes)
    return np.asarray(ds.GetRasterBand(1).ReadAsArray(), np.float64)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference (right georeferencing) and the world with the georeferencing error ``E``."""
    d = tmp_path_factory.mktemp("georef_fit")
    img = cv2.imread(str(shared_data("vis-nir", "registration", "country", "0003_rgb.jpg")), cv2.IMREAD_GRAYSCALE)
    img = img.astype(np.float32)
    ref = img[100:100 + REF_SIZE, 200:200 + REF_SIZE]
    out = {
        "img": d / "img.npy",
        "reference": _write(d / "reference.tif", ref, (REF_ORIGIN[0], 10.0, 0.0, REF_ORIGIN[1], 0.0, -10.0), UTM),
        "world_wrong": _write(d / "world_wrong.tif", img, (WORLD_ORIGIN[0] + E[0], 10.0, 0.0,
                                                          WORLD_ORIGIN[1] + E[1], 0.0, -10.0), UTM),
        "dir": d,
    }
    np.save(out["img"], img)
    return out


def _target_20m(world: dict[str, Path], name: str, bounds: tuple[float, float, float, float], crs: str = UTM
                ) -> Path:
    """The wrongly georeferenced world resampled to 20 m over ``bounds`` (claimed coordinates)."""
    path = world["dir"] / name
    ds = gdal.Warp(str(path), str(world["world_wrong"]), xRes=20.0, yRes=20.0, outputBounds=bounds,
                   resampleAlg="average")
    ds = None
    if not crs:  # the same pixels and geotransform, without a CRS
        ds = gdal.Open(str(path))
        arr, gt = ds.GetRasterBand(1).ReadAsArray(), ds.GetGeoTransform()
        ds = None
        _write(path, arr, gt, "")
    return path


def _correction(res: CoregResult) -> np.ndarray:
    """The fitted correction, as the mean displacement it gives over the reference grid."""
    pts = np.array([[60.0, 60.0], [300.0, 60.0], [60.0, 300.0], [300.0, 300.0], [180.0, 180.0]])
    return np.asarray(res.fit.model.apply(pts) - pts)


def _corrected_gt(gt: tuple[float, ...]) -> np.ndarray:
    """The target's geotransform with the map error ``E`` taken out."""
    return np.array([gt[0] - E[0], gt[1], gt[2], gt[3] - E[1], gt[4], gt[5]])


def _misalignment_px(a: np.ndarray, b: np.ndarray) -> float:
    """Sub-pixel offset (pixels) between two images of one grid, by phase correlation on the common data."""
    ok = np.isfinite(a) & np.isfinite(b) & (b != 0)
    rows, cols = np.nonzero(ok.all(axis=1))[0], np.nonzero(ok.all(axis=0))[0]
    assert len(rows) >= 128 and len(cols) >= 128, "the two images share too little data"
    win = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    a, b = a[win], b[win]
    hann = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_64F)
    (sx, sy), _ = cv2.phaseCorrelate((a - a.mean()).astype(np.float64), (b - b.mean()).astype(np.float64), hann)
    return float(np.hypot(sx, sy))


def _warp_onto_reference(src: str | gdal.Dataset, out: Path) -> np.ndarray:
    """``gdalwarp -order 1`` of ``src`` (GCPs) onto the reference grid; returns the pixels (NaN outside)."""
    bounds = (REF_ORIGIN[0], REF_ORIGIN[1] - 10.0 * REF_SIZE, REF_ORIGIN[0] + 10.0 * REF_SIZE, REF_ORIGIN[1])
    ds = gdal.Warp(str(out), src, dstSRS=UTM, outputBounds=bounds, width=REF_SIZE, height=REF_SIZE,
                   polynomialOrder=1, resampleAlg="bilinear", dstNodata=-9999.0, outputType=gdal.GDT_Float32)
    del ds  # closing writes the file
    arr = _read(out)
    arr[arr == -9999.0] = np.nan
    return arr


@pytest.fixture(scope="module")
def run_20m(world: dict[str, Path]) -> tuple[Path, CoregResult, Path]:
    """The 20 m target co-registered with ``transform=shift``: ``(target, result, output folder)``."""
    tgt = _target_20m(world, "t20.tif", (499600.0, 4996000.0, 504000.0, 5000400.0))
    out = world["dir"] / "out20"
    res = coregister(world["reference"], tgt, out, CoregOptions(transform="shift", **OPTIONS),
                     write_outputs=["coregistered", "points", "gcp_vrt", "shifts", "tiepoints"])
    return tgt, res, out


def test_shift_on_a_20m_target_recovers_the_offset_and_the_geotransform(run_20m) -> None:  # type: ignore[no-untyped-def]
    tgt, res, out = run_20m
    err = _correction(res) - D
    assert np.abs(err).max() < 0.3, (res.report["n_inliers"], _correction(res))  # metres: < 3 m
    assert res.fit.n_inliers >= 10
    assert res.report["transform"]["space"] == "reference_pixels"
    # Composite target px -> reference px: scale 2 (20 m onto 10 m) and the corrected origin.
    composite = np.asarray(res.report["transform"]["target_to_reference_matrix_px"])
    assert np.allclose(composite[:2, :2], [[2.0, 0.0], [0.0, 2.0]], atol=1e-9)
    ds = gdal.Open(str(out / "coregistered.tif"))
    assert res.report["coregistered_by"] == "geotransform"
    gt = np.asarray(ds.GetGeoTransform())
    truth = _corrected_gt(gdal.Open(str(tgt)).GetGeoTransform())
    assert np.abs(gt - truth).max() < 3.0, (gt, truth)
    assert osr.SpatialReference(wkt=ds.GetProjection()).GetAuthorityCode(None) == "32633"
    # The tie-point shift fields and the shift field are the georeferencing error too.
    inl = res.tiepoints.inlier
    assert np.median(res.tiepoints.shift_px[inl], axis=0) == pytest.approx([-D[0], -D[1]], abs=0.3)
    shifts = gdal.Open(str(out / "shifts.tif"))
    dx, dy = shifts.GetRasterBand(1).ReadAsArray(), shifts.GetRasterBand(2).ReadAsArray()
    shifts = None
    assert float(np.median(dx)) == pytest.approx(-D[0], abs=0.3) and float(np.median(dy)) == pytest.approx(-D[1],
                                                                                                          abs=0.3)


def test_gcps_warp_the_20m_target_onto_the_reference(world, run_20m, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """gcps.vrt / gcps.points pair original target pixels with reference map coordinates: gdalwarp -order 1."""
    tgt, res, out = run_20m
    ref = _read(world["reference"])
    warped = _warp_onto_reference(str(out / "gcps.vrt"), tmp_path / "from_vrt.tif")
    assert _misalignment_px(ref, warped) < 0.5
    crs, rows, enabled = read_points(out / "gcps.points")
    assert "32633" in crs or "UTM zone 33N" in crs
    tgt_ds = gdal.Open(str(tgt))
    inv = gdal.InvGeoTransform(tgt_ds.GetGeoTransform())
    gcps = []
    for (mx, my, sx, sy), on in zip(rows, enabled, strict=True):
        if on:
            col, row = gdal.ApplyGeoTransform(inv, sx, sy)  # sourceX/Y are the target's map coordinates
            gcps.append(gdal.GCP(float(mx), float(my), 0.0, col, row))
    assert len(gcps) >= 10
    from_points = gdal.Translate("", tgt_ds, format="VRT", GCPs=gcps, outputSRS=UTM)
    warped = _warp_onto_reference(from_points, tmp_path / "from_points.tif")
    assert _misalignment_px(ref, warped) < 0.5


@pytest.mark.parametrize("transform", ["shift", "affine"])
def test_target_in_web_mercator_with_a_map_shift(world, tmp_path: Path, transform: str) -> None:  # type: ignore[no-untyped-def]
    tgt = world["dir"] / "t3857.tif"
    if not tgt.exists():
        ds = gdal.Warp(str(tgt), str(world["world_wrong"]), dstSRS="EPSG:3857", xRes=14.0, yRes=14.0,
                       resampleAlg="average")
        ds = None
    res = coregister(world["reference"], tgt, tmp_path / "out", CoregOptions(transform=transform, **OPTIONS),
                     write_outputs=["coregistered"])
    assert res.report["grid"]["mode"] == "georeferenced"
    assert np.abs(_correction(res) - D).max() < 0.3, _correction(res)
    # Original target pixel -> reference pixel through the 3857 georeferencing and the correction.
    ds = gdal.Open(str(tgt))
    gt = ds.GetGeoTransform()
    merc, utm = osr.SpatialReference(), osr.SpatialReference()
    merc.SetFromUserInput("EPSG:3857")
    utm.SetFromUserInput(UTM)
    for s in (merc, utm):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ref_px = np.array([[40.0, 40.0], [320.0, 50.0], [60.0, 310.0], [300.0, 300.0]])
    # Find the target pixels that truly belong at ref_px: true UTM -> claimed UTM -> 3857 -> target px.
    back = osr.CoordinateTransformation(utm, merc)
    inv = gdal.InvGeoTransform(gt)
    tgt_px = []
    for x, y in ref_px:
        mx, my = REF_ORIGIN[0] + 10.0 * x + E[0], REF_ORIGIN[1] - 10.0 * y + E[1]
        wx, wy, _ = back.TransformPoint(mx, my)
        tgt_px.append(gdal.ApplyGeoTransform(inv, wx, wy))
    got = res.target_to_reference(np.asarray(tgt_px))
    assert np.abs(got - ref_px).max() < 0.3, got - ref_px
    assert res.report["coregistered_by"] == "warp"
    assert _misalignment_px(_read(world["reference"]), _read(tmp_path / "out" / "coregistered.tif")) < 0.3


def test_rotated_target_keeps_its_rotated_geotransform_corrected(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = np.load(world["img"])
    size, pix, theta = 400, 12.0, np.radians(12.0)
    lin = np.array([[pix * np.cos(theta), pix * np.sin(theta)], [pix * np.sin(theta), -pix * np.cos(theta)]])
    centre = np.array([REF_ORIGIN[0] + 1800.0, REF_ORIGIN[1] - 1800.0])
    origin = centre - lin @ [size / 2, size / 2]
    gt = (origin[0], lin[0, 0], lin[0, 1], origin[1], lin[1, 0], lin[1, 1])
    cc, rr = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    mx = origin[0] + lin[0, 0] * cc + lin[0, 1] * rr  # claimed map coordinates of the pixel centres
    my = origin[1] + lin[1, 0] * cc + lin[1, 1] * rr
    # Claimed position = true + E, and the world has the true positions: sample it at claimed - E.
    u = (mx - E[0] - WORLD_ORIGIN[0]) / 10.0 - 0.5
    v = (WORLD_ORIGIN[1] - (my - E[1])) / 10.0 - 0.5
    arr = cv2.remap(cv2.GaussianBlur(img, (0, 0), 0.5), u.astype(np.float32), v.astype(np.float32),
                    cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))
    tgt = _write(tmp_path / "rotated.tif", arr, gt, UTM)
    res = coregister(world["reference"], tgt, tmp_path / "out", CoregOptions(transform="shift", **OPTIONS),
                     write_outputs=["coregistered"])
    assert np.abs(_correction(res) - D).max() < 0.3, _correction(res)
    assert res.report["coregistered_by"] == "geotransform"
    out_gt = np.asarray(gdal.Open(str(tmp_path / "out" / "coregistered.tif")).GetGeoTransform())
    truth = _corrected_gt(gt)
    assert np.abs(out_gt - truth).max() < 3.0, (out_gt, truth)


def test_geotransform_without_crs_is_used_in_the_reference_crs(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Another extent than the reference (a 70 px / 110 px offset of the grids), 20 m, no CRS.
    tgt = _target_20m(world, "t20_nocrs.tif", (500700.0, 4995300.0, 504700.0, 4999300.0), crs="")
    assert gdal.Open(str(tgt)).GetProjection() == ""
    res = coregister(world["reference"], tgt, tmp_path / "out", CoregOptions(transform="shift", **OPTIONS),
                     write_outputs=["coregistered"])
    assert res.report["grid"]["mode"] == "georeferenced"
    assert any("no CRS" in w for w in res.report["warnings"]), res.report["warnings"]
    assert np.abs(_correction(res) - D).max() < 0.3, _correction(res)
    ds = gdal.Open(str(tmp_path / "out" / "coregistered.tif"))
    out_gt = np.asarray(ds.GetGeoTransform())
    truth = _corrected_gt(gdal.Open(str(tgt)).GetGeoTransform())
    assert np.abs(out_gt - truth).max() < 3.0, (out_gt, truth)
    assert osr.SpatialReference(wkt=ds.GetProjection()).GetAuthorityCode(None) == "32633"


def test_reference_without_georeferencing_makes_up_no_grid(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain_ref = _write(tmp_path / "plain_ref.tif", _read(world["reference"]), None, "")
    # The target: same 10 m pixel grid as the reference's content, georeferenced (wrongly by E) in UTM.
    tgt = tmp_path / "t10.tif"
    ds = gdal.Warp(str(tgt), str(world["world_wrong"]), xRes=10.0, yRes=10.0, resampleAlg="cubic",
                   outputBounds=(REF_ORIGIN[0], REF_ORIGIN[1] - 3600.0, REF_ORIGIN[0] + 3600.0, REF_ORIGIN[1]))
    ds = None
    res = coregister(plain_ref, tgt, tmp_path / "out", CoregOptions(transform="shift", **OPTIONS),
                     write_outputs=["coregistered", "points"])
    assert res.report["grid"]["mode"] == "pixel"
    assert any("reference" in w and "no georeferencing" in w for w in res.report["warnings"]), res.report["warnings"]
    assert np.abs(_correction(res) - D).max() < 0.3, _correction(res)
    ds = gdal.Open(str(tmp_path / "out" / "coregistered.tif"))
    # In the reference's pixel coordinates (plain-image convention x = col, y = -row), without a CRS:
    # not the target's CRS with a 1 m pixel.
    assert ds.GetProjection() == ""
    assert np.asarray(ds.GetGeoTransform()) == pytest.approx([D[0], 1.0, 0.0, -D[1], 0.0, -1.0], abs=0.3)
    crs, _, _ = read_points(tmp_path / "out" / "gcps.points")
    assert crs == ""
