"""(Re)build the shipped graphical model ``plugin/models/coregister_chain.model3``.

The model chains the sarcoreg algorithms that need no learned model:
Extract tie points -> Export GCPs -> Warp with tie points. Built through the QGIS API so that
the file is exactly what the Graphical Modeler would save; edit it in the Modeler or here.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/build_coregister_chain_model.py
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "plugin" / "models" / "coregister_chain.model3"
MODEL_NAME = "Co-registration chain"


def child(alg_id: str, child_id: str, x: float, y: float) -> Any:
    """A model step running ``alg_id``, called ``child_id``, drawn at ``(x, y)``."""
    from qgis.core import QgsProcessingModelChildAlgorithm
    from qgis.PyQt.QtCore import QPointF

    c = QgsProcessingModelChildAlgorithm(alg_id)
    c.setChildId(child_id)
    c.setDescription(child_id.replace("_", " ").capitalize())
    c.setPosition(QPointF(x, y))
    return c


def output(child_id: str, name: str, description: str, x: float, y: float) -> Any:
    """The model output ``description`` fed by output ``name`` of step ``child_id``."""
    from qgis.core import QgsProcessingModelOutput
    from qgis.PyQt.QtCore import QPointF

    out = QgsProcessingModelOutput(name, description)
    out.setChildId(child_id)
    out.setChildOutputName(name)
    out.setPosition(QPointF(x, y))
    return out


def add_inputs(model: Any, inputs: list[Any]) -> None:
    """Add the model's input parameters, drawn in one column."""
    from qgis.core import QgsProcessingModelParameter
    from qgis.PyQt.QtCore import QPointF

    for k, definition in enumerate(inputs):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120, 60 + 70 * k))
        model.addModelParameter(definition, component)


def save(model: Any, path: Path) -> Path:
    """Write ``model`` to ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not model.toFile(str(path)):
        raise RuntimeError(f"QGIS could not write the model {path}")
    return path


def run_in_qgis(build_model: Callable[[], Path]) -> None:
    """Start QGIS without a display, register the provider, call ``build_model`` and report."""
    import os

    from qgis.core import QgsApplication

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QgsApplication([], False)
    app.initQgis()
    from sarcoreg.plugin.provider import SarcoregProvider

    QgsApplication.processingRegistry().addProvider(SarcoregProvider())
    print(f"wrote {build_model()}")
    app.exitQgis()


def build(path: Path = MODEL_PATH) -> Path:
    """Write the model file (QGIS must be initialised) and return its path."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingParameterEnum,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import (
        QgsProcessingModelChildParameterSource as Source,
    )
    from sarcoreg.plugin.algorithms.coregister import DEFAULTS, TRANSFORMS

    model = QgsProcessingModelAlgorithm(MODEL_NAME, "Models")
    model.setHelpContent({
        "ALG_DESC": "Extract tie points between a reference (optical) and a target (SAR) raster, export them "
        "as GCPs (.points and a VRT) and warp the target with them onto the reference grid. Uses only the "
        "classical matchers (no learned model).",
        "REFERENCE": "Reference raster (optical); its grid is the output grid.",
        "TARGET": "Target raster (SAR) to co-register.",
        "TRANSFORM": "Transform fitted to the tie points (outlier flags and warp).",
    })
    inputs = [
        QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster (optical)"),
        QgsProcessingParameterRasterLayer("TARGET", "Target raster (SAR)"),
        QgsProcessingParameterEnum("TRANSFORM", "Transform", options=TRANSFORMS,
                                   defaultValue=TRANSFORMS.index("affine")),
        QgsProcessingParameterNumber("SPACING", "Tie-point spacing (reference pixels)",
                                     QgsProcessingParameterNumber.Integer, DEFAULTS["spacing"], False, 4, 100000),
        QgsProcessingParameterNumber("WINDOW", "Matching window (pixels, even)",
                                     QgsProcessingParameterNumber.Integer, DEFAULTS["window"], False, 8, 2048),
        QgsProcessingParameterNumber("SEARCH_RADIUS", "Search radius (pixels)",
                                     QgsProcessingParameterNumber.Integer, DEFAULTS["search_radius"], False, 1, 2048),
    ]
    add_inputs(model, inputs)

    extract = child("sarcoreg:extracttiepoints", "extract_tie_points", 420, 150)
    for name in ("REFERENCE", "TARGET", "TRANSFORM", "SPACING", "WINDOW", "SEARCH_RADIUS"):
        extract.addParameterSources(name, [Source.fromModelParameter(name)])
    extract.setModelOutputs({"OUTPUT": output("extract_tie_points", "OUTPUT", "Tie points", 620, 100)})

    export = child("sarcoreg:exportgcps", "export_gcps", 420, 330)
    export.addParameterSources("INPUT", [Source.fromChildOutput("extract_tie_points", "OUTPUT")])
    export.addParameterSources("TARGET", [Source.fromModelParameter("TARGET")])
    export.addParameterSources("INCLUDE_OUTLIERS", [Source.fromStaticValue(False)])
    export.setModelOutputs({
        "OUTPUT_POINTS": output("export_gcps", "OUTPUT_POINTS", "GCP file (.points)", 620, 300),
        "OUTPUT_VRT": output("export_gcps", "OUTPUT_VRT", "VRT with GCPs", 620, 360),
    })

    warp = child("sarcoreg:warpwithtiepoints", "warp_with_tie_points", 420, 510)
    warp.addParameterSources("INPUT", [Source.fromChildOutput("extract_tie_points", "OUTPUT")])
    for name in ("TARGET", "TRANSFORM", "REFERENCE"):
        warp.addParameterSources(name, [Source.fromModelParameter(name)])
    warp.addParameterSources("INCLUDE_OUTLIERS", [Source.fromStaticValue(False)])
    warp.setModelOutputs({"OUTPUT": output("warp_with_tie_points", "OUTPUT", "Co-registered raster", 620, 510)})

    for c in (extract, export, warp):
        model.addChildAlgorithm(c)
    return save(model, path)


if __name__ == "__main__":
    run_in_qgis(build)
