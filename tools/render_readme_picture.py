"""Render tie points over the reference raster offscreen to a PNG (the README picture).

A real run: the demo pair (Sentinel-2 reference, Sentinel-1 target moved by a known offset) is
co-registered by the engine, and its tie-point layer, styled as the plugin styles it (outliers as
grey crosses, inliers coloured by residual), is drawn over the reference raster by the QGIS map
renderer without a display.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/render_readme_picture.py [--out docs/images/tiepoints-demo.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "images" / "tiepoints-demo.png"


def render_tiepoints_png(reference: str | Path, tiepoints: str | Path, out: Path, size: int = 480) -> Path:
    """Draw the tie-point layer over the reference raster (RGB of bands 1-3) into ``out``.

    QGIS must be initialised. The map extent is the reference raster's.

    Raises:
        RuntimeError: A layer is not valid or the image cannot be saved.
    """
    from qgis.core import (
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsMultiBandColorRenderer,
        QgsRasterLayer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor
    from sarcoreg.plugin.algorithms.coregister import tiepoint_renderer

    raster = QgsRasterLayer(str(reference), "reference")
    points = QgsVectorLayer(str(tiepoints), "tie points", "ogr")
    if not raster.isValid() or not points.isValid():
        raise RuntimeError(f"cannot load {reference} or {tiepoints}")
    if raster.bandCount() >= 3:
        rgb = QgsMultiBandColorRenderer(raster.dataProvider(), 1, 2, 3)
        raster.setRenderer(rgb)
        raster.setDefaultContrastEnhancement()
    points.setRenderer(tiepoint_renderer())
    settings = QgsMapSettings()
    settings.setLayers([points, raster])  # first = on top
    settings.setDestinationCrs(raster.crs())
    settings.setExtent(raster.extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not job.renderedImage().save(str(out), "PNG"):
        raise RuntimeError(f"cannot save {out}")
    return out


def main() -> None:
    """Run the demo co-registration and render its tie points."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    from qgis.core import QgsApplication
    from sarcoreg.core.demo import make_demo_inputs
    from sarcoreg.core.engine import CoregOptions, coregister

    app = QgsApplication([], False)
    app.initQgis()
    with tempfile.TemporaryDirectory() as tmp:
        ref, tgt = make_demo_inputs(Path(tmp) / "inputs", (3.4, -2.6))
        options = CoregOptions(method="structural", transform="shift", spacing=8, window=64, search_radius=8,
                               reference_modality="optical", target_modality="sar", reference_bands=[1, 2, 3],
                               write_outputs=["tiepoints"])
        res = coregister(ref, tgt, Path(tmp) / "out", options)
        print(f"{res.report['n_inliers']} inliers of {res.report['n_tiepoints']} tie points")
        print(f"wrote {render_tiepoints_png(ref, res.outputs['tiepoints'], args.out)}")
    app.exitQgis()


if __name__ == "__main__":
    main()
