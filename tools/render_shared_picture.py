"""Render ``docs/images/shared-modality-demo.png``: the demo pair and its shared-modality images.

The real BigEarthNet Sentinel-2 RGB and Sentinel-1 VV of the demo (``sarcoreg demo``) beside the
two images that the shipped ``shared-v2`` model makes of them (``write_shared_layer``).

    .venv/bin/python tools/render_shared_picture.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "shared-modality-demo.png"


def _stretch(x: np.ndarray) -> np.ndarray:
    lo, hi = np.nanpercentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def main(model: str = "shared-v2") -> Path:
    """Write the picture; returns its path."""
    from sarcoreg.core.demo import make_demo_inputs
    from sarcoreg.core.exports.plots import new_figure, save_png
    from sarcoreg.core.shared_layers import write_shared_layer

    with tempfile.TemporaryDirectory() as tmp:
        ref, tgt = make_demo_inputs(Path(tmp) / "inputs", (0.0, 0.0))
        sar_out, opt_out = Path(tmp) / "sar_shared.tif", Path(tmp) / "opt_shared.tif"
        write_shared_layer(tgt, sar_out, "sar", model, [1], dtype="float32", device="cpu")
        write_shared_layer(ref, opt_out, "optical", model, [1, 2, 3], dtype="float32", device="cpu")
        rgb = _stretch(gdal.Open(str(ref)).ReadAsArray()[:3].astype(np.float64)).transpose(1, 2, 0)
        vv = _stretch(gdal.Open(str(tgt)).ReadAsArray()[0].astype(np.float64))
        shared_opt = gdal.Open(str(opt_out)).ReadAsArray().transpose(1, 2, 0)
        shared_sar = gdal.Open(str(sar_out)).ReadAsArray().transpose(1, 2, 0)
    fig = new_figure(12.0, 3.5)
    panels = [(rgb, "Sentinel-2 RGB"), (vv, "Sentinel-1 VV (dB)"), (shared_opt, f"optical -> shared ({model})"),
              (shared_sar, f"SAR -> shared ({model})")]
    for ax, (img, title) in zip(fig.subplots(1, 4), panels, strict=True):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_png(fig, OUT)


if __name__ == "__main__":
    print(f"wrote {main()}")
