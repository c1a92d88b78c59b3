"""Processing algorithm "Correspondence map" (``sarcoreg:correspondencemap``).

Points (a point layer or one point, any CRS) are moved into the reference CRS here; the worker
job ``correspondence_map`` (:mod:`sarcoreg.core.correspondence_maps`) runs the matcher and writes
the GeoTIFF.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateTransform,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ...core.methods import method_names
from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm
from .coregister import DEVICES


def map_methods() -> list[str]:
    """The METHOD enum: the catalog's window methods with correspondence maps, in catalog order."""
    return method_names(kind="window", maps=True)

#: More points than this make a run of minutes and a mosaic nobody can read.
MAX_POINTS = 2000

_HELP = """
<p>Shows how similar the <b>target</b> (SAR) is to a template of the <b>reference</b> (optical)
around chosen points, for every displacement within the search radius: the matcher's
<i>correspondence map</i>. A sharp single peak means a reliable tie point; its place is the
local shift.</p>
<h3>Parameters</h3>
<ul>
<li><b>Reference / target raster</b>: as in <i>Co-register SAR to optical</i>.</li>
<li><b>Points</b> (a point layer, any CRS) and/or <b>Point</b> (one point, any CRS): where the maps
are computed. Each point is snapped to the nearest reference pixel corner (the template centre).</li>
<li><b>Matching method</b>: structural, ncc, mi, or the learned rrlnet, bnn, aae (these need a
<b>Model</b>; see <i>Co-register SAR to optical</i>).</li>
<li><b>Matching window</b> (even, >= 8) and <b>Search radius</b> R (pixels).</li>
</ul>
<h3>Outputs</h3>
<ul>
<li><b>Correspondence map</b>: a one-band GeoTIFF of similarities in the reference CRS. The cell of
displacement (dx, dy) is centred at the point moved by (dx, dy) reference pixels, so the map of one
point is a (2R+1) x (2R+1) raster around it. For several points the maps form one <b>mosaic</b>
(a grid half a pixel off the reference grid); cells outside every map are nodata, and where maps
of close points (nearer than 2R+1 pixels) overlap, the later point's map wins.</li>
<li><b>Folder for PNG plots</b> (optional): one plot per point (map_000.png ...) with the peak.</li>
<li><b>N_POINTS</b>: number of maps.</li>
</ul>
"""


class CorrespondenceMapAlgorithm(SarcoregAlgorithm):
    """Similarity maps of a matcher around points, as a georeferenced raster."""

    REFERENCE = "REFERENCE"
    TARGET = "TARGET"
    POINTS = "POINTS"
    POINT = "POINT"
    METHOD = "METHOD"
    WINDOW = "WINDOW"
    SEARCH_RADIUS = "SEARCH_RADIUS"
    MODEL = "MODEL"
    DEVICE = "DEVICE"
    OUTPUT = "OUTPUT"
    PNG_FOLDER = "PNG_FOLDER"
    N_POINTS = "N_POINTS"

    _name = "correspondencemap"
    _display = "Correspondence map"
    _group = "Co-registration"
    _group_id = "coregistration"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["sar", "optical", "similarity", "correspondence", "matching", "surface", "peak"]

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr("Reference raster (optical)")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET, self.tr("Target raster (SAR)")))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.POINTS, self.tr("Points"), [QgsProcessing.TypeVectorPoint], optional=True))
        self.addParameter(QgsProcessingParameterPoint(self.POINT, self.tr("Point"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, self.tr("Matching method"), options=map_methods(),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.WINDOW, self.tr("Matching window (pixels, even)"), QgsProcessingParameterNumber.Integer,
            defaultValue=64, minValue=8, maxValue=2048))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEARCH_RADIUS, self.tr("Search radius (pixels)"), QgsProcessingParameterNumber.Integer,
            defaultValue=16, minValue=1, maxValue=512))
        for param in (
            QgsProcessingParameterString(
                self.MODEL, self.tr("Model for learned matchers (a name or a .onnx / .pt file)"), optional=True),
            QgsProcessingParameterEnum(self.DEVICE, self.tr("Device for learned matchers"), options=DEVICES,
                                       defaultValue=0),
        ):
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Correspondence map")))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.PNG_FOLDER, self.tr("Folder for PNG plots (one per point)"), optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.N_POINTS, self.tr("Number of maps")))

    # ----------------------------------------------------------------------------- validation
    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        """Check the inputs; points go to the reference CRS (map units)."""
        ref_layer, _, reference, target = self._raster_pair(parameters, context)
        window = self._window(parameters, context)
        radius = self.parameterAsInt(parameters, self.SEARCH_RADIUS, context)
        if radius < 1:
            raise QgsProcessingException(f"{self._label(self.SEARCH_RADIUS)} ({self.SEARCH_RADIUS}) must be >= 1.")
        ref_crs = ref_layer.crs()
        points: list[list[float]] = []
        source = self.parameterAsSource(parameters, self.POINTS, context)
        if source is not None:
            if QgsWkbTypes.geometryType(source.wkbType()) != QgsWkbTypes.PointGeometry:
                raise QgsProcessingException(f"{self._label(self.POINTS)} ({self.POINTS}) must be a point layer.")
            transform = QgsCoordinateTransform(source.sourceCrs(), ref_crs, context.transformContext()) \
                if source.sourceCrs().isValid() and ref_crs.isValid() else None
            for feature in source.getFeatures():
                geom = feature.geometry()
                if geom is None or geom.isEmpty():
                    continue
                parts = geom.asMultiPoint() if geom.isMultipart() else [geom.asPoint()]
                for pt in parts:
                    p = transform.transform(pt) if transform is not None else pt
                    points.append([p.x(), p.y()])
        if parameters.get(self.POINT) not in (None, ""):
            pt = self.parameterAsPoint(parameters, self.POINT, context, ref_crs)
            points.append([pt.x(), pt.y()])
        if not points:
            raise QgsProcessingException(
                f"No point given: set {self._label(self.POINTS)} ({self.POINTS}) to a non-empty point layer or "
                f"{self._label(self.POINT)} ({self.POINT}).")
        if len(points) > MAX_POINTS:
            raise QgsProcessingException(
                f"{self._label(self.POINTS)} ({self.POINTS}) has {len(points)} points; at most {MAX_POINTS}.")
        extent = ref_layer.extent()
        outside = [k for k, (x, y) in enumerate(points)
                   if not (extent.xMinimum() <= x <= extent.xMaximum() and extent.yMinimum() <= y <= extent.yMaximum())]
        if outside:
            raise QgsProcessingException(
                f"{len(outside)} point(s) of {self.POINTS}/{self.POINT} lie outside the {self._label(self.REFERENCE)} "
                f"(first: {points[outside[0]]} in {ref_crs.authid() or 'the reference CRS'}).")
        method = map_methods()[self.parameterAsEnum(parameters, self.METHOD, context)]
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        model = (self.parameterAsString(parameters, self.MODEL, context) or "").strip()
        options: dict[str, Any] = {"method": method, "window": window, "search_radius": radius}
        learned = method_names(learned=True)
        if method in learned:
            options["matcher_options"] = {"device": device, **({"model": model} if model else {})}
        elif model:
            raise QgsProcessingException(
                f"{self._label(self.MODEL)} ({self.MODEL}) is only used by the learned methods "
                f"({', '.join(sorted(learned))}); clear it or pick one of them as {self.METHOD}.")
        return {"reference": reference, "target": target, "points_map": points, "options": options}

    # ----------------------------------------------------------------------------- running
    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the worker job ``correspondence_map``."""
        job = self._resolve(parameters, context)
        destination = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        png_dir = self.parameterAsFileOutput(parameters, self.PNG_FOLDER, context) or ""
        if not destination.lower().endswith((".tif", ".tiff")):
            raise QgsProcessingException(f"{self._label(self.OUTPUT)} ({self.OUTPUT}) must be a GeoTIFF (.tif).")
        feedback.pushInfo(f"{len(job['points_map'])} point(s), method {job['options']['method']}")
        result = run_worker_job(
            "correspondence_map", {**job, "output": destination, "png_dir": png_dir}, feedback,
            cleanup=[destination] + ([png_dir] if png_dir else []),
        )
        for k, p in enumerate(result.get("points") or []):
            peak = "no match" if p.get("peak_dx") is None else f"peak ({p['peak_dx']:.2f}, {p['peak_dy']:.2f}) px"
            feedback.pushInfo(f"point {k}: reference pixel ({p['col']}, {p['row']}): {peak}, "
                              f"reliability {p['reliability']:.2f} {p.get('error') or ''}".rstrip())
        if result.get("overlapped_points"):
            feedback.pushWarning(f"{result['overlapped_points']} map(s) are partly covered by a later point's map.")
        feedback.pushInfo(f"Device: {result.get('device', 'unknown')}")
        out: dict[str, Any] = {self.OUTPUT: destination, self.N_POINTS: len(result.get("points") or [])}
        if png_dir:
            out[self.PNG_FOLDER] = png_dir
        return out
