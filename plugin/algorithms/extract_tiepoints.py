"""Processing algorithm "Extract tie points" (``sarcoreg:extracttiepoints``): tie points, no warp.

For users who warp elsewhere (GDAL, the Georeferencer, the next model step). It takes the
matching parameters of *Co-register SAR to optical* (copied from that algorithm, so the two
always agree) and runs the same engine in the worker with ``write_outputs = ["tiepoints",
"report_json"]``: the robust fit still runs and flags outliers, but no raster is written.
"""

from __future__ import annotations

import shutil
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingUtils,
)

from ..worker_bridge import run_worker_job
from .coregister import CoregisterAlgorithm, _fmt, _number

_HELP = """
<p>Finds tie points between a <b>reference</b> raster (usually optical) and a <b>target</b> raster
(usually SAR) exactly as <i>Co-register SAR to optical</i> does, and writes only the tie-point
layer: no raster is resampled or written. Use it to warp elsewhere (<i>Export GCPs</i> for GDAL or
the Georeferencer, <i>Warp with tie points</i>), to inspect or edit tie points, or as the first
step of a model.</p>
<h3>Parameters</h3>
<p>The same as <i>Co-register SAR to optical</i>: reference and target rasters, matching method,
tie-point spacing, matching window, search radius and the advanced options. The <b>Transform</b>
is the one fitted robustly to flag outliers (L2_OUTLIER) and compute residuals (RESIDUAL_PX).</p>
<h3>Outputs</h3>
<ul>
<li><b>Tie points</b>: point layer in the reference CRS, one point per candidate at its reference
position, with AROSICS-style fields: X_IM/Y_IM (reference pixel), X_MAP/Y_MAP, TGT_X_IM/TGT_Y_IM
(matched position in the target raster's pixels), X_SHIFT_PX, Y_SHIFT_PX, RELIABILITY,
RESIDUAL_PX, L1_OUTLIER (failed or unreliable), L2_OUTLIER (rejected by the fit), OUTLIER,
LAST_ERR. Loaded layers are styled: outliers as grey crosses, inliers coloured by residual.</li>
<li><b>RMSE_PX, RMSE_MAP, N_TIEPOINTS, N_INLIERS</b>: fit quality; <b>REPORT_JSON</b>: the run's
report (options, transform, timings, device).</li>
<li><b>STATUS</b>, <b>REASONS</b>, <b>RMSE_CV_PX</b>: the run's verdict as in <i>Co-register SAR to
optical</i>; a failed run stops with an error that gives the reasons and writes no tie points.</li>
</ul>
"""


class ExtractTiePointsAlgorithm(CoregisterAlgorithm):
    """Tie points between a reference and a target raster, without writing a raster."""

    #: The tie points are this algorithm's main output.
    OUTPUT_TIEPOINTS = "OUTPUT"
    REPORT_JSON = "REPORT_JSON"
    #: The worker writes only these outputs of the set (their Processing outputs come from the list).
    _writes = ("tiepoints", "report_json")
    _name = "extracttiepoints"
    _display = "Extract tie points"
    _group = "Tie points"
    _group_id = "tiepoints"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["tie points", "gcp", "matching", "sar", "optical", "registration", "no warp"]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("Finds tie points between a SAR and an optical raster; writes only the tie-point layer.")

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """The input parameters of Co-register (copied from it), then this algorithm's outputs."""
        donor = CoregisterAlgorithm()
        donor.initAlgorithm(config)
        skip = {CoregisterAlgorithm.OUTPUT, CoregisterAlgorithm.OUTPUT_TIEPOINTS, CoregisterAlgorithm.OUTPUT_FOLDER}
        for definition in donor.parameterDefinitions():
            if definition.name() not in skip:
                self.addParameter(definition.clone())
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TIEPOINTS, self.tr("Tie points"), QgsProcessing.TypeVectorPoint
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_PX, self.tr("RMSE of the fit (pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_MAP, self.tr("RMSE of the fit (map units)")))
        self.addOutput(QgsProcessingOutputNumber(self.N_TIEPOINTS, self.tr("Number of usable tie points")))
        self.addOutput(QgsProcessingOutputNumber(self.N_INLIERS, self.tr("Number of inliers of the fit")))
        self._add_verdict_outputs()
        self._add_format_outputs()  # REPORT_JSON

    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the engine in the worker (tie points and report only), then fill the sink."""
        job = self._resolve(parameters, context)
        options = dict(job["options"], write_outputs=list(self._writes or ()))
        out_dir = QgsProcessingUtils.generateTempFilename("sarcoreg_extract")
        feedback.pushInfo(f"Reference: {job['reference']}\nTarget: {job['target']}")
        result = run_worker_job(
            "coregister",
            {"reference": job["reference"], "target": job["target"], "out_dir": out_dir, "options": options},
            feedback,
            cleanup=[out_dir],
        )
        if feedback.isCanceled():
            shutil.rmtree(out_dir, ignore_errors=True)
            raise QgsProcessingException("sarcoreg extracttiepoints: cancelled")
        report: dict[str, Any] = result.get("report") or {}
        outputs: dict[str, str] = result.get("outputs") or {}
        feedback.pushInfo(
            f"Tie points: {report.get('n_inliers')} inliers of {report.get('n_tiepoints')} usable "
            f"({report.get('n_candidates')} candidates), RMSE {_fmt(report.get('rmse_px'))} px"
        )
        feedback.pushInfo(f"Device: {report.get('device', 'unknown')}; worker time {_fmt(report.get('runtime_s'))} s")
        verdict = self._verdict_results(report, feedback)
        if not outputs.get("tiepoints"):
            raise QgsProcessingException("the worker wrote no tie points")
        sink_id = self._copy_tiepoints(parameters, context, outputs["tiepoints"], job["reference_crs"])
        return {
            self.OUTPUT_TIEPOINTS: sink_id,
            self.RMSE_PX: _number(report.get("rmse_px")),
            self.RMSE_MAP: _number(report.get("rmse_map")),
            self.N_TIEPOINTS: _number(report.get("n_tiepoints")),
            self.N_INLIERS: _number(report.get("n_inliers")),
            **self._format_results(outputs),
            **verdict,
        }
