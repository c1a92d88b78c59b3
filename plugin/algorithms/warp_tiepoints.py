"""Processing algorithm "Warp with tie points" (``sarcoreg:warpwithtiepoints``).

Fits a transform to a tie-point layer and writes the corrected raster as a Cloud-Optimised
GeoTIFF, in the worker (see :func:`sarcoreg.core.tiepoint_ops.warp_with_tiepoints`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
)

from ..worker_bridge import run_worker_job
from .coregister import TRANSFORMS, _deliver_raster, _fmt, _number
from .point_inputs import OPTIONAL_FIELDS, TARGET_PIXEL_FIELDS, PointToolAlgorithm, crs_wkt, source_columns

RESAMPLINGS: list[str] = ["near", "bilinear", "cubic", "cubicspline", "lanczos", "average"]

_HELP = """
<p>Applies a tie-point layer to a raster: fits a transform from the target raster's pixels
(fields TGT_X_IM / TGT_Y_IM) to the tie points' reference positions (the points themselves) and
writes the corrected raster as a Cloud-Optimised GeoTIFF (all bands).</p>
<h3>Parameters</h3>
<ul>
<li><b>Tie-point layer</b>: from <i>Extract tie points</i> or <i>Co-register SAR to optical</i>, or
any point layer with the same fields (points moved by hand count where they lie).</li>
<li><b>Raster to warp</b>: the raster the tie points were matched in.</li>
<li><b>Transform</b>: <i>shift</i>, <i>affine</i>, <i>homography</i>, polynomials of order 1-3
(<i>poly1..3</i>) or a thin-plate spline (<i>tps</i>). Shift and affine in the raster's own CRS
only rewrite the geotransform (no resampling); the others resample.</li>
<li><b>Reference raster for the output grid</b> (optional): the output takes its grid and extent.
Left empty, the output covers the raster's footprint on the reference grid recorded in the layer
(fields X_IM, Y_IM, X_MAP, Y_MAP).</li>
<li><b>Include outliers</b>: also fit points flagged OUTLIER (off by default).</li>
</ul>
<h3>Advanced parameters</h3>
<ul>
<li><b>RANSAC threshold</b>: the fit is robust; points farther than this (reference pixels) from
the model are left out.</li>
<li><b>Random seed</b>, <b>Resampling</b> (for warps).</li>
</ul>
<h3>Outputs</h3>
<ul><li><b>Warped raster</b> (COG); <b>RMSE_PX</b>, <b>N_INLIERS</b>, <b>N_USED</b>: the fit.</li></ul>
"""


class WarpWithTiePointsAlgorithm(PointToolAlgorithm):
    """Fit a transform to tie points and write the corrected raster."""

    INPUT = "INPUT"
    TARGET = "TARGET"
    TRANSFORM = "TRANSFORM"
    REFERENCE = "REFERENCE"
    INCLUDE_OUTLIERS = "INCLUDE_OUTLIERS"
    RANSAC_THRESHOLD = "RANSAC_THRESHOLD"
    SEED = "SEED"
    RESAMPLING = "RESAMPLING"
    OUTPUT = "OUTPUT"
    RMSE_PX = "RMSE_PX"
    N_INLIERS = "N_INLIERS"
    N_USED = "N_USED"

    _name = "warpwithtiepoints"
    _display = "Warp with tie points"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["warp", "tie points", "gcp", "polynomial", "tps", "thin plate spline", "affine", "shift", "cog"]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("Applies a tie-point layer to a raster (shift, affine, polynomial 1-3, TPS); writes a COG.")

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Tie-point layer"), [QgsProcessing.TypeVectorPoint]))
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET, self.tr("Raster to warp")))
        self.addParameter(QgsProcessingParameterEnum(
            self.TRANSFORM, self.tr("Transform"), options=TRANSFORMS, defaultValue=TRANSFORMS.index("affine")))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE, self.tr("Reference raster for the output grid"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.INCLUDE_OUTLIERS, self.tr("Include outliers"), defaultValue=False))
        advanced: list[QgsProcessingParameterDefinition] = [
            QgsProcessingParameterNumber(
                self.RANSAC_THRESHOLD, self.tr("RANSAC inlier threshold (reference pixels)"),
                QgsProcessingParameterNumber.Double, defaultValue=2.0, minValue=0.01, maxValue=1000.0),
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed of the robust fit"), QgsProcessingParameterNumber.Integer,
                defaultValue=0, minValue=0, maxValue=2**31 - 1),
            QgsProcessingParameterEnum(
                self.RESAMPLING, self.tr("Resampling"), options=RESAMPLINGS,
                defaultValue=RESAMPLINGS.index("bilinear")),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Warped raster")))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_PX, self.tr("RMSE of the fit (reference pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.N_INLIERS, self.tr("Number of inliers of the fit")))
        self.addOutput(QgsProcessingOutputNumber(self.N_USED, self.tr("Number of tie points offered to the fit")))

    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        source = self._point_source(parameters, self.INPUT, context, TARGET_PIXEL_FIELDS)
        target_layer = self.parameterAsRasterLayer(parameters, self.TARGET, context)
        target = self._raster_path(target_layer, self.TARGET)
        self._check_units(source.sourceCrs(), self.INPUT, "the tie-point layer")
        reference = ""
        ref_layer = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
        if ref_layer is not None:
            reference = self._raster_path(ref_layer, self.REFERENCE)
            self._check_units(ref_layer.crs(), self.REFERENCE, "the reference raster")
            if not ref_layer.crs().isValid():
                raise QgsProcessingException(
                    f"{self._label(self.REFERENCE)} ({self.REFERENCE}): '{ref_layer.name()}' has no CRS; it cannot "
                    "give the output grid.")
        else:
            names = source.fields().names()
            missing = [f for f in ("X_IM", "Y_IM", "X_MAP", "Y_MAP") if f not in names]
            if missing:
                raise QgsProcessingException(
                    f"{self._label(self.REFERENCE)} ({self.REFERENCE}): required because the tie-point layer has no "
                    f"field(s) {', '.join(missing)} to recover the reference grid from."
                )
            if not source.sourceCrs().isValid():
                raise QgsProcessingException(
                    f"{self._label(self.INPUT)} ({self.INPUT}): the layer has no CRS; set it (Layer Properties > "
                    "Source) or give a reference raster for the output grid."
                )
        return {"source": source, "target": target, "reference": reference}

    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Read the layer, fit and warp in the worker, deliver the raster."""
        job = self._resolve(parameters, context)
        destination = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not destination:
            raise QgsProcessingException(f"{self._label(self.OUTPUT)} ({self.OUTPUT}) is required.")
        work = Path(QgsProcessingUtils.generateTempFilename("sarcoreg_warp"))
        work.mkdir(parents=True, exist_ok=True)
        temp_out = work / "warped.tif"
        transform = TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)]
        columns = source_columns(job["source"], [*TARGET_PIXEL_FIELDS, *OPTIONAL_FIELDS], feedback)
        try:
            result = run_worker_job(
                "warp_tiepoints",
                {
                    "columns": columns,
                    "crs_wkt": crs_wkt(job["source"].sourceCrs()),
                    "target": job["target"],
                    "reference": job["reference"],
                    "output": str(temp_out),
                    "transform": transform,
                    "include_outliers": self.parameterAsBool(parameters, self.INCLUDE_OUTLIERS, context),
                    "threshold_px": self.parameterAsDouble(parameters, self.RANSAC_THRESHOLD, context),
                    "seed": self.parameterAsInt(parameters, self.SEED, context),
                    "resampling": RESAMPLINGS[self.parameterAsEnum(parameters, self.RESAMPLING, context)],
                },
                feedback,
                cleanup=[str(work)],
            )
            if feedback.isCanceled():
                raise QgsProcessingException("sarcoreg warpwithtiepoints: cancelled")
            fit = result.get("fit") or {}
            feedback.pushInfo(
                f"{transform} fitted to {fit.get('n_inliers')} inliers of {result.get('n_used')} tie points, "
                f"RMSE {_fmt(fit.get('rmse_px'))} px; raster written by {result.get('how')}"
            )
            _deliver_raster(temp_out, Path(destination), move=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {
            self.OUTPUT: destination,
            self.RMSE_PX: _number(fit.get("rmse_px")),
            self.N_INLIERS: _number(fit.get("n_inliers")),
            self.N_USED: _number(result.get("n_used")),
        }
