"""Images the HTML report shows beside its plots: before/after checkerboards and matcher maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from osgeo import gdal

from ..methods import methods
from ..raster_io import RasterSource
from .plots import checkerboard

if TYPE_CHECKING:
    from ..chips import Preparation
    from ..raster_io import CommonGrid
    from ..tiepoints import TiePoints
    from .cog import CoregisteredRecipe

__all__ = ["REPORT_MAPS", "checkerboards", "tiepoint_map_images"]

#: Tie points whose correspondence map the HTML report shows.
REPORT_MAPS = 4


def checkerboards(grid: CommonGrid, recipe: CoregisteredRecipe | None, ref_prep: Preparation,
                  tgt_prep: Preparation, size: int = 384) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Before/after checkerboards of a chip in the middle of the overlap.

    "After" reads the co-registered target through ``recipe``'s virtual dataset: the pixels
    ``coregistered.tif`` holds (it is written losslessly), while that file is still being written.
    Without a recipe there is no "after".
    """
    x0, y0, w, h = grid.overlap
    s = int(min(size, w, h))
    if s < 16:
        return None, None
    cx, cy = x0 + (w - s) // 2, y0 + (h - s) // 2
    ref_chip = ref_prep.read(grid.reference, cx, cy, s)
    before = checkerboard(np.nan_to_num(ref_chip), np.nan_to_num(tgt_prep.read(grid.target_on_grid, cx, cy, s)))
    after = None
    if recipe is not None:
        g = grid.reference.georef
        corners = g.pixel_to_map(np.array([[cx, cy], [cx + s, cy + s]], np.float64))
        bounds = (min(corners[:, 0]), min(corners[:, 1]), max(corners[:, 0]), max(corners[:, 1]))
        ds = gdal.Warp("", recipe.vrt(grid.target.dataset), format="MEM", outputBounds=bounds, width=s, height=s,
                       dstSRS=g.crs_wkt or None, resampleAlg="bilinear", dstAlpha=True)
        src = RasterSource("coregistered target", ds, grid.target.bands, g)
        after = checkerboard(np.nan_to_num(ref_chip), np.nan_to_num(tgt_prep.apply(src.read(0, 0, s, s))))
    return before, after


def tiepoint_map_images(maps: np.ndarray | None, tiepoints: TiePoints, count: int = REPORT_MAPS
                        ) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """PNGs of the matcher's map over the search window for the best few tie points.

    The tie points are the inliers with the highest scores (valid matches when there are fewer
    inliers). For ``bnn`` the map is shown as the distance ``h = 1 / score - 1`` (lower = more
    similar, the network's own quantity); for other matchers as the similarity they compute.

    Args:
        maps: ``(N, 2 R + 1, 2 R + 1)`` maps of the matcher (one per tie-point row), or None.
        tiepoints: The tie points (same rows).
        count: How many maps at most.

    Returns:
        ``(caption -> PNG bytes, what was shown)``: both empty when there are no maps.
    """
    from ..correspondence import correspondence_map_png

    if maps is None or len(maps) != len(tiepoints.score) or count < 1:
        return {}, []
    inl = np.asarray(tiepoints.inlier, bool)
    valid = np.isfinite(tiepoints.score) & np.isfinite(tiepoints.shift_px).all(axis=1)
    pool = np.flatnonzero(inl & valid)
    if len(pool) == 0:
        pool = np.flatnonzero(valid)
    order = pool[np.argsort(-np.asarray(tiepoints.score)[pool], kind="stable")][:count]
    images: dict[str, bytes] = {}
    shown: list[dict[str, Any]] = []
    matcher = str(tiepoints.matcher)
    map_kind = next((m.map_kind for m in methods() if m.name == matcher), "similarity")
    for k in order:
        cmap = np.asarray(maps[k], np.float64)
        if not np.isfinite(cmap).any():
            continue
        if map_kind == "distance":  # the map holds 1 / (1 + h) of a distance h
            with np.errstate(divide="ignore", invalid="ignore"):
                cmap = 1.0 / cmap - 1.0
            label, lower, what = f"{matcher.upper()} distance h (lower = more similar)", True, "distance"
        else:
            label, lower, what = f"{matcher} similarity", False, "similarity"
        x, y = (float(v) for v in tiepoints.ref_xy[k])
        title = f"tie point {k}, reference px ({x:.0f}, {y:.0f}): {matcher} {what}"
        caption = (f"Tie point {k} ({'inlier' if inl[k] else 'not an inlier'}, score {float(tiepoints.score[k]):.3f}): "
                   f"{matcher} {what} map over the search window, displacement in pixels")
        images[caption] = correspondence_map_png(cmap, title=title, label=label, lower_is_better=lower)
        shown.append({"tiepoint": int(k), "ref_xy": [x, y], "map": what, "matcher": matcher,
                      "size": int(cmap.shape[0])})
    return images, shown
