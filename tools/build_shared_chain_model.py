"""(Re)build the shipped graphical model ``plugin/models/shared_chain.model3``.

The model chains the shared-modality workflow of issue 5/8:
Generate shared-modality layers -> Extract tie points (between the two shared layers) ->
Export GCPs -> Warp with tie points (the original SAR raster onto the optical grid). The shared
SAR layer lies on the SAR raster's own grid, so the tie points' target pixels are pixels of the
original SAR raster, which is what the GCP export and the warp use. Built through the QGIS API,
so the file is what the Graphical Modeler would save.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/build_shared_chain_model.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_coregister_chain_model import add_inputs, child, output, run_in_qgis, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "plugin" / "models" / "shared_chain.model3"
MODEL_NAME = "Shared-modality co-registration chain"


def build(path: Path = MODEL_PATH) -> Path:
    """Write the model file (QGIS must be initialised) and return its path."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingParameterEnum,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
        QgsProcessingParameterString,
    )
    from qgis.core import (
        QgsProcessingModelChildParameterSource as Source,
    )
    from sarcoreg.core.methods import method_names
    from sarcoreg.plugin.algorithms.coregister import DEFAULTS, MODALITIES, TRANSFORMS

    model = QgsProcessingModelAlgorithm(MODEL_NAME, "Models")
    model.setHelpContent({
        "ALG_DESC": "Turn an optical raster and a SAR raster into one shared modality with a trained model "
        "(Borisov et al. 2026), extract tie points between the two shared layers, export them as GCPs "
        "(.points and a VRT) and warp the original SAR raster onto the optical grid.",
        "OPTICAL": "Optical raster (reference); its grid is the output grid.",
        "SAR": "SAR raster to co-register.",
        "MODEL": "Shared-modality model: a card name (shared-v2 is shipped) or a model file.",
        "TRANSFORM": "Transform fitted to the tie points (outlier flags and warp).",
    })
    inputs = [
        QgsProcessingParameterRasterLayer("OPTICAL", "Optical raster (reference)"),
        QgsProcessingParameterRasterLayer("SAR", "SAR raster to co-register"),
        QgsProcessingParameterString("MODEL", "Shared-modality model", defaultValue="shared-v2"),
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

    shared = child("sarcoreg:sharedmodalitylayers", "shared_layers", 420, 60)
    shared.addParameterSources("SAR", [Source.fromModelParameter("SAR")])
    shared.addParameterSources("OPTICAL", [Source.fromModelParameter("OPTICAL")])
    shared.addParameterSources("MODEL", [Source.fromModelParameter("MODEL")])
    shared.setModelOutputs({
        "SAR_OUTPUT": output("shared_layers", "SAR_OUTPUT", "Shared SAR layer", 680, 30),
        "OPTICAL_OUTPUT": output("shared_layers", "OPTICAL_OUTPUT", "Shared optical layer", 680, 90),
    })

    extract = child("sarcoreg:extracttiepoints", "extract_tie_points", 420, 220)
    extract.addParameterSources("REFERENCE", [Source.fromChildOutput("shared_layers", "OPTICAL_OUTPUT")])
    extract.addParameterSources("TARGET", [Source.fromChildOutput("shared_layers", "SAR_OUTPUT")])
    for name in ("TRANSFORM", "SPACING", "WINDOW", "SEARCH_RADIUS"):
        extract.addParameterSources(name, [Source.fromModelParameter(name)])
    # The shared layers are one modality: gradient-structure matching of two optical-like images.
    extract.addParameterSources("METHOD", [Source.fromStaticValue(method_names().index("structural"))])
    for name in ("REFERENCE_MODALITY", "TARGET_MODALITY"):
        extract.addParameterSources(name, [Source.fromStaticValue(MODALITIES.index("optical"))])
    extract.setModelOutputs({"OUTPUT": output("extract_tie_points", "OUTPUT", "Tie points", 680, 200)})

    export = child("sarcoreg:exportgcps", "export_gcps", 420, 380)
    export.addParameterSources("INPUT", [Source.fromChildOutput("extract_tie_points", "OUTPUT")])
    export.addParameterSources("TARGET", [Source.fromModelParameter("SAR")])
    export.addParameterSources("INCLUDE_OUTLIERS", [Source.fromStaticValue(False)])
    export.setModelOutputs({
        "OUTPUT_POINTS": output("export_gcps", "OUTPUT_POINTS", "GCP file (.points)", 680, 350),
        "OUTPUT_VRT": output("export_gcps", "OUTPUT_VRT", "VRT with GCPs", 680, 410),
    })

    warp = child("sarcoreg:warpwithtiepoints", "warp_with_tie_points", 420, 540)
    warp.addParameterSources("INPUT", [Source.fromChildOutput("extract_tie_points", "OUTPUT")])
    warp.addParameterSources("TARGET", [Source.fromModelParameter("SAR")])
    warp.addParameterSources("REFERENCE", [Source.fromModelParameter("OPTICAL")])
    warp.addParameterSources("TRANSFORM", [Source.fromModelParameter("TRANSFORM")])
    warp.addParameterSources("INCLUDE_OUTLIERS", [Source.fromStaticValue(False)])
    warp.setModelOutputs({"OUTPUT": output("warp_with_tie_points", "OUTPUT", "Co-registered SAR raster", 680, 540)})

    for c in (shared, extract, export, warp):
        model.addChildAlgorithm(c)
    return save(model, path)


if __name__ == "__main__":
    run_in_qgis(build)
