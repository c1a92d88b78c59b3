"""The quality report: one self-contained HTML file.

Everything is inside the file: inline CSS, images as ``data:image/png;base64`` URIs, no
scripts and no external links, so it can be mailed, archived or opened offline. Every text
taken from the inputs is HTML-escaped.

The ``report`` dict is the engine's fit summary. Known keys (all optional): ``method``,
``transform`` (``{"type": str, "matrix_px": 3 x 3}``), ``rmse_px``, ``rmse_map``, ``ce90_px``,
``n_tiepoints``, ``n_inliers``, ``runtime_s``, ``device``, ``status`` / ``reasons`` (the verdict,
shown first as a coloured badge with its reasons) and ``rmse_cv_px`` / ``rmse_cv_map`` (the
cross-validated check-point error). Other scalar entries are listed in a "further values" table.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..tiepoints import TiePoints
from .atomic import atomic_write_text
from .plots import (
    array_png,
    ce90_px,
    residual_histogram_png,
    residual_scatter_png,
    shift_vectors_png,
)
from .points_file import srs_from_text

__all__ = ["MAX_TABLE_ROWS", "render_report_html", "write_report_html"]

#: Tie points listed in the report's table (the full table is in the GeoPackage).
MAX_TABLE_ROWS = 200

_KNOWN_KEYS = {
    "method", "transform", "rmse_px", "rmse_map", "ce90_px", "n_tiepoints", "n_inliers",
    "runtime_s", "device", "status", "reasons", "rmse_cv_px", "rmse_cv_map",
}
#: Badge colours of the verdict's statuses (background, text).
_STATUS_COLOURS = {"ok": ("#1a7f37", "#fff"), "uncertain": ("#d08700", "#fff"), "failed": ("#b00020", "#fff")}
_STATUS_TEXT = {
    "ok": "The checks found nothing wrong with this co-registration.",
    "uncertain": "Outputs were written, but check them before use:",
    "failed": "This co-registration failed:",
}
_TABLE_COLUMNS = [
    "POINT_ID", "X_IM", "Y_IM", "X_MAP", "Y_MAP", "X_SHIFT_PX", "Y_SHIFT_PX", "ABS_SHIFT",
    "ANGLE", "RELIABILITY", "SCORE", "RES_X_PX", "RES_Y_PX", "RESIDUAL_PX", "OUTLIER",
    "LAST_ERR",
]
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;
border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td.t,th.t{text-align:left}
tr.outlier td{color:#b00}
.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto;border:1px solid #ddd}
img.chip{image-rendering:pixelated;width:360px}
.note{color:#666;font-size:.85em}
.verdict{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin:1em 0}
.badge{display:inline-block;padding:.15em .7em;border-radius:1em;font-weight:bold;
text-transform:uppercase;letter-spacing:.05em}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 6) -> str:
    """Number as short text; "–" for missing/NaN."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def _map_units(crs_wkt: str) -> str:
    """Name of the reference's map unit ("px" for plain images)."""
    try:
        srs = srs_from_text(crs_wkt)
    except ValueError:
        return "map units"
    if srs is None:
        return "px"
    if srs.IsGeographic():
        return str(srs.GetAngularUnitsName() or "degree")
    return str(srs.GetLinearUnitsName() or "map units")


def _data_uri(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        mime = "image/png"
    elif data[:3] == b"\xff\xd8\xff":
        mime = "image/jpeg"
    else:
        raise ValueError("report images must be PNG or JPEG bytes")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _figure(data: bytes, caption: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return (f'<figure><img{cls} src="{_data_uri(data)}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _summary_rows(report: Mapping[str, Any], units: str, ce90: float) -> list[tuple[str, str]]:
    transform = report.get("transform") or {}
    ttype = transform.get("type") if isinstance(transform, Mapping) else None
    n_tp, n_in = report.get("n_tiepoints"), report.get("n_inliers")
    inliers = _num(n_in)
    try:
        if n_tp and n_in is not None:
            inliers += f" ({100.0 * float(n_in) / float(n_tp):.1f} %)"
    except (TypeError, ValueError):
        pass
    runtime = report.get("runtime_s")
    ce90_value = report.get("ce90_px")
    ce90_text = _num(ce90_value, 4) if ce90_value is not None else (
        _num(ce90, 4) + " (from tie points)" if math.isfinite(ce90) else "–")
    return [
        ("Method", _esc(report.get("method", "–"))),
        ("Transform", _esc(ttype if ttype is not None else "–")),
        ("Verdict", _esc(report.get("status", "–"))),
        ("RMSE (reference px)", _num(report.get("rmse_px"), 4)),
        (f"RMSE ({_esc(units)})", _num(report.get("rmse_map"), 4)),
        ("Cross-validated check-point RMSE (reference px)", _num(report.get("rmse_cv_px"), 4)),
        (f"Cross-validated check-point RMSE ({_esc(units)})", _num(report.get("rmse_cv_map"), 4)),
        ("CE90 (reference px)", ce90_text),
        ("Tie points", _num(n_tp)),
        ("Inliers", inliers),
        ("Runtime", _num(runtime, 4) + " s" if runtime is not None else "–"),
        ("Device", _esc(report.get("device", "–"))),
    ]


def _verdict_block(report: Mapping[str, Any]) -> str:
    """The verdict as a coloured badge, a sentence and its reasons ("" when the report has none)."""
    status = report.get("status")
    if status is None:
        return ""
    status = str(status)
    bg, fg = _STATUS_COLOURS.get(status, ("#555", "#fff"))
    reasons = report.get("reasons") or []
    items = "".join(f"<li>{_esc(r)}</li>" for r in reasons) if isinstance(reasons, list) else ""
    cv = report.get("rmse_cv_px")
    cv_text = (f"Cross-validated check-point RMSE: {_num(cv, 4)} px."
               if cv is not None else "Cross-validated check-point RMSE: not computable.")
    return (
        f'<div class="verdict" id="verdict"><span class="badge" style="background:{bg};color:{fg}">'
        f"{_esc(status)}</span> {_esc(_STATUS_TEXT.get(status, ''))}"
        + (f"<ul>{items}</ul>" if items else "")
        + f'<p class="note">{cv_text}</p></div>'
    )


def _matrix_table(report: Mapping[str, Any]) -> str:
    transform = report.get("transform")
    matrix = transform.get("matrix_px") if isinstance(transform, Mapping) else None
    if matrix is None:
        return '<p class="note">No transform matrix in the report.</p>'
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        return f'<p class="note">Transform matrix not numeric: {_esc(matrix)}</p>'
    if m.ndim != 2:
        return f'<p class="note">Transform matrix has shape {_esc(m.shape)}.</p>'
    rows = "".join(
        "<tr>" + "".join(f"<td>{_num(v, 10)}</td>" for v in row) + "</tr>" for row in m
    )
    return (
        '<p class="note">The fitted transform as reported by the engine, in homogeneous pixel '
        "coordinates (col, row, 1).</p>"
        f"<table>{rows}</table>"
    )


def _further_values(report: Mapping[str, Any]) -> str:
    rows = [
        f'<tr><th class="t">{_esc(k)}</th><td class="t">'
        f"{_num(v) if isinstance(v, int | float | np.number) else _esc(v)}</td></tr>"
        for k, v in report.items()
        if k not in _KNOWN_KEYS and isinstance(v, str | int | float | bool | np.number)
    ]
    if not rows:
        return ""
    return "<h2>Further values</h2><table>" + "".join(rows) + "</table>"


def _tiepoint_table(tiepoints: TiePoints) -> str:
    cols = tiepoints.columns()
    n = len(tiepoints)
    shown = min(n, MAX_TABLE_ROWS)
    head = "".join(
        ('<th class="t">' if name == "LAST_ERR" else "<th>") + f"{_esc(name)}</th>"
        for name in _TABLE_COLUMNS
    )
    body: list[str] = []
    outlier = np.asarray(tiepoints.outlier, bool)
    for i in range(shown):
        cells = []
        for name in _TABLE_COLUMNS:
            value = cols[name][i]
            if name == "LAST_ERR":
                cells.append(f'<td class="t">{_esc(value)}</td>')
            else:
                cells.append(f"<td>{_num(value, 7)}</td>")
        cls = ' class="outlier"' if outlier[i] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    note = (f'<p class="note">First {shown} of {n} tie points; the full table is in the tie-point '
            "layer.</p>" if n > shown else f'<p class="note">{n} tie points.</p>')
    return f"{note}<table><tr>{head}</tr>{''.join(body)}</table>"


def render_report_html(
    report: Mapping[str, Any],
    tiepoints: TiePoints,
    *,
    checkerboard_before: np.ndarray | None,
    checkerboard_after: np.ndarray | None,
    extra_images: Mapping[str, bytes] | None = None,
    title: str = "sarcoreg co-registration report",
) -> str:
    """Build the report as one HTML string (see :func:`write_report_html`)."""
    units = _map_units(tiepoints.reference.crs_wkt)
    ce90_points = ce90_px(tiepoints)
    ce90_report = report.get("ce90_px")
    try:
        ce90_circle = float(ce90_report) if ce90_report is not None else ce90_points
    except (TypeError, ValueError):
        ce90_circle = ce90_points

    summary = "".join(
        f'<tr><th class="t">{label}</th><td>{value}</td></tr>'
        for label, value in _summary_rows(report, units, ce90_points)
    )
    plots = [
        _figure(shift_vectors_png(tiepoints, units),
                "Tie-point shift vectors (exaggerated) over the reference extent, coloured by "
                "fit residual; outliers in red"),
        _figure(residual_scatter_png(tiepoints, ce90_circle),
                "Fit residuals dx vs dy with the CE90 circle"),
        _figure(residual_histogram_png(tiepoints), "Histogram of residual magnitudes"),
    ]
    chips: list[str] = []
    if checkerboard_before is not None:
        chips.append(_figure(array_png(checkerboard_before), "Checkerboard before", "chip"))
    if checkerboard_after is not None:
        chips.append(_figure(array_png(checkerboard_after), "Checkerboard after", "chip"))
    extras = [_figure(data, name) for name, data in (extra_images or {}).items()]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        _verdict_block(report),
        "<h2>Summary</h2>",
        f"<table>{summary}</table>",
        "<h2>Transform matrix</h2>",
        _matrix_table(report),
        _further_values(report),
        "<h2>Tie points and residuals</h2>",
        f'<div class="figs">{"".join(plots)}</div>',
    ]
    if chips:
        parts += ["<h2>Before / after</h2>", f'<div class="figs">{"".join(chips)}</div>']
    if extras:
        parts += ["<h2>More figures</h2>", f'<div class="figs">{"".join(extras)}</div>']
    parts += ["<h2>Tie-point table</h2>", _tiepoint_table(tiepoints), "</body></html>"]
    return "\n".join(parts) + "\n"


def write_report_html(
    path: Path | str,
    report: Mapping[str, Any],
    tiepoints: TiePoints,
    *,
    checkerboard_before: np.ndarray | None,
    checkerboard_after: np.ndarray | None,
    extra_images: Mapping[str, bytes] | None = None,
) -> None:
    """Write the quality report as one self-contained HTML file (atomically).

    Args:
        path: Output ``.html`` file.
        report: Fit summary; missing keys show as "–" (see the module docstring).
        tiepoints: The tie points (plots and the table of the first
            :data:`MAX_TABLE_ROWS` rows).
        checkerboard_before: Checkerboard of reference and target before co-registration,
            ``(H, W)`` float in [0, 1] or uint8 (see :func:`plots.checkerboard`); None to skip.
        checkerboard_after: The same after co-registration; None to skip.
        extra_images: More figures to embed, caption -> PNG or JPEG bytes.

    Raises:
        ValueError: If an image is not a 2-D array or not PNG/JPEG bytes.
    """
    text = render_report_html(
        report,
        tiepoints,
        checkerboard_before=checkerboard_before,
        checkerboard_after=checkerboard_after,
        extra_images=extra_images,
    )
    atomic_write_text(path, text)
