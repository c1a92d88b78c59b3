"""The summary of a batch: ``summary.csv``, ``summary.gpkg`` (styled by status), ``summary.html``.

Each file is written to a hidden temporary name and renamed into place, so a reader never sees
half a summary.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .footprints import Footprints, target_footprints
from .rows import FIELDS, STATUSES

__all__ = ["STATUS_COLOURS", "status_qml", "write_summary"]

#: Fill colour (RGB) of each status in the layer style and the HTML map.
STATUS_COLOURS: dict[str, tuple[int, int, int]] = {
    "ok": (44, 160, 44),
    "uncertain": (255, 159, 28),
    "failed": (214, 39, 40),
    "error": (120, 60, 150),
    "not run": (170, 170, 170),
}
#: Layer name inside ``summary.gpkg``.
LAYER = "summary"
_INT_FIELDS = {"n_inliers", "n_tiepoints"}
_REAL_FIELDS = {"rmse_px", "rmse_cv_px", "shift_x_px", "shift_y_px", "runtime_s", "cpu_s"}


def _tmp(path: Path) -> Path:
    return path.parent / f".{path.stem}.{os.getpid()}.partial{path.suffix}"


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One line per row, the columns of :data:`FIELDS` (empty cells for missing values)."""
    tmp = _tmp(path)
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(FIELDS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in FIELDS})
    os.replace(tmp, path)
    return path


def status_qml() -> str:
    """A QGIS style (QML): polygons filled by ``status`` in :data:`STATUS_COLOURS`, half transparent."""
    cats, syms = [], []
    for i, status in enumerate(STATUSES):
        r, g, b = STATUS_COLOURS[status]
        cats.append(f'<category render="true" symbol="{i}" value="{status}" label="{status}"/>')
        syms.append(
            f'<symbol type="fill" name="{i}" alpha="0.55" clip_to_extent="1" force_rhr="0">'
            '<layer class="SimpleFill" enabled="1" locked="0" pass="0"><Option type="Map">'
            f'<Option type="QString" name="color" value="{r},{g},{b},255"/>'
            f'<Option type="QString" name="outline_color" value="{r // 2},{g // 2},{b // 2},255"/>'
            '<Option type="QString" name="outline_width" value="0.5"/>'
            '<Option type="QString" name="outline_width_unit" value="MM"/>'
            '<Option type="QString" name="style" value="solid"/>'
            '<Option type="QString" name="outline_style" value="solid"/>'
            "</Option></layer></symbol>"
        )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology|Labeling">\n'
        '<renderer-v2 type="categorizedSymbol" attr="status" symbollevels="0" enableorderby="0" forceraster="0">\n'
        f"<categories>{''.join(cats)}</categories>\n<symbols>{''.join(syms)}</symbols>\n"
        "</renderer-v2>\n<layerGeometryType>2</layerGeometryType>\n</qgis>\n"
    )


def _add_style(ds: Any, geometry_column: str, qml: str) -> None:
    """Store ``qml`` as the default style of the summary layer (the GeoPackage ``layer_styles`` table).

    QGIS reads this table when it opens the layer and applies the default style, so the layer
    shows coloured by status wherever it is opened.
    """
    from osgeo import ogr

    styles = ds.CreateLayer("layer_styles", geom_type=ogr.wkbNone)
    for name, kind in (("f_table_catalog", ogr.OFTString), ("f_table_schema", ogr.OFTString),
                       ("f_table_name", ogr.OFTString), ("f_geometry_column", ogr.OFTString),
                       ("styleName", ogr.OFTString), ("styleQML", ogr.OFTString), ("styleSLD", ogr.OFTString),
                       ("useAsDefault", ogr.OFTInteger), ("description", ogr.OFTString),
                       ("owner", ogr.OFTString), ("ui", ogr.OFTString), ("update_time", ogr.OFTDateTime)):
        defn = ogr.FieldDefn(name, kind)
        if name == "useAsDefault":
            defn.SetSubType(ogr.OFSTBoolean)
        styles.CreateField(defn)
    feat = ogr.Feature(styles.GetLayerDefn())
    for key, value in (("f_table_catalog", ""), ("f_table_schema", ""), ("f_table_name", LAYER),
                       ("f_geometry_column", geometry_column), ("styleName", "sarcoreg status"),
                       ("styleQML", qml), ("styleSLD", ""), ("description", "pairs coloured by status"),
                       ("owner", ""), ("ui", "")):
        feat.SetField(key, value)
    feat.SetField("useAsDefault", 1)
    feat.SetField("update_time", time.strftime("%Y/%m/%d %H:%M:%S"))
    styles.CreateFeature(feat)


def write_gpkg(rows: Sequence[dict[str, Any]], footprints: Footprints, path: Path) -> Path:
    """The rows as polygons (target footprints; no geometry where unknown), styled by status."""
    from osgeo import ogr, osr

    tmp = _tmp(path)
    tmp.unlink(missing_ok=True)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
    if ds is None:
        raise OSError(f"cannot create the GeoPackage '{tmp}'")
    srs = None
    if footprints.crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(footprints.crs_wkt)
    layer = ds.CreateLayer(LAYER, srs=srs, geom_type=ogr.wkbPolygon, options=["GEOMETRY_NAME=geom"])
    for name in FIELDS:
        kind = ogr.OFTInteger if name in _INT_FIELDS or name == "reused" else \
            ogr.OFTReal if name in _REAL_FIELDS else ogr.OFTString
        defn = ogr.FieldDefn(name, kind)
        if name == "reused":
            defn.SetSubType(ogr.OFSTBoolean)
        layer.CreateField(defn)
    ds.StartTransaction()
    for row, ring in zip(rows, footprints.rings, strict=True):
        feat = ogr.Feature(layer.GetLayerDefn())
        for name in FIELDS:
            value = row.get(name)
            if value is None or value == "":
                if name in _INT_FIELDS or name in _REAL_FIELDS:
                    continue
                value = ""
            feat.SetField(name, int(bool(value)) if name == "reused" else value)
        if ring is not None:
            geom_ring = ogr.Geometry(ogr.wkbLinearRing)
            for x, y in ring:
                geom_ring.AddPoint_2D(float(x), float(y))
            poly = ogr.Geometry(ogr.wkbPolygon)
            poly.AddGeometry(geom_ring)
            feat.SetGeometry(poly)
        layer.CreateFeature(feat)
    ds.CommitTransaction()
    _add_style(ds, layer.GetGeometryColumn() or "geom", status_qml())
    ds = None
    os.replace(tmp, path)
    return path


def _map_png(rows: Sequence[dict[str, Any]], footprints: Footprints) -> str | None:
    """A PNG (base64) of the footprints filled by status, or None when no row has one."""
    if not any(r is not None for r in footprints.rings):
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Polygon

    fig = Figure(figsize=(7.0, 6.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    seen = set()
    for row, ring in zip(rows, footprints.rings, strict=True):
        if ring is None:
            continue
        status = str(row.get("status"))
        r, g, b = STATUS_COLOURS.get(status, (0, 0, 0))
        ax.add_patch(Polygon(ring, closed=True, facecolor=(r / 255, g / 255, b / 255, 0.45),
                             edgecolor=(r / 510, g / 510, b / 510, 1.0), linewidth=0.8))
        if len(rows) <= 60:
            xs, ys = zip(*ring, strict=True)
            ax.annotate(str(row["id"]), (sum(xs) / len(xs), sum(ys) / len(ys)), ha="center", va="center", fontsize=7)
        seen.add(status)
    ax.autoscale_view()
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("Target footprints by status")
    handles = [Patch(facecolor=tuple(c / 255 for c in STATUS_COLOURS[s]), label=s) for s in STATUSES if s in seen]
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _worst(rows: Sequence[dict[str, Any]], n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` worst rows: errors and failures first, then the highest check-point error."""
    rank = {"error": 0, "failed": 1, "uncertain": 2, "not run": 3, "ok": 4}

    def key(r: dict[str, Any]) -> tuple[int, float]:
        cv = r.get("rmse_cv_px")
        return rank.get(str(r.get("status")), 5), -(cv if isinstance(cv, (int, float)) else float("inf"))

    return sorted(rows, key=key)[:n]


def _link(row: dict[str, Any], out_dir: Path) -> str:
    rep = str(row.get("report") or "")
    label = html.escape(str(row["id"]))
    if not rep:
        return label
    try:
        href = os.path.relpath(rep, out_dir)
    except ValueError:
        href = rep
    return f'<a href="{html.escape(href)}">{label}</a>'


def _table(rows: Sequence[dict[str, Any]], out_dir: Path) -> str:
    cols = ("status", "rmse_cv_px", "n_inliers", "shift_x_px", "shift_y_px", "runtime_s", "reused")
    head = "<tr><th>id</th>" + "".join(f"<th>{c}</th>" for c in cols) + "<th>reasons / error</th></tr>"
    body = []
    for r in rows:
        colour = "rgb({},{},{})".format(*STATUS_COLOURS.get(str(r.get("status")), (0, 0, 0)))
        cells = "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols)
        why = html.escape(str(r.get("error") or r.get("reasons") or ""))
        body.append(f'<tr><td style="border-left:6px solid {colour}">{_link(r, out_dir)}</td>{cells}'
                    f"<td class=why>{why}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def write_html(rows: Sequence[dict[str, Any]], footprints: Footprints, path: Path, info: dict[str, Any]) -> Path:
    """Counts by status, the footprint map, the worst pairs (linked to their reports) and every row."""
    counts = Counter(str(r.get("status")) for r in rows)
    count_cells = "".join(
        '<tr><td><span class=dot style="background:rgb({},{},{})"></span>{}</td><td>{}</td></tr>'.format(
            *STATUS_COLOURS.get(s, (0, 0, 0)), html.escape(s), counts[s])
        for s in [*STATUSES, *sorted(set(counts) - set(STATUSES))] if counts[s])
    png = _map_png(rows, footprints)
    figure = f'<img alt="footprints" src="data:image/png;base64,{png}">' if png else "<p>No target has a footprint.</p>"
    facts = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in info.items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sarcoreg batch summary</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} .dot{{display:inline-block;width:11px;height:11px;
margin-right:6px;border-radius:2px}} .why{{max-width:40em;font-size:12px}}</style></head><body>
<h1>sarcoreg batch: {len(rows)} pairs</h1>
<ul>{facts}</ul>
<h2>Counts by status</h2><table><tr><th>status</th><th>pairs</th></tr>{count_cells}</table>
<h2>Map</h2>{figure}
<h2>Worst pairs</h2>{_table(_worst(rows), path.parent)}
<h2>All pairs</h2>{_table(rows, path.parent)}
</body></html>
"""
    tmp = _tmp(path)
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_summary(rows: Sequence[dict[str, Any]], out_dir: Path, info: dict[str, Any] | None = None
                  ) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.gpkg`` (+ ``summary.qml``) and ``summary.html`` into ``out_dir``.

    Returns:
        ``{"csv": ..., "gpkg": ..., "qml": ..., "html": ...}`` paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    footprints = target_footprints([str(r.get("target") or "") for r in rows])
    paths = {"csv": write_csv(rows, out_dir / "summary.csv"),
             "gpkg": write_gpkg(rows, footprints, out_dir / "summary.gpkg")}
    qml = out_dir / "summary.qml"
    tmp = _tmp(qml)
    tmp.write_text(status_qml(), encoding="utf-8")
    os.replace(tmp, qml)
    paths["qml"] = qml
    paths["html"] = write_html(rows, footprints, out_dir / "summary.html", dict(info or {}))
    return paths
