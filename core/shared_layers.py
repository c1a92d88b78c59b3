"""Shared-modality layers of whole scenes: tiled, blended, bounded-memory inference.

A shared-modality model (Borisov et al. 2026, :mod:`sarcoreg.models.shared_modality`) turns a
SAR image and an optical image into one common K-channel modality. This module runs such a model
over rasters of any size:

* the input bands are selected and scaled once per scene (SAR to dB, then the card's percentile
  stretch fitted on a decimated overview, so that every tile sees the same scaling);
* the scene is cut into tiles (a multiple of the model's 32 pixels) that overlap by ``overlap``
  pixels; tiles go through the model in batches;
* overlapping predictions are blended with weights that fall linearly towards each tile's edges
  (where a U-Net sees least context), normalised by the weight sum: no seams, and a tile's
  edge pixels never decide the result where a neighbour has them in its interior;
* rows are written as soon as no later tile touches them, so memory holds one strip of tiles
  (about ``tile x width x K`` floats) whatever the raster's height.

The result is a K-band GeoTIFF with the input's georeferencing (geotransform and CRS, or GCPs),
written atomically, or an in-memory array for a window (the engine's ``shared`` method).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from osgeo import gdal

from .exports.atomic import atomic_path
from .methods import default_model
from .prepare import PercentileStretch, detect_sar_scale, to_db
from .progress import Progress
from .raster_io import RasterInputError, RasterSource, open_raster

log = logging.getLogger("sarcoreg.shared")

__all__ = [
    "InputScaling",
    "SharedTransform",
    "blend_weights",
    "fit_input_scaling",
    "shared_array",
    "shared_strips",
    "write_shared_layer",
]

MODALITIES = ("sar", "optical")
#: The shared-modality model used when none is named (the catalog's default for method ``shared``).
SHARED_MODEL = default_model("shared")


class SharedTransform(Protocol):
    """What this module needs of a shared-modality model (see ``load_shared_model``)."""

    name: str
    sar_bands: Any  # band names in order (or a count)
    optical_bands: Any
    channels: int
    device: str

    def transform(self, batch: np.ndarray, modality: str) -> np.ndarray:
        """``(B, C, H, W)`` float32 in [0, 1] -> ``(B, K, H, W)`` float32 in [0, 1]."""
        ...


@dataclass(frozen=True)
class InputScaling:
    """How one raster's bands become the model's input, fixed once per scene.

    Attributes:
        modality: ``"sar"`` or ``"optical"``.
        band_index: Indices into the source's used bands, one per model input channel
            (repeated for a gray optical raster fed to a 3-band model).
        sar_scale: Scale of the SAR values (``"db"``, ``"intensity"``, ``"amplitude"``);
            ``""`` for optical.
        stretches: One percentile stretch per model input channel (all equal when the card
            asks for a joint stretch over the bands).
    """

    modality: str
    band_index: tuple[int, ...]
    sar_scale: str
    stretches: tuple[PercentileStretch, ...]

    def apply(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale a ``(B_source, H, W)`` read to the model's input.

        Returns:
            ``((C, H, W) float32 in [0, 1] with 0 at nodata, (H, W) bool validity)``.
        """
        x = block[list(self.band_index)]
        if self.modality == "sar":
            x = to_db(x, self.sar_scale)  # type: ignore[arg-type]
        valid = np.isfinite(x).all(axis=0)
        out = np.stack([s.apply(c) for s, c in zip(self.stretches, x, strict=True)])
        return np.nan_to_num(out, nan=0.0).astype(np.float32, copy=False), valid


def _n_bands(spec: Any) -> int:
    """Band count from a model attribute: a count, or a sequence of band names."""
    return int(spec) if isinstance(spec, (int, np.integer)) else len(spec)


def _card_inputs(model: SharedTransform, modality: str) -> dict[str, Any]:
    card = getattr(model, "card", None)
    inputs = getattr(card, "inputs", None) or {}
    spec = inputs.get(modality, {})
    return spec if isinstance(spec, dict) else {}


def _rgb_order(source: RasterSource) -> list[int] | None:
    """Indices of the red, green and blue bands by GDAL colour interpretation, if all are set."""
    found: dict[int, int] = {}
    for k, b in enumerate(source.bands):
        ci = source.dataset.GetRasterBand(b).GetColorInterpretation()
        if ci in (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand):
            found[ci] = k
    if len(found) == 3:
        return [found[gdal.GCI_RedBand], found[gdal.GCI_GreenBand], found[gdal.GCI_BlueBand]]
    return None


def _band_index(source: RasterSource, modality: str, needed: int) -> tuple[int, ...]:
    have = len(source.bands)
    name = Path(source.path).name
    if modality == "sar":
        if have < needed:
            raise RasterInputError(
                f"{name}: the shared-modality model needs {needed} SAR band(s) (e.g. VV, VH) but {have} "
                f"{'was' if have == 1 else 'were'} selected; choose a model for {have}-band SAR or select more bands"
            )
        return tuple(range(needed))
    if have == 1:
        return (0,) * needed  # a gray image stands in for every optical band
    if have < needed:
        raise RasterInputError(
            f"{name}: the shared-modality model needs {needed} optical bands (or one gray band) but {have} were "
            "selected; select the bands in the model's order (e.g. red, green, blue)"
        )
    if needed == 3 and source.bands == list(range(1, source.dataset.RasterCount + 1)):
        rgb = _rgb_order(source)  # bands not chosen by the user: trust the file's colour interpretation
        if rgb is not None:
            return tuple(rgb)
    return tuple(range(needed))


def fit_input_scaling(
    source: RasterSource,
    model: SharedTransform,
    modality: str,
    sar_scale: str = "auto",
    window: tuple[int, int, int, int] | None = None,
    overview_side: int = 1024,
) -> InputScaling:
    """Select the model's input bands of ``source`` and fit their scaling on an overview.

    The card's ``inputs[modality]`` may hold ``percentiles`` ([low, high], default [0.5, 99.5])
    and ``joint`` (one stretch over all bands, as the reference implementation; default True).

    Args:
        source: The opened raster (bands already selected by the user, in the model's order).
        model: The shared-modality model (``sar_bands`` / ``optical_bands`` say what it takes).
        modality: ``"sar"`` or ``"optical"``.
        sar_scale: Scale of SAR values, ``"auto"`` to detect it on the overview.
        window: Part of the raster the statistics come from (default: all of it).
        overview_side: Longer side of the decimated overview used for the statistics.

    Raises:
        RasterInputError: Too few bands, or no valid pixel.
        ValueError: Unknown modality.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'sar' or 'optical', got '{modality}'")
    needed = _n_bands(model.sar_bands if modality == "sar" else model.optical_bands)
    index = _band_index(source, modality, needed)
    spec = _card_inputs(model, modality)
    low, high = (float(v) for v in spec.get("percentiles", (0.5, 99.5)))
    joint = bool(spec.get("joint", True))
    sample, _ = source.read_overview(overview_side, window, average=modality != "sar")
    x = sample[list(index)]
    scale = ""
    if modality == "sar":
        scale = sar_scale if sar_scale != "auto" else detect_sar_scale(x)
        x = to_db(x, scale)  # type: ignore[arg-type]
    if not np.isfinite(x).any():
        raise RasterInputError(f"{Path(source.path).name}: no valid pixel to fit the input scaling on")
    try:
        if joint:
            stretches = (PercentileStretch.fit(x, low, high),) * needed
        else:
            stretches = tuple(PercentileStretch.fit(c, low, high) for c in x)
    except ValueError as exc:
        raise RasterInputError(f"{Path(source.path).name}: {exc}") from exc
    log.info(
        "%s as %s input: bands %s%s, stretch %s",
        Path(source.path).name, modality, [source.bands[i] for i in index], f", {scale} scale" if scale else "",
        ", ".join(f"{s.lo:.4g}..{s.hi:.4g}" for s in dict.fromkeys(stretches)),
    )
    return InputScaling(modality, index, scale, stretches)


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """Blending weight of a ``tile x tile`` prediction: 1 inside, falling linearly over ``overlap``.

    The weights never reach 0 (a lone tile at the raster's border still counts); where tiles
    overlap, the normalised weights sum to 1, so the blend is a convex combination.

    Returns:
        ``(tile, tile)`` float32.
    """
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 1.0) / (overlap + 1.0)
        ramp[:overlap] = edge
        ramp[tile - overlap :] = edge[::-1]
    return np.outer(ramp, ramp)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``[0, length)``; the last tile may run past the end."""
    if length <= tile:
        return [0]
    n = int(np.ceil((length - tile) / stride)) + 1
    return [i * stride for i in range(n)]


def _check_tiling(tile: int, overlap: int, multiple: int) -> None:
    if tile < multiple or tile % multiple:
        raise ValueError(f"tile must be a positive multiple of {multiple} pixels, got {tile}")
    if not 0 <= overlap < tile // 2:
        raise ValueError(f"overlap must be between 0 and {tile // 2 - 1} pixels for tile {tile}, got {overlap}")


def shared_strips(
    source: RasterSource,
    model: SharedTransform,
    scaling: InputScaling,
    window: tuple[int, int, int, int] | None = None,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    progress: Progress | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Run ``model`` over ``window`` of ``source`` and yield finished rows, top to bottom.

    Args:
        source: The raster.
        model: Shared-modality model.
        scaling: From :func:`fit_input_scaling` for this source and model.
        window: ``(x0, y0, w, h)`` in source pixels (default: the whole raster).
        tile: Tile side (a multiple of the model's 32).
        overlap: Pixels shared by neighbouring tiles (blended); < tile / 2.
        batch_size: Tiles per model call.
        progress: Progress and cancel, checked after every batch.

    Yields:
        ``(row0, values, valid)``: rows ``row0 ..`` of the window, ``values`` ``(K, rows, w)``
        float32 in [0, 1] and ``valid`` ``(rows, w)`` bool (False where the input was nodata).
    """
    multiple = int(getattr(model, "multiple", 32))
    _check_tiling(tile, overlap, multiple)
    progress = progress or Progress()
    x0, y0, w, h = window or (0, 0, source.width, source.height)
    fits = int(np.ceil(max(w, h) / multiple)) * multiple
    if fits < tile:  # a small image: one tile just large enough, no padding to the full tile size
        tile, overlap = fits, min(overlap, fits // 2 - 1) if fits >= 2 * multiple else 0
    stride = tile - overlap
    rows, cols = _starts(h, tile, stride), _starts(w, tile, stride)
    weight = blend_weights(tile, overlap)
    k = int(model.channels)
    total = len(rows) * len(cols)
    done = 0
    carry_v = np.zeros((k, 0, w), np.float32)
    carry_w = np.zeros((0, w), np.float32)
    carry_ok = np.zeros((0, w), bool)
    for ri, r0 in enumerate(rows):
        strip_h = min(tile, h - r0)
        acc = np.zeros((k, strip_h, w), np.float32)
        wsum = np.zeros((strip_h, w), np.float32)
        ok = np.zeros((strip_h, w), bool)
        n_carry = carry_w.shape[0]
        acc[:, :n_carry] = carry_v
        wsum[:n_carry] = carry_w
        ok[:n_carry] = carry_ok
        for b0 in range(0, len(cols), batch_size):
            group = cols[b0 : b0 + batch_size]
            inputs, valids = [], []
            for c0 in group:
                block = source.read(x0 + c0, y0 + r0, tile, tile)
                x, valid = scaling.apply(block)
                inputs.append(x)
                valids.append(valid)
            out = np.asarray(model.transform(np.stack(inputs), scaling.modality), np.float32)
            if out.shape != (len(group), k, tile, tile):
                raise RuntimeError(
                    f"model '{model.name}' returned shape {out.shape} for {len(group)} tiles of {tile} px; "
                    f"expected {(len(group), k, tile, tile)}"
                )
            for j, c0 in enumerate(group):
                cw = min(tile, w - c0)
                wt = weight[:strip_h, :cw]
                acc[:, :, c0 : c0 + cw] += out[j, :, :strip_h, :cw] * wt
                wsum[:, c0 : c0 + cw] += wt
                ok[:, c0 : c0 + cw] |= valids[j][:strip_h, :cw]
            done += len(group)
            progress.report(done / total, f"{model.name}: {scaling.modality} tile {done}/{total}")
        last = ri == len(rows) - 1
        final = strip_h if last else min(stride, strip_h)
        vals = acc[:, :final] / np.maximum(wsum[:final], 1e-12)
        yield r0, vals, ok[:final]
        carry_v, carry_w, carry_ok = acc[:, final:], wsum[final:], ok[final:]


def shared_array(
    source: RasterSource,
    model: SharedTransform,
    scaling: InputScaling,
    window: tuple[int, int, int, int] | None = None,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    progress: Progress | None = None,
) -> np.ndarray:
    """The shared-modality image of ``window`` in memory (see :func:`shared_strips`).

    Returns:
        ``(K, h, w)`` float32 in [0, 1], NaN where the input was nodata.
    """
    x0, y0, w, h = window or (0, 0, source.width, source.height)
    out = np.full((int(model.channels), h, w), np.nan, np.float32)
    for r0, vals, ok in shared_strips(source, model, scaling, window, tile, overlap, batch_size, progress):
        out[:, r0 : r0 + vals.shape[1]] = np.where(ok[None], vals, np.nan)
    return out


def _copy_georef(src: gdal.Dataset, dst: gdal.Dataset) -> None:
    gt = src.GetGeoTransform(can_return_null=True)
    if gt is not None:
        dst.SetGeoTransform(gt)
        if src.GetProjection():
            dst.SetProjection(src.GetProjection())
    elif src.GetGCPCount():
        dst.SetGCPs(src.GetGCPs(), src.GetGCPProjection())


def write_shared_layer(
    raster: str | Path,
    out_path: str | Path,
    modality: str,
    model: str | Path | SharedTransform = SHARED_MODEL,
    bands: Sequence[int] | None = None,
    sar_scale: str = "auto",
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device: str = "auto",
    dtype: str = "uint8",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the shared-modality layer of a SAR or optical raster as a K-band GeoTIFF.

    Args:
        raster: Input raster (anything GDAL reads); never modified.
        out_path: Output GeoTIFF (tiled, DEFLATE, with overviews), written atomically.
        modality: ``"sar"`` or ``"optical"``: which of the model's two networks to use.
        model: Card name, weight path, or a loaded model.
        bands: 1-based input bands in the model's order (default: all, RGB by colour
            interpretation for a 3-band optical model).
        sar_scale: ``"auto"``, ``"db"``, ``"intensity"`` or ``"amplitude"``.
        tile: Tile side in pixels (multiple of 32).
        overlap: Blended overlap between tiles, pixels.
        batch_size: Tiles per model call.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        dtype: ``"uint8"`` (0 = nodata, values 1..255 for 0..1; compact, what keypoint matchers
            read anyway) or ``"float32"`` (NaN = nodata, full precision).
        progress: Progress and cancel (a cancelled run leaves no file behind).

    Returns:
        JSON-able facts: output path, model, device, backend, size, bands, seconds.

    Raises:
        RasterInputError: Unreadable raster or unsuitable bands.
        ValueError: Bad modality, tiling or dtype.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'sar' or 'optical', got '{modality}'")
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"dtype must be 'uint8' or 'float32', got '{dtype}'")
    progress = progress or Progress()
    t0 = time.perf_counter()
    out_path = Path(out_path)
    src = open_raster(raster, bands, role=f"{modality} raster")
    if Path(src.path).resolve() == out_path.resolve():
        raise ValueError(f"the output {out_path} is the input raster; choose another output file")
    loaded = _load_model(model, device)
    progress.report(0.0, f"model {loaded.name} on {loaded.device}")
    log.info("shared-modality model %s on %s (%s)", loaded.name, loaded.device, getattr(loaded, "backend", "?"))
    scaling = fit_input_scaling(src, loaded, modality, sar_scale)
    k = int(loaded.channels)
    gdt = gdal.GDT_Byte if dtype == "uint8" else gdal.GDT_Float32
    opts = ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", f"PREDICTOR={'2' if dtype == 'uint8' else '3'}"]
    with atomic_path(out_path) as tmp:
        ds = gdal.GetDriverByName("GTiff").Create(str(tmp), src.width, src.height, k, gdt, options=opts)
        if ds is None:
            raise OSError(f"GDAL cannot create {out_path}: {gdal.GetLastErrorMsg()}")
        _copy_georef(src.dataset, ds)
        ds.SetMetadata({
            "SARCOREG_MODEL": loaded.name, "SARCOREG_MODALITY": modality,
            "SARCOREG_INPUT_BANDS": ",".join(str(src.bands[i]) for i in scaling.band_index),
        })
        for b in range(k):
            band = ds.GetRasterBand(b + 1)
            band.SetNoDataValue(0 if dtype == "uint8" else float("nan"))
            band.SetDescription(f"shared {b + 1}")
        for r0, vals, ok in shared_strips(src, loaded, scaling, None, tile, overlap, batch_size,
                                          progress.sub(0.0, 0.95)):
            for b in range(k):
                if dtype == "uint8":
                    data = np.where(ok, 1 + np.round(np.clip(vals[b], 0, 1) * 254), 0).astype(np.uint8)
                else:
                    data = np.where(ok, vals[b], np.nan).astype(np.float32)
                ds.GetRasterBand(b + 1).WriteArray(data, 0, r0)
        progress.report(0.96, "building overviews")
        if max(src.width, src.height) > 512:
            levels = [f for f in (2, 4, 8, 16, 32) if max(src.width, src.height) / f >= 128]
            if levels:
                ds.BuildOverviews("AVERAGE", levels)
        ds.FlushCache()
        ds = None
    seconds = time.perf_counter() - t0
    progress.report(1.0, f"wrote {out_path.name} in {seconds:.1f} s")
    log.info("%s: %d x %d, %d bands, %.1f s on %s", out_path.name, src.width, src.height, k, seconds, loaded.device)
    return {
        "output": str(out_path),
        "model": loaded.name,
        "modality": modality,
        "device": str(loaded.device),
        "backend": str(getattr(loaded, "backend", "")),
        "width": src.width,
        "height": src.height,
        "bands_used": [src.bands[i] for i in scaling.band_index],
        "sar_scale": scaling.sar_scale,
        "seconds": round(seconds, 3),
    }


def _load_model(model: str | Path | SharedTransform, device: str) -> SharedTransform:
    if not isinstance(model, (str, Path)):
        return model
    from ..models.shared_modality import load_shared_model

    loaded: SharedTransform = load_shared_model(model, device=device)
    return loaded


def shared_layers_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Worker job: shared-modality layers of a SAR and/or an optical raster.

    Params:
        layers (list): ``{"raster", "output", "modality", "bands" (optional)}`` each.
        model (str): Card name or weight path (default ``"shared-v2"``).
        device (str), tile (int), overlap (int), batch_size (int), dtype (str), sar_scale (str):
            as :func:`write_shared_layer`.

    Returns:
        ``{"layers": [facts of each written layer], "model": ..., "device": ...}``.
    """
    layers = list(params.get("layers") or [])
    if not layers:
        raise ValueError("no layer to transform: give a SAR raster, an optical raster or both")
    model = _load_model(str(params.get("model") or SHARED_MODEL), str(params.get("device", "auto")))
    results = []
    for i, item in enumerate(layers):
        sub = progress.sub(i / len(layers), (i + 1) / len(layers))
        results.append(write_shared_layer(
            item["raster"], item["output"], item["modality"], model, item.get("bands") or None,
            sar_scale=str(params.get("sar_scale", "auto")), tile=int(params.get("tile", 512)),
            overlap=int(params.get("overlap", 64)), batch_size=int(params.get("batch_size", 4)),
            dtype=str(params.get("dtype", "uint8")), progress=sub,
        ))
    return {"layers": results, "model": model.name, "device": str(model.device)}
