"""Processing algorithm "Export GCPs" (``sarcoreg:exportgcps``): tie points -> GCP files and text.

Reads the tie-point layer in QGIS (any point layer with the tie-point fields, selections and
filters included), and the worker writes the files with the core writers of
:mod:`sarcoreg.core.exports` (see :func:`sarcoreg.core.tiepoint_ops.export_gcps`).
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ..worker_bridge import run_worker_job
from .point_inputs import OPTIONAL_FIELDS, TARGET_PIXEL_FIELDS, PointToolAlgorithm, crs_wkt, source_columns

_HELP = """
<p>Writes tie points as ground control points (GCPs) for other tools: a QGIS Georeferencer
<b>.points</b> file, a GDAL <b>VRT</b> of the target raster carrying the GCPs (open it in QGIS or
warp it with <code>gdalwarp -order 1|2|3</code> or <code>-tps</code>), and the
<code>gdal_translate -gcp</code> argument text.</p>
<h3>Parameters</h3>
<ul>
<li><b>Tie-point layer</b>: the output of <i>Extract tie points</i> or <i>Co-register SAR to
optical</i>, or any point layer with the same fields. Each point's position is the reference
(destination) map position; the fields TGT_X_IM / TGT_Y_IM give the matched position in the
target raster's pixels (required); OUTLIER (or L1_OUTLIER / L2_OUTLIER) marks outliers. Points
moved by hand count where they lie. Only selected features are used when "Selected features only"
is ticked.</li>
<li><b>Target raster</b>: the raster the tie points were matched in (the one TGT_X_IM / TGT_Y_IM
refer to); the VRT wraps it and the .points source coordinates use its georeferencing.</li>
<li><b>Include outliers</b>: off (default): outliers are left out. On: the .points file lists them
as disabled GCPs (enable = 0) and the VRT and the -gcp text carry them as GCPs.</li>
</ul>
<h3>Outputs</h3>
<ul>
<li><b>GCP file (.points)</b>, <b>VRT with GCPs</b>: the files (keep the VRT beside the target
raster or where it can find it).</li>
<li><b>GCP_ARGS</b>: text such as <code>-gcp 43.4 42.6 404850.0 5341980.0 ... -a_srs
EPSG:32633</code>; use it as <code>gdal_translate GCP_ARGS target.tif target_gcps.vrt</code>.</li>
<li><b>N_GCPS</b>: number of GCPs exported.</li>
</ul>
"""


class ExportGcpsAlgorithm(PointToolAlgorithm):
    """Tie points -> QGIS .points, GDAL VRT with GCPs, gdal_translate -gcp text."""

    INPUT = "INPUT"
    TARGET = "TARGET"
    INCLUDE_OUTLIERS = "INCLUDE_OUTLIERS"
    OUTPUT_POINTS = "OUTPUT_POINTS"
    OUTPUT_VRT = "OUTPUT_VRT"
    GCP_ARGS = "GCP_ARGS"
    N_GCPS = "N_GCPS"

    _name = "exportgcps"
    _display = "Export GCPs"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["gcp", "ground control points", "georeferencer", "points", "vrt", "gdal_translate", "tie points"]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("Tie points to a Georeferencer .points file, a VRT with GCPs and gdal_translate -gcp text.")

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Tie-point layer"), [QgsProcessing.TypeVectorPoint]))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.TARGET, self.tr("Target raster the tie points were matched in")))
        self.addParameter(QgsProcessingParameterBoolean(
            self.INCLUDE_OUTLIERS, self.tr("Include outliers (disabled in the .points file)"), defaultValue=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_POINTS, self.tr("GCP file (.points)"), self.tr("QGIS GCP files (*.points)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_VRT, self.tr("VRT with GCPs"), self.tr("GDAL VRT files (*.vrt)")))
        self.addOutput(QgsProcessingOutputString(self.GCP_ARGS, self.tr("gdal_translate -gcp arguments")))
        self.addOutput(QgsProcessingOutputNumber(self.N_GCPS, self.tr("Number of GCPs exported")))

    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        source = self._point_source(parameters, self.INPUT, context, TARGET_PIXEL_FIELDS)
        target = self._raster_path(self.parameterAsRasterLayer(parameters, self.TARGET, context), self.TARGET)
        return {"source": source, "target": target}

    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Read the layer, let the worker write the files."""
        job = self._resolve(parameters, context)
        source = job["source"]
        points = self.parameterAsFileOutput(parameters, self.OUTPUT_POINTS, context)
        vrt = self.parameterAsFileOutput(parameters, self.OUTPUT_VRT, context)
        for name, path in ((self.OUTPUT_POINTS, points), (self.OUTPUT_VRT, vrt)):
            if not path:
                raise QgsProcessingException(f"{self._label(name)} ({name}) is required.")
        columns = source_columns(source, [*TARGET_PIXEL_FIELDS, *OPTIONAL_FIELDS], feedback)
        include = self.parameterAsBool(parameters, self.INCLUDE_OUTLIERS, context)
        result = run_worker_job(
            "export_gcps",
            {"columns": columns, "crs_wkt": crs_wkt(source.sourceCrs()), "target": job["target"],
             "points": points, "vrt": vrt, "include_outliers": include},
            feedback,
            cleanup=[points, vrt],
        )
        if feedback.isCanceled():
            raise QgsProcessingException("sarcoreg exportgcps: cancelled")
        feedback.pushInfo(
            f"{result['n_gcps']} GCPs exported ({result['n_outliers']} outliers "
            f"{'included' if include else 'left out'}, {result['n_failed']} points without a position)"
        )
        return {
            self.OUTPUT_POINTS: points,
            self.OUTPUT_VRT: vrt,
            self.GCP_ARGS: result["gcp_args"],
            self.N_GCPS: float(result["n_gcps"]),
        }
