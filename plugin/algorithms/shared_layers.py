"""Processing algorithm "Generate shared-modality layers" (``sarcoreg:sharedmodalitylayers``).

Runs a shared-modality model (Borisov et al. 2026) over a SAR raster and/or an optical raster in
the worker (:func:`sarcoreg.core.shared_layers.write_shared_layer`): both come out as 3-band
images of one common modality, which ordinary keypoint matchers (or the eye) can compare.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
)

from ...core.methods import default_model
from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm
from .coregister import DEVICES, _deliver_raster

SAR_SCALES: list[str] = ["auto", "db", "intensity", "amplitude"]
DTYPES: list[str] = ["uint8", "float32"]
#: The catalog's default model of the ``shared`` method.
DEFAULT_MODEL = default_model("shared")

_HELP = """
<p>Turns a SAR raster and/or an optical raster into a <b>shared modality</b>: two U-Nets (one
per sensor) trained so that the SAR image and the optical image of the same place look alike
(Borisov et al. 2026). Ordinary keypoint matchers (SIFT, DISK + LightGlue ...) can then match
them, and the layers are a visual check of a co-registration.</p>
<h3>Parameters</h3>
<ul>
<li><b>SAR raster</b> and/or <b>Optical raster</b>: give one or both; each gets its own output.
Inputs are never modified.</li>
<li><b>SAR bands</b> / <b>Optical bands</b>: the bands in the model's order. The shipped model
takes one SAR band (VV, in dB, intensity or amplitude: the scale is detected) and three optical
bands (red, green, blue; a one-band gray image is used for all three). Left empty: the first
band(s), or red/green/blue by the file's colour interpretation.</li>
<li><b>Model</b>: a model card name (<i>shared-v2</i> is shipped) or the path of a card's model;
models in the folders of the provider setting <i>Model folders</i> count too.</li>
<li><b>Device</b>: auto (CUDA when the worker has it), cpu or cuda. The device used is logged.</li>
</ul>
<h3>Advanced parameters</h3>
<ul>
<li><b>Tile size</b> (a multiple of 32) and <b>Tile overlap</b>: the scene is processed in
overlapping tiles blended without seams; memory stays bounded whatever the raster size.</li>
<li><b>Tiles per batch</b>; <b>SAR scale</b>; <b>Output data type</b>: uint8 (0 = nodata,
compact) or float32 (NaN = nodata).</li>
</ul>
<h3>Outputs</h3>
<ul><li><b>Shared SAR layer</b>, <b>Shared optical layer</b>: 3-band GeoTIFFs on the input's grid,
with its georeferencing, added to the map.</li></ul>
"""


class SharedLayersAlgorithm(SarcoregAlgorithm):
    """SAR and/or optical raster in, shared-modality layers out."""

    SAR = "SAR"
    SAR_BANDS = "SAR_BANDS"
    OPTICAL = "OPTICAL"
    OPTICAL_BANDS = "OPTICAL_BANDS"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    TILE = "TILE"
    OVERLAP = "OVERLAP"
    BATCH = "BATCH"
    SAR_SCALE = "SAR_SCALE"
    DTYPE = "DTYPE"
    SAR_OUTPUT = "SAR_OUTPUT"
    OPTICAL_OUTPUT = "OPTICAL_OUTPUT"

    _name = "sharedmodalitylayers"
    _display = "Generate shared-modality layers"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["shared modality", "sar", "optical", "u-net", "translation", "sentinel-1", "sentinel-2",
                "deep learning"]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("Transforms SAR and/or optical rasters into one shared modality with a trained model.")

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.SAR, self.tr("SAR raster"), optional=True))
        self.addParameter(QgsProcessingParameterBand(
            self.SAR_BANDS, self.tr("SAR bands (model order)"), parentLayerParameterName=self.SAR,
            optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.OPTICAL, self.tr("Optical raster"), optional=True))
        self.addParameter(QgsProcessingParameterBand(
            self.OPTICAL_BANDS, self.tr("Optical bands (model order, e.g. red, green, blue)"),
            parentLayerParameterName=self.OPTICAL, optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, self.tr("Model (card name or file)"), defaultValue=DEFAULT_MODEL))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"), options=DEVICES, defaultValue=0))
        advanced: list[QgsProcessingParameterDefinition] = [
            QgsProcessingParameterNumber(
                self.TILE, self.tr("Tile size (pixels, multiple of 32)"), QgsProcessingParameterNumber.Integer,
                defaultValue=512, minValue=32, maxValue=8192),
            QgsProcessingParameterNumber(
                self.OVERLAP, self.tr("Tile overlap (pixels)"), QgsProcessingParameterNumber.Integer,
                defaultValue=64, minValue=0, maxValue=4096),
            QgsProcessingParameterNumber(
                self.BATCH, self.tr("Tiles per batch"), QgsProcessingParameterNumber.Integer,
                defaultValue=4, minValue=1, maxValue=256),
            QgsProcessingParameterEnum(self.SAR_SCALE, self.tr("SAR scale"), options=SAR_SCALES, defaultValue=0),
            QgsProcessingParameterEnum(self.DTYPE, self.tr("Output data type"), options=DTYPES, defaultValue=0),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.SAR_OUTPUT, self.tr("Shared SAR layer"), optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OPTICAL_OUTPUT, self.tr("Shared optical layer"), optional=True, createByDefault=True))

    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        layers: list[dict[str, Any]] = []
        for key, bands_key, modality in ((self.SAR, self.SAR_BANDS, "sar"), (self.OPTICAL, self.OPTICAL_BANDS,
                                                                            "optical")):
            layer = self.parameterAsRasterLayer(parameters, key, context)
            if layer is None:
                continue
            bands = [int(b) for b in (self.parameterAsInts(parameters, bands_key, context) or [])]
            bad = [b for b in bands if not 1 <= b <= layer.bandCount()]
            if bad:
                raise QgsProcessingException(
                    f"{self._label(bands_key)} ({bands_key}): band(s) {bad} do not exist in '{layer.name()}', which "
                    f"has {layer.bandCount()} band(s).")
            layers.append({"raster": self._raster_path(layer, key), "bands": bands, "modality": modality,
                           "key": key})
        if not layers:
            raise QgsProcessingException(
                f"Give a {self._label(self.SAR)} ({self.SAR}), an {self._label(self.OPTICAL)} ({self.OPTICAL}) or "
                "both: there is nothing to transform.")
        tile = self.parameterAsInt(parameters, self.TILE, context)
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        if tile % 32:
            raise QgsProcessingException(
                f"{self._label(self.TILE)} ({self.TILE}) must be a multiple of 32, got {tile}.")
        if not 0 <= overlap < tile // 2:
            raise QgsProcessingException(
                f"{self._label(self.OVERLAP)} ({self.OVERLAP}) must be below half the tile size ({tile // 2}), "
                f"got {overlap}.")
        model = (self.parameterAsString(parameters, self.MODEL, context) or "").strip() or DEFAULT_MODEL
        return {"layers": layers, "model": model, "tile": tile, "overlap": overlap}

    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the model in the worker and hand the layers to Processing."""
        job = self._resolve(parameters, context)
        outputs_key = {self.SAR: self.SAR_OUTPUT, self.OPTICAL: self.OPTICAL_OUTPUT}
        work = Path(QgsProcessingUtils.generateTempFilename("sarcoreg_shared"))
        work.mkdir(parents=True, exist_ok=True)
        destinations: dict[str, str] = {}
        items = []
        for item in job["layers"]:
            key = outputs_key[item["key"]]
            destination = self.parameterAsOutputLayer(parameters, key, context)
            if not destination:
                feedback.pushInfo(f"{self._label(key)} not requested: {item['modality']} raster skipped.")
                continue
            destinations[key] = destination
            items.append({"raster": item["raster"], "bands": item["bands"], "modality": item["modality"],
                          "output": str(work / f"shared_{item['modality']}.tif")})
        if not items:
            raise QgsProcessingException("No output requested: set Shared SAR layer and/or Shared optical layer.")
        try:
            result = run_worker_job(
                "shared_layers",
                {
                    "layers": items,
                    "model": job["model"],
                    "device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
                    "tile": job["tile"],
                    "overlap": job["overlap"],
                    "batch_size": self.parameterAsInt(parameters, self.BATCH, context),
                    "sar_scale": SAR_SCALES[self.parameterAsEnum(parameters, self.SAR_SCALE, context)],
                    "dtype": DTYPES[self.parameterAsEnum(parameters, self.DTYPE, context)],
                },
                feedback,
                cleanup=[str(work)],
            )
            if feedback.isCanceled():
                raise QgsProcessingException("sarcoreg sharedmodalitylayers: cancelled")
            results: dict[str, Any] = {}
            for facts in result.get("layers") or []:
                key = self.SAR_OUTPUT if facts["modality"] == "sar" else self.OPTICAL_OUTPUT
                feedback.pushInfo(
                    f"{facts['modality']}: {facts['width']} x {facts['height']} px, bands {facts['bands_used']}, "
                    f"model {facts['model']} on {facts['device']} ({facts['backend']}), {facts['seconds']:.1f} s")
                _deliver_raster(Path(facts["output"]), Path(destinations[key]), move=True)
                results[key] = destinations[key]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return results
