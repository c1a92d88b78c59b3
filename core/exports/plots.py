"""Figures for the quality report, rendered to PNG bytes.

Matplotlib is used through its object API with the Agg canvas (``Figure`` +
``FigureCanvasAgg``), never through ``pyplot``: no global figure state, no GUI backend, safe in
a worker thread or a QGIS process.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.patches import Circle, Polygon

from ..tiepoints import TiePoints

__all__ = [
    "new_figure",
    "save_png",
    "array_png",
    "ce90_px",
    "checkerboard",
    "figure_png",
    "residual_histogram_png",
    "residual_scatter_png",
    "shift_vectors_png",
]

_PNG_METADATA = {"Software": None}  # keep matplotlib's URL out of the files


def figure_png(fig: Figure) -> bytes:
    """Render a matplotlib figure to PNG bytes with the Agg canvas."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_METADATA)
    return buf.getvalue()


def new_figure(width_in: float = 6.4, height_in: float = 4.8, dpi: int = 100) -> Figure:
    """A matplotlib figure on its own Agg canvas (no pyplot, no global state)."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG file (folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(figure_png(fig))
    return out


def ce90_px(tiepoints: TiePoints) -> float:
    """CE90: 90th percentile of the inliers' residual magnitudes, reference pixels.

    Returns:
        The CE90, NaN when no inlier has a finite residual.
    """
    res = np.asarray(tiepoints.residual_px, dtype=np.float64)
    mag = np.hypot(res[:, 0], res[:, 1])
    mag = mag[np.asarray(tiepoints.inlier, bool) & np.isfinite(mag)]
    return float(np.percentile(mag, 90.0)) if mag.size else float("nan")


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Interleave two same-shape images as a ``tiles x tiles`` checkerboard.

    Args:
        a: First image ``(H, W)``; it fills the top-left tile.
        b: Second image ``(H, W)``.
        tiles: Number of tiles along each side (>= 1).

    Returns:
        ``(H, W)`` image, dtype of ``a`` and ``b`` combined.

    Raises:
        ValueError: If the images are not 2-D with the same shape or ``tiles < 1``.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"checkerboard needs two 2-D images of one shape, got {a.shape} and {b.shape}"
        )
    if tiles < 1:
        raise ValueError(f"tiles must be >= 1, got {tiles}")
    h, w = a.shape
    row_tile = (np.arange(h) * tiles) // max(h, 1)
    col_tile = (np.arange(w) * tiles) // max(w, 1)
    use_b = (row_tile[:, None] + col_tile[None, :]) % 2 == 1
    return np.where(use_b, b, a).astype(np.result_type(a, b))


def array_png(image: np.ndarray) -> bytes:
    """Encode a grey image as PNG.

    Args:
        image: ``(H, W)``; uint8 (0..255) or float in [0, 1] (NaN drawn black, values
            clipped to [0, 1]).

    Returns:
        PNG bytes (8-bit grey rendered as RGBA).

    Raises:
        ValueError: If ``image`` is not 2-D or is empty.
    """
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"array_png needs a non-empty 2-D image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        data = arr.astype(np.float64) / 255.0
    else:
        data = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        data = np.clip(data, 0.0, 1.0)
    buf = io.BytesIO()
    imsave(buf, data, cmap="gray", vmin=0.0, vmax=1.0, format="png", metadata=_PNG_METADATA)
    return buf.getvalue()


def _no_data(fig: Figure, text: str) -> bytes:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return figure_png(fig)


def shift_vectors_png(tiepoints: TiePoints, units: str = "map units") -> bytes:
    """Tie-point shift vectors over the reference extent, in reference map coordinates.

    Inliers are arrows coloured by their fit residual (reference pixels); outliers are red
    arrows with a cross; failed points grey dots. Arrows are exaggerated to be visible (the
    key gives their scale).

    Args:
        tiepoints: The tie points.
        units: Name of the reference map unit, for the arrow key.

    Returns:
        PNG bytes.
    """
    ref = tiepoints.reference
    fig = new_figure(7.0, 6.0)
    ax = fig.add_subplot()
    corners = ref.pixel_to_map(
        np.array([[0, 0], [ref.width, 0], [ref.width, ref.height], [0, ref.height]], float)
    )
    ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor="0.4", linewidth=1.0))
    cols = tiepoints.columns()
    x = np.asarray(cols["X_MAP"], float)
    y = np.asarray(cols["Y_MAP"], float)
    u = np.asarray(cols["X_SHIFT_M"], float)
    v = np.asarray(cols["Y_SHIFT_M"], float)
    res = np.asarray(cols["RESIDUAL_PX"], float)
    has_shift = np.isfinite(u) & np.isfinite(v) & np.isfinite(x) & np.isfinite(y)
    outlier = np.asarray(tiepoints.outlier, bool)
    inl = has_shift & ~outlier
    out = has_shift & outlier
    failed = ~has_shift & np.isfinite(x) & np.isfinite(y)

    span = float(np.hypot(*(corners.max(axis=0) - corners.min(axis=0))))
    lengths = np.hypot(u[has_shift], v[has_shift])
    typical = float(np.median(lengths)) if lengths.size else 0.0
    typical = typical if typical > 0 else (span / 100.0 if span > 0 else 1.0)
    scale = typical / (0.06 * span) if span > 0 else 1.0  # typical arrow = 6 % of the extent
    quiver_kw = {"angles": "xy", "scale_units": "xy", "scale": scale, "width": 0.004}
    if failed.any():
        ax.scatter(x[failed], y[failed], s=8, c="0.6", label=f"failed ({int(failed.sum())})")
    q = None
    if inl.any():
        colour = np.where(np.isfinite(res[inl]), res[inl], 0.0)
        q = ax.quiver(x[inl], y[inl], u[inl], v[inl], colour, cmap="viridis", **quiver_kw)
        fig.colorbar(q, ax=ax, label="fit residual (reference px)", shrink=0.8)
    if out.any():
        q_out = ax.quiver(x[out], y[out], u[out], v[out], color="tab:red", **quiver_kw)
        q = q or q_out
        ax.scatter(x[out], y[out], marker="x", c="tab:red", s=30,
                   label=f"outliers ({int(out.sum())})")
    if q is not None:
        ax.quiverkey(q, 0.85, 1.02, typical, f"{typical:.3g} {units}", labelpos="W",
                     coordinates="axes")
    ax.set_aspect("equal")
    ax.set_xlabel("reference map x")
    ax.set_ylabel("reference map y")
    ax.set_title(f"Shift vectors ({int(inl.sum())} inliers)", loc="left")
    if failed.any() or out.any():
        ax.legend(loc="lower right", fontsize="small")
    ax.ticklabel_format(useOffset=False, style="plain")
    return figure_png(fig)


def residual_scatter_png(tiepoints: TiePoints, ce90: float | None = None) -> bytes:
    """Scatter of fit residuals ``dx`` vs ``dy`` (reference pixels) with the CE90 circle.

    Args:
        tiepoints: The tie points.
        ce90: CE90 radius in reference pixels; None computes it from the inliers.

    Returns:
        PNG bytes.
    """
    fig = new_figure(5.5, 5.0)
    res = np.asarray(tiepoints.residual_px, dtype=np.float64)
    finite = np.isfinite(res).all(axis=1)
    inl = finite & np.asarray(tiepoints.inlier, bool)
    out = finite & np.asarray(tiepoints.outlier, bool)
    if not finite.any():
        return _no_data(fig, "no residuals (no fitted tie points)")
    radius = ce90_px(tiepoints) if ce90 is None else float(ce90)
    ax = fig.add_subplot()
    mag_in = np.hypot(res[inl, 0], res[inl, 1])
    limit = max(
        float(np.percentile(mag_in, 99)) * 1.4 if mag_in.size else 0.0,
        radius * 1.5 if np.isfinite(radius) else 0.0,
    )
    if limit <= 0:
        limit = float(np.abs(res[finite]).max()) * 1.2 or 1.0
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.axvline(0, color="0.8", linewidth=0.8)
    ax.scatter(res[inl, 0], res[inl, 1], s=12, c="tab:blue", label=f"inliers ({int(inl.sum())})")
    hidden = 0
    if out.any():
        ax.scatter(res[out, 0], res[out, 1], s=24, marker="x", c="tab:red",
                   label=f"outliers ({int(out.sum())})")
        hidden = int((np.abs(res[out]) > limit).any(axis=1).sum())
    if np.isfinite(radius) and radius > 0:
        ax.add_patch(Circle((0.0, 0.0), radius, fill=False, linestyle="--", edgecolor="black",
                            label=f"CE90 = {radius:.3g} px"))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(limit, -limit)  # rows grow downwards, as in the image
    ax.set_aspect("equal")
    ax.set_xlabel("residual dx (reference px)")
    ax.set_ylabel("residual dy (reference px, down)")
    title = "Fit residuals"
    if hidden:
        title += f" ({hidden} outliers beyond the axes)"
    ax.set_title(title, loc="left")
    ax.legend(loc="upper right", fontsize="small")
    return figure_png(fig)


def residual_histogram_png(tiepoints: TiePoints) -> bytes:
    """Histogram of residual magnitudes (reference pixels), inliers and outliers stacked.

    Returns:
        PNG bytes.
    """
    fig = new_figure(6.0, 4.0)
    res = np.asarray(tiepoints.residual_px, dtype=np.float64)
    mag = np.hypot(res[:, 0], res[:, 1])
    finite = np.isfinite(mag)
    if not finite.any():
        return _no_data(fig, "no residuals (no fitted tie points)")
    inl = finite & np.asarray(tiepoints.inlier, bool)
    out = finite & np.asarray(tiepoints.outlier, bool)
    ax = fig.add_subplot()
    bins = int(np.clip(np.sqrt(finite.sum()) * 2, 5, 40))
    # Range from the inliers, so a few far outliers do not squash them into one bin; larger
    # values are put into the last bin.
    top = float(mag[inl].max()) * 1.25 if inl.any() else float(mag[finite].max())
    top = top if top > 0 else 1.0
    clipped = int((mag[finite] > top).sum())
    out_label = f"outliers ({int(out.sum())})"
    if clipped:
        out_label += f"; {clipped} beyond {top:.3g} px in the last bin"
    ax.hist([np.minimum(mag[inl], top), np.minimum(mag[out], top)], bins=bins,
            range=(0.0, top), stacked=True, color=["tab:blue", "tab:red"],
            label=[f"inliers ({int(inl.sum())})", out_label])
    ax.set_xlabel("residual magnitude (reference px)")
    ax.set_ylabel("tie points")
    ax.set_title("Residual magnitudes", loc="left")
    ax.legend(fontsize="small")
    return figure_png(fig)
