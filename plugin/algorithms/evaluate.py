"""Processing algorithm "Evaluate co-registration" (``sarcoreg:evaluate``): errors at check points.

What is evaluated (see :func:`sarcoreg.core.tiepoint_ops.evaluate_checkpoints`): the
georeferencing of one raster. A check point is a feature whose true map position is known and
whose pixel position in that raster is known; the raster's georeferencing places that pixel
somewhere; the error is that place minus the true position.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsRendererRange,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..worker_bridge import run_worker_job
from .coregister import TiePointStyler, _fmt, _number
from .point_inputs import PointToolAlgorithm, crs_wkt, plain_value, point_xy

SOURCE_FRAMES: list[str] = ["pixel", "map"]
_FRAME_LABELS = [
    "Pixel position (column, -row): QGIS Georeferencer on an image",
    "Map coordinates of the evaluated raster's own georeferencing",
]
#: Fields of the residual layer: (name, type).
RESIDUAL_FIELDS: list[tuple[str, Any]] = [
    ("CHECK_ID", QVariant.String),
    ("PIXEL_X", QVariant.Double),
    ("PIXEL_Y", QVariant.Double),
    ("TRUE_X", QVariant.Double),
    ("TRUE_Y", QVariant.Double),
    ("EST_X", QVariant.Double),
    ("EST_Y", QVariant.Double),
    ("DX", QVariant.Double),
    ("DY", QVariant.Double),
    ("ERROR", QVariant.Double),
    ("ERROR_PX", QVariant.Double),
]

_HELP = """
<p>Measures how well a raster is georeferenced, e.g. the output of <i>Co-register SAR to
optical</i> or <i>Warp with tie points</i>, at independent <b>check points</b>: features whose true
map position is known and whose pixel position in the raster is known. The raster's
georeferencing (geotransform, or GCPs) places each such pixel somewhere on the map; the error of
the check point is that place minus the true position. Reported: RMSE (radial, and in x and y),
CE90 (90th percentile of the error lengths), in map units and in raster pixels.</p>
<p>Pixel positions use the GDAL convention: (0, 0) is the top-left corner of the top-left pixel,
(0.5, 0.5) the centre of the first pixel. A raster corrected by a shift or affine transform keeps
the target's pixel grid, so check points measured on the original target serve for both the
original and the corrected raster (before / after); for a warped raster measure them on the
warped raster.</p>
<h3>Parameters</h3>
<ul>
<li><b>Raster to evaluate</b>.</li>
<li><b>Check-point layer</b>: points at the true positions, with two numeric fields giving the
column and row in the raster (default TGT_X_IM / TGT_Y_IM, as in sarcoreg tie-point layers).</li>
<li><b>Check-point file (.points)</b>: instead of a layer, a QGIS Georeferencer file: mapX / mapY
are the true positions (in the file's CRS, else the raster's), sourceX / sourceY the position in
the raster, read as <b>Source coordinates</b> says: <i>pixel</i> = (column, -row), as the
Georeferencer records an image without georeferencing; <i>map</i> = map coordinates of the
raster's georeferencing. Disabled rows are skipped.</li>
</ul>
<h3>Outputs</h3>
<ul>
<li><b>Check-point errors</b>: one point per check point at its true position (in the raster's
CRS) with PIXEL_X/Y, TRUE_X/Y, EST_X/Y (where the raster puts it), DX, DY, ERROR (map units) and
ERROR_PX; loaded layers are coloured by ERROR_PX.</li>
<li><b>Evaluation report</b> (HTML) and the numbers RMSE, RMSE_X, RMSE_Y, CE90 (map units),
RMSE_PX, CE90_PX, N_CHECKPOINTS.</li>
</ul>
"""


class EvaluateAlgorithm(PointToolAlgorithm):
    """RMSE and CE90 of a raster's georeferencing at check points."""

    RASTER = "RASTER"
    CHECKPOINTS = "CHECKPOINTS"
    PIXEL_X_FIELD = "PIXEL_X_FIELD"
    PIXEL_Y_FIELD = "PIXEL_Y_FIELD"
    CHECKPOINTS_FILE = "CHECKPOINTS_FILE"
    SOURCE_FRAME = "SOURCE_FRAME"
    OUTPUT = "OUTPUT"
    OUTPUT_HTML = "OUTPUT_HTML"
    RMSE = "RMSE"
    RMSE_X = "RMSE_X"
    RMSE_Y = "RMSE_Y"
    CE90 = "CE90"
    RMSE_PX = "RMSE_PX"
    CE90_PX = "CE90_PX"
    N_CHECKPOINTS = "N_CHECKPOINTS"

    _name = "evaluate"
    _display = "Evaluate co-registration"
    _group = "Co-registration"
    _group_id = "coregistration"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["evaluate", "check points", "accuracy", "rmse", "ce90", "validation", "error"]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("RMSE and CE90 of a (co-registered) raster's georeferencing at independent check points.")

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.RASTER, self.tr("Raster to evaluate")))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.CHECKPOINTS, self.tr("Check-point layer (true positions)"), [QgsProcessing.TypeVectorPoint],
            optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.PIXEL_X_FIELD, self.tr("Field with the column in the raster"), "TGT_X_IM", self.CHECKPOINTS,
            QgsProcessingParameterField.Numeric, optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.PIXEL_Y_FIELD, self.tr("Field with the row in the raster"), "TGT_Y_IM", self.CHECKPOINTS,
            QgsProcessingParameterField.Numeric, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.CHECKPOINTS_FILE, self.tr("Check-point file (.points), instead of a layer"),
            extension="points", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.SOURCE_FRAME, self.tr("Source coordinates of the .points file"), options=_FRAME_LABELS,
            defaultValue=0))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, self.tr("Check-point errors"), QgsProcessing.TypeVectorPoint))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Evaluation report"), self.tr("HTML files (*.html)")))
        for name, label in (
            (self.RMSE, "RMSE (map units)"), (self.RMSE_X, "RMSE in x (map units)"),
            (self.RMSE_Y, "RMSE in y (map units)"), (self.CE90, "CE90 (map units)"),
            (self.RMSE_PX, "RMSE (raster pixels)"), (self.CE90_PX, "CE90 (raster pixels)"),
            (self.N_CHECKPOINTS, "Number of check points used"),
        ):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        layer = self.parameterAsRasterLayer(parameters, self.RASTER, context)
        raster = self._raster_path(layer, self.RASTER)
        assert layer is not None
        self._check_units(layer.crs(), self.RASTER, "the raster")
        has_layer = parameters.get(self.CHECKPOINTS) not in (None, "")
        points_file = self.parameterAsFile(parameters, self.CHECKPOINTS_FILE, context)
        if has_layer == bool(points_file):
            raise QgsProcessingException(
                f"Give either the {self._label(self.CHECKPOINTS)} ({self.CHECKPOINTS}) or the "
                f"{self._label(self.CHECKPOINTS_FILE)} ({self.CHECKPOINTS_FILE}), "
                + ("not both." if has_layer else "none was given.")
            )
        job: dict[str, Any] = {"raster": raster, "raster_crs": layer.crs(), "points_file": points_file}
        if points_file:
            try:
                with open(points_file, encoding="utf-8") as fh:
                    fh.readline()
            except OSError as exc:
                raise QgsProcessingException(
                    f"{self._label(self.CHECKPOINTS_FILE)} ({self.CHECKPOINTS_FILE}): cannot read '{points_file}': "
                    f"{exc.strerror}.") from None
            return job
        fx = self.parameterAsString(parameters, self.PIXEL_X_FIELD, context) or "TGT_X_IM"
        fy = self.parameterAsString(parameters, self.PIXEL_Y_FIELD, context) or "TGT_Y_IM"
        source = self._point_source(parameters, self.CHECKPOINTS, context, (fx, fy))
        crs = source.sourceCrs()
        self._check_units(crs, self.CHECKPOINTS, "the check-point layer")
        if layer.crs().isValid() and not crs.isValid():
            raise QgsProcessingException(
                f"{self._label(self.CHECKPOINTS)} ({self.CHECKPOINTS}): the layer has no CRS; set it (Layer "
                "Properties > Source) so that the true positions can be compared with the raster."
            )
        job.update(source=source, fields=(fx, fy))
        return job

    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Read the check points, let the worker measure, write the residual layer."""
        job = self._resolve(parameters, context)
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        params: dict[str, Any] = {"raster": job["raster"], "report_html": html}
        if job["points_file"]:
            params.update(points_file=job["points_file"],
                          source_frame=SOURCE_FRAMES[self.parameterAsEnum(parameters, self.SOURCE_FRAME, context)])
        else:
            true_xy, pixel_xy, ids = [], [], []
            fx, fy = job["fields"]
            for feature in job["source"].getFeatures():
                x, y = point_xy(feature)
                px, py = plain_value(feature[fx]), plain_value(feature[fy])
                true_xy.append([x, y])
                pixel_xy.append([px if isinstance(px, int | float) else None,
                                 py if isinstance(py, int | float) else None])
                ids.append(str(feature.id()))
            params.update(true_xy=[[v if v is not None else float("nan") for v in row] for row in true_xy],
                          pixel_xy=[[v if v is not None else float("nan") for v in row] for row in pixel_xy],
                          ids=ids, crs_wkt=crs_wkt(job["source"].sourceCrs()))
        result = run_worker_job("evaluate", params, feedback, cleanup=[html])
        if feedback.isCanceled():
            raise QgsProcessingException("sarcoreg evaluate: cancelled")
        feedback.pushInfo(
            f"{result['n']} check points ({result.get('n_skipped', 0)} without a usable position): RMSE "
            f"{_fmt(result.get('rmse'))} ({_fmt(result.get('rmse_px'))} px), CE90 {_fmt(result.get('ce90'))} "
            f"({_fmt(result.get('ce90_px'))} px)"
        )
        sink_id = self._write_residuals(parameters, context, result, job["raster_crs"])
        return {
            self.OUTPUT: sink_id,
            self.OUTPUT_HTML: html,
            self.RMSE: _number(result.get("rmse")),
            self.RMSE_X: _number(result.get("rmse_x")),
            self.RMSE_Y: _number(result.get("rmse_y")),
            self.CE90: _number(result.get("ce90")),
            self.RMSE_PX: _number(result.get("rmse_px")),
            self.CE90_PX: _number(result.get("ce90_px")),
            self.N_CHECKPOINTS: _number(result.get("n")),
        }

    def _write_residuals(
        self, parameters: Any, context: QgsProcessingContext, result: dict[str, Any],
        crs: QgsCoordinateReferenceSystem,
    ) -> str:
        fields = QgsFields()
        for name, kind in RESIDUAL_FIELDS:
            fields.append(QgsField(name, kind))
        sink, sink_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Point, crs)
        if sink is None:
            raise QgsProcessingException(f"{self._label(self.OUTPUT)} ({self.OUTPUT}): cannot create the layer.")
        pts = result["points"]
        size = float(result.get("pixel_size") or 1.0)
        for k in range(len(pts["id"])):
            feat = QgsFeature(fields)
            feat.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(pts["true_x"][k], pts["true_y"][k])))
            feat.setAttributes([
                str(pts["id"][k]), pts["pixel_x"][k], pts["pixel_y"][k], pts["true_x"][k], pts["true_y"][k],
                pts["est_x"][k], pts["est_y"][k], pts["dx"][k], pts["dy"][k], pts["error"][k],
                pts["error"][k] / size,
            ])
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        if context.willLoadLayerOnCompletion(sink_id):
            context.layerToLoadOnCompletionDetails(sink_id).setPostProcessor(ErrorStyler.create())
        return str(sink_id)


class ErrorStyler(QgsProcessingLayerPostProcessorInterface):
    """Colours the loaded check-point errors by ERROR_PX, with the tie-point residual classes."""

    _instance: ErrorStyler | None = None

    @classmethod
    def create(cls) -> ErrorStyler:
        """One shared instance (Processing keeps only a pointer to it, Python must own it)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:  # noqa: N802
        """Give the loaded layer a graduated renderer (never fails the run)."""
        try:
            if isinstance(layer, QgsVectorLayer) and layer.fields().indexOf("ERROR_PX") >= 0:
                layer.setRenderer(error_renderer())
                layer.triggerRepaint()
        except Exception as exc:  # styling is cosmetic
            feedback.pushWarning(f"could not style the check-point errors: {exc}")


def error_renderer() -> QgsGraduatedSymbolRenderer:
    """Graduated renderer on ``ERROR_PX`` (classes of :attr:`TiePointStyler.CLASSES`)."""
    ranges = []
    lower = 0.0
    for upper, label, colour in TiePointStyler.CLASSES:
        symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": colour, "outline_color": "#232323",
                                               "size": "2.4"})
        top = upper if upper is not None else 1e12
        ranges.append(QgsRendererRange(lower, top, symbol, label.replace("inlier, residual", "error")))
        lower = top
    return QgsGraduatedSymbolRenderer("ERROR_PX", ranges)
