"""Processing algorithm "Co-register SAR to optical" (``sarcoreg:coregister``).

A thin adapter: Processing parameters -> the worker job ``coregister`` (the engine in
``sarcoreg.core.engine`` runs in the worker process) -> Processing outputs. Nothing here imports
numpy or OpenCV: the QGIS process only resolves layers, moves files and copies tie points.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from osgeo import gdal
from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsMarkerSymbol,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRuleBasedRenderer,
    QgsVectorLayer,
)

from ...core.methods import DEFAULT_METHOD, get_method, method_names
from ...core.output_formats import OUTPUT_NAMES, OutputFormat, output_formats
from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm

#: Keypoint matchers of the ``shared`` method (``sarcoreg.core.keypoints``; a test checks them).
KEYPOINT_MATCHERS: list[str] = ["disk-lightglue", "aliked-lightglue", "xfeat", "xfeat-lighterglue", "sift"]
#: Transform kinds of ``sarcoreg.core.estimation.TRANSFORM_KINDS``, in enum order.
TRANSFORMS: list[str] = ["shift", "affine", "homography", "poly1", "poly2", "poly3", "tps", "similarity"]
MODALITIES: list[str] = ["auto", "optical", "sar"]
SAR_SCALES: list[str] = ["auto", "amplitude", "intensity", "db"]
DEVICES: list[str] = ["auto", "cpu", "cuda"]
#: Defaults copied from ``sarcoreg.core.engine.CoregOptions`` (a test checks they agree).
DEFAULTS: dict[str, Any] = {
    "method": DEFAULT_METHOD,
    "transform": "affine",
    "spacing": None,
    "window": None,
    "search_radius": None,
    "reference_modality": "auto",
    "target_modality": "auto",
    "sar_scale": "auto",
    "speckle_filter": False,
    "coarse": True,
    "min_reliability": 0.15,
    "ransac_threshold_px": 2.0,
    "seed": 0,
}
#: Name of the co-registered raster in the worker's output folder.
COREGISTERED_NAME = OUTPUT_NAMES["coregistered"]
#: Files of the built-in output set (an algorithm checks the whole list, registered formats too,
#: against its inputs: :meth:`CoregisterAlgorithm.initAlgorithm`).
FOLDER_FILES = tuple(OUTPUT_NAMES.values())
TIEPOINT_LAYER = "tiepoints"

_HELP = """
<p>Finds tie points between a <b>reference</b> raster (usually optical, e.g. Sentinel-2) and a
<b>target</b> raster (usually SAR, e.g. Sentinel-1), fits a transform with a robust (RANSAC) fit,
and writes the target co-registered onto the reference. The matching runs in the sarcoreg worker
process; progress, log and <i>Cancel</i> work as usual.</p>
<h3>Parameters</h3>
<ul>
<li><b>Reference raster (optical)</b>: the raster whose georeferencing is trusted. Its CRS and grid
are kept. File-based rasters only (GeoTIFF, VRT, JP2 ...).</li>
<li><b>Target raster (SAR) to co-register</b>: the raster to correct; must overlap the reference.</li>
<li><b>Matching method</b>: <i>structural</i> (CFOG descriptors of oriented gradients, robust to
the SAR/optical contrast reversal; the default), <i>ncc</i> (normalised cross-correlation, for
images of the same modality), <i>mi</i> (mutual information; slower), <i>sift</i> (SIFT keypoints,
for images of similar appearance), and the learned matchers <i>rrlnet</i> (RRL-Net patch
verification), <i>bnn</i> (BNN / MoCo-BNN two-tower embeddings), <i>aae</i> (adversarial
autoencoder descriptors), which need a trained model (see <b>Model</b>), and <i>shared</i> (both
rasters turned into one shared modality by U-Nets, then matched by keypoints; see <b>Keypoint
matcher of the shared method</b>).</li>
<li><b>Transform</b>: model fitted to the tie points: <i>shift</i>, <i>affine</i> (default),
<i>homography</i>, polynomials of order 1-3, or a thin-plate spline (<i>tps</i>). A shift or affine
result only rewrites the geotransform (no resampling); the others warp the target.</li>
<li><b>Tie-point spacing</b>: distance between candidate tie points on a regular grid, reference
pixels. 0 (default) = automatic: about 1000 candidates on large images, a dense grid on small ones.</li>
<li><b>Matching window</b>: template size in pixels (even, at least 8). Larger windows are more
reliable on SAR, smaller ones follow local distortions. 0 (default) = automatic (64, smaller on
small images).</li>
<li><b>Search radius</b>: how far (pixels) each template is searched around its expected place,
after the coarse offset. 0 (default) = automatic: 1.5 x 50 m (the expected Sentinel-1 GRD
georeferencing error) in pixels, 8-64 px; 16 px for images without georeferencing.</li>
</ul>
<h3>Advanced parameters</h3>
<ul>
<li><b>Reference / target bands</b>: bands used for matching (none selected: all bands).</li>
<li><b>Reference / target modality</b>: optical or SAR preprocessing; <i>auto</i> detects it.</li>
<li><b>SAR scale</b>: how SAR values are stored (amplitude, intensity or dB); <i>auto</i> detects
it.</li>
<li><b>Speckle filter</b>: Lee-filter SAR windows before matching.</li>
<li><b>Coarse offset first</b>: estimate a global offset on an overview before matching (for
shifts larger than the search radius).</li>
<li><b>Minimum reliability</b>: tie points below this reliability (0-1) are outliers.</li>
<li><b>RANSAC threshold</b>: inlier threshold of the robust fit, reference pixels.</li>
<li><b>Random seed</b>: seed of the robust fit (runs are reproducible).</li>
<li><b>Keep uncertain results</b>: every run gets a verdict (<i>ok</i>, <i>uncertain</i> or
<i>failed</i>; see <b>STATUS</b>). On (the default), an uncertain result is written and a warning
in the log says why; off, it is refused like a failed one and nothing is written.</li>
<li><b>Device</b>: where learned matchers run (auto, cpu, cuda). The built-in matchers run on the
CPU; the device actually used is written to the log.</li>
<li><b>Model</b>: for the learned matchers, a model name (run <i>sarcoreg models list</i> in the
worker environment; models in folders listed in SARCOREG_MODEL_PATH count too) or the path of a
.onnx / .pt file. Empty: the method's default model. A missing model gives an error that says
which model was looked for and where.</li>
<li><b>Keypoint matcher of the shared method</b>: with method <i>shared</i>, both rasters are first
turned into the shared modality (Borisov et al. 2026; model <i>shared-v2</i> by default) and then
matched by DISK + LightGlue, ALIKED + LightGlue, XFeat (+ LighterGlue) or SIFT; the window, spacing
and search radius are not used by it.</li>
</ul>
<h3>Outputs</h3>
<ul>
<li><b>Co-registered raster</b>: all target bands, corrected onto the reference.</li>
<li><b>Tie points</b>: point layer in the reference CRS, one point per candidate, with
AROSICS-style fields (X_SHIFT_PX, Y_SHIFT_PX, RELIABILITY, RESIDUAL_PX, L1/L2_OUTLIER, OUTLIER,
LAST_ERR ...). Loaded layers are styled: outliers as grey crosses, inliers coloured by residual.
Optional: in scripts pass OUTPUT_TIEPOINTS='TEMPORARY_OUTPUT' or a file name to get it.</li>
<li><b>Folder for the other outputs</b> (optional): QGIS Georeferencer GCPs (gcps.points), a VRT
with GCPs (gcps.vrt), the shift field (shifts.tif) and the reports (report.html, report.json).
Left empty, they go to a temporary folder.</li>
<li><b>RMSE_PX, RMSE_MAP, N_TIEPOINTS, N_INLIERS</b>: fit quality, usable in models.</li>
<li><b>STATUS</b>: the verdict, <i>ok</i> or <i>uncertain</i> (a <i>failed</i> run stops with an
error that gives the reasons and writes nothing); <b>REASONS</b>: what was wrong and what to do, one
per line; <b>RMSE_CV_PX</b>: the cross-validated check-point error (each tie point predicted by a
fit without it), the honest accuracy estimate.</li>
{format_outputs}
</ul>
"""


class CoregisterAlgorithm(SarcoregAlgorithm):
    """Co-register a SAR raster onto an optical reference through the sarcoreg worker."""

    REFERENCE = "REFERENCE"
    TARGET = "TARGET"
    METHOD = "METHOD"
    TRANSFORM = "TRANSFORM"
    SPACING = "SPACING"
    WINDOW = "WINDOW"
    SEARCH_RADIUS = "SEARCH_RADIUS"
    REFERENCE_BANDS = "REFERENCE_BANDS"
    TARGET_BANDS = "TARGET_BANDS"
    REFERENCE_MODALITY = "REFERENCE_MODALITY"
    TARGET_MODALITY = "TARGET_MODALITY"
    SAR_SCALE = "SAR_SCALE"
    SPECKLE_FILTER = "SPECKLE_FILTER"
    COARSE = "COARSE"
    MIN_RELIABILITY = "MIN_RELIABILITY"
    RANSAC_THRESHOLD = "RANSAC_THRESHOLD"
    SEED = "SEED"
    KEEP_UNCERTAIN = "KEEP_UNCERTAIN"
    DEVICE = "DEVICE"
    MODEL = "MODEL"
    KEYPOINTS = "KEYPOINTS"
    OUTPUT = "OUTPUT"
    OUTPUT_TIEPOINTS = "OUTPUT_TIEPOINTS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    _folder_files = {OUTPUT_FOLDER: FOLDER_FILES}
    #: Output keys of the set this algorithm's worker job writes (None: every format of the list).
    _writes: tuple[str, ...] | None = None
    RMSE_PX = "RMSE_PX"
    RMSE_MAP = "RMSE_MAP"
    N_TIEPOINTS = "N_TIEPOINTS"
    N_INLIERS = "N_INLIERS"
    STATUS = "STATUS"
    REASONS = "REASONS"
    RMSE_CV_PX = "RMSE_CV_PX"
    REPORT_HTML = "REPORT_HTML"
    POINTS_FILE = "POINTS_FILE"

    _name = "coregister"
    _display = "Co-register SAR to optical"
    _group = "Co-registration"
    _group_id = "coregistration"
    _help = _HELP

    def _formats_with_outputs(self) -> list[OutputFormat]:
        """The formats this algorithm writes that have a Processing output, in list order."""
        return [f for f in output_formats()
                if f.processing is not None and (self._writes is None or f.key in self._writes)]

    def _add_format_outputs(self) -> None:
        """One Processing output per written format that declares one (the output-format list)."""
        for f in self._formats_with_outputs():
            assert f.processing is not None
            kind = QgsProcessingOutputHtml if f.processing.kind == "html" else QgsProcessingOutputFile
            self.addOutput(kind(f.processing.name, self.tr(f.processing.description)))

    def _format_results(self, outputs: dict[str, str]) -> dict[str, str]:
        """Processing output name -> written path ("" when not written) of :meth:`_add_format_outputs`."""
        return {f.processing.name: outputs.get(f.key, "") for f in self._formats_with_outputs()
                if f.processing is not None}

    def shortHelpString(self) -> str:  # noqa: N802
        """The help, with one line per Processing output of the output-format list."""
        lines = "\n".join(f"<li><b>{f.processing.name}</b>: {f.processing.description} ({f.file_name}).</li>"
                          for f in self._formats_with_outputs() if f.processing is not None)
        return self.tr(self._help).replace("{format_outputs}", lines)

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return [
            "sar",
            "optical",
            "coregistration",
            "registration",
            "tie points",
            "gcp",
            "sentinel-1",
            "sentinel-2",
            "georeferencing",
            "shift",
        ]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("Finds tie points between a SAR and an optical raster and corrects the SAR.")

    # ----------------------------------------------------------------------------- parameters
    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        # Every file of the set, registered formats too, is checked against the inputs.
        self._folder_files = {self.OUTPUT_FOLDER: tuple(f.file_name for f in output_formats())}
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr("Reference raster (optical)")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET, self.tr("Target raster (SAR) to co-register")))
        self.addParameter(
            QgsProcessingParameterEnum(
                self.METHOD,
                self.tr("Matching method"),
                options=method_names(),  # the method catalog, in its (append-only) order
                defaultValue=method_names().index(DEFAULTS["method"]),
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.TRANSFORM,
                self.tr("Transform"),
                options=TRANSFORMS,
                defaultValue=TRANSFORMS.index(DEFAULTS["transform"]),
            )
        )
        # 0 = automatic (CoregOptions' None): chosen from the overlap size and pixel size.
        self.addParameter(self._int(self.SPACING, "Tie-point spacing (reference pixels, 0 = auto)", 0, 0, 100000))
        self.addParameter(self._int(self.WINDOW, "Matching window (pixels, even, 0 = auto)", 0, 0, 2048))
        self.addParameter(self._int(self.SEARCH_RADIUS, "Search radius (pixels, 0 = auto)", 0, 0, 2048))

        advanced: list[QgsProcessingParameterDefinition] = [
            QgsProcessingParameterBand(
                self.REFERENCE_BANDS,
                self.tr("Reference bands used for matching (none: all)"),
                None,
                self.REFERENCE,
                optional=True,
                allowMultiple=True,
            ),
            QgsProcessingParameterBand(
                self.TARGET_BANDS,
                self.tr("Target bands used for matching (none: all)"),
                None,
                self.TARGET,
                optional=True,
                allowMultiple=True,
            ),
            QgsProcessingParameterEnum(
                self.REFERENCE_MODALITY,
                self.tr("Reference modality"),
                options=MODALITIES,
                defaultValue=MODALITIES.index(DEFAULTS["reference_modality"]),
            ),
            QgsProcessingParameterEnum(
                self.TARGET_MODALITY,
                self.tr("Target modality"),
                options=MODALITIES,
                defaultValue=MODALITIES.index(DEFAULTS["target_modality"]),
            ),
            QgsProcessingParameterEnum(
                self.SAR_SCALE,
                self.tr("SAR scale"),
                options=SAR_SCALES,
                defaultValue=SAR_SCALES.index(DEFAULTS["sar_scale"]),
            ),
            QgsProcessingParameterBoolean(
                self.SPECKLE_FILTER,
                self.tr("Speckle filter (Lee) on SAR windows"),
                defaultValue=DEFAULTS["speckle_filter"],
            ),
            QgsProcessingParameterBoolean(
                self.COARSE, self.tr("Estimate a coarse global offset first"), defaultValue=DEFAULTS["coarse"]
            ),
            self._double(
                self.MIN_RELIABILITY, "Minimum tie-point reliability (0-1)", DEFAULTS["min_reliability"], 0.0, 1.0
            ),
            self._double(
                self.RANSAC_THRESHOLD,
                "RANSAC inlier threshold (reference pixels)",
                DEFAULTS["ransac_threshold_px"],
                0.01,
                1000.0,
            ),
            self._int(self.SEED, "Random seed of the robust fit", DEFAULTS["seed"], 0, 2**31 - 1),
            QgsProcessingParameterBoolean(
                self.KEEP_UNCERTAIN,
                self.tr("Keep uncertain results (off: an uncertain verdict writes nothing, like a failed one)"),
                defaultValue=True,
            ),
            QgsProcessingParameterEnum(
                self.DEVICE, self.tr("Device for learned matchers"), options=DEVICES, defaultValue=0
            ),
            QgsProcessingParameterString(
                self.MODEL,
                self.tr("Model for learned matchers (a name from `sarcoreg models list`, or a .onnx / .pt file)"),
                optional=True,
            ),
            QgsProcessingParameterEnum(
                self.KEYPOINTS, self.tr("Keypoint matcher of the shared method"), options=KEYPOINT_MATCHERS,
                defaultValue=0,
            ),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)

        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Co-registered raster")))
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT_TIEPOINTS,
                self.tr("Tie points"),
                QgsProcessing.TypeVectorPoint,
                optional=True,
                createByDefault=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFolderDestination(
                self.OUTPUT_FOLDER,
                self.tr("Folder for the other outputs (GCPs, shift field, reports)"),
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_PX, self.tr("RMSE of the fit (pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_MAP, self.tr("RMSE of the fit (map units)")))
        self.addOutput(QgsProcessingOutputNumber(self.N_TIEPOINTS, self.tr("Number of usable tie points")))
        self.addOutput(QgsProcessingOutputNumber(self.N_INLIERS, self.tr("Number of inliers of the fit")))
        self._add_verdict_outputs()
        self._add_format_outputs()  # REPORT_HTML, POINTS_FILE, REPORT_JSON ...

    def _add_verdict_outputs(self) -> None:
        """STATUS, REASONS and RMSE_CV_PX (shared with Extract tie points)."""
        self.addOutput(QgsProcessingOutputString(self.STATUS, self.tr("Verdict of the run (ok or uncertain)")))
        self.addOutput(QgsProcessingOutputString(self.REASONS, self.tr("Reasons of the verdict, one per line")))
        self.addOutput(
            QgsProcessingOutputNumber(self.RMSE_CV_PX, self.tr("Cross-validated check-point RMSE (pixels)"))
        )

    def _verdict_results(self, report: dict[str, Any], feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """Log the verdict (an uncertain one as a non-fatal error) and return the verdict outputs.

        Raises:
            QgsProcessingException: The report says ``failed`` (the engine refuses those before
                writing, so this only guards against an old worker).
        """
        status = str(report.get("status") or "unknown")
        reasons = [str(r) for r in report.get("reasons") or []]
        if status == "failed":
            raise QgsProcessingException("co-registration failed: " + " ".join(reasons))
        cv = _number(report.get("rmse_cv_px"))
        feedback.pushInfo(
            f"Verdict: {status}; cross-validated check-point RMSE " + ("n/a" if cv is None else f"{cv:.3f} px")
        )
        if status == "uncertain":
            feedback.reportError(
                "The result is UNCERTAIN; check it before use:\n" + "\n".join(f"- {r}" for r in reasons),
                fatalError=False,
            )
        return {self.STATUS: status, self.REASONS: "\n".join(reasons), self.RMSE_CV_PX: cv}

    def _int(self, name: str, label: str, default: int, lo: int, hi: int) -> Any:
        return QgsProcessingParameterNumber(
            name, self.tr(label), QgsProcessingParameterNumber.Integer, defaultValue=default, minValue=lo, maxValue=hi
        )

    def _double(self, name: str, label: str, default: float, lo: float, hi: float) -> Any:
        return QgsProcessingParameterNumber(
            name, self.tr(label), QgsProcessingParameterNumber.Double, defaultValue=default, minValue=lo, maxValue=hi
        )

    # ----------------------------------------------------------------------------- validation
    def _bands(self, parameters: Any, name: str, context: Any, layer: QgsRasterLayer) -> list[int] | None:
        bands = [int(b) for b in (self.parameterAsInts(parameters, name, context) or [])]
        bad = [b for b in bands if not 1 <= b <= layer.bandCount()]
        if bad:
            raise QgsProcessingException(
                f"{self._label(name)}: band(s) {bad} do not exist; '{layer.name()}' has {layer.bandCount()} band(s)."
            )
        return bands or None

    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        """Validate the parameters and build the worker job's ``reference``/``target``/``options``."""
        ref_layer, tgt_layer, reference, target = self._raster_pair(parameters, context)
        # 0 = automatic (None for the engine); anything else is checked.
        window = self.parameterAsInt(parameters, self.WINDOW, context) or None
        if window is not None:
            window = self._window(parameters, context)
        spacing = self.parameterAsInt(parameters, self.SPACING, context) or None
        radius = self.parameterAsInt(parameters, self.SEARCH_RADIUS, context) or None
        for name, value in ((self.SPACING, spacing), (self.SEARCH_RADIUS, radius)):
            if value is not None and value < 1:
                raise QgsProcessingException(f"{self._label(name)} ({name}) must be at least 1 (or 0: auto), "
                                             f"got {value}.")
        assert ref_layer is not None and tgt_layer is not None
        method = method_names()[self.parameterAsEnum(parameters, self.METHOD, context)]
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        options: dict[str, Any] = {
            "method": method,
            "transform": TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)],
            "spacing": spacing,
            "window": window,
            "search_radius": radius,
            "reference_bands": self._bands(parameters, self.REFERENCE_BANDS, context, ref_layer),
            "target_bands": self._bands(parameters, self.TARGET_BANDS, context, tgt_layer),
            "reference_modality": MODALITIES[self.parameterAsEnum(parameters, self.REFERENCE_MODALITY, context)],
            "target_modality": MODALITIES[self.parameterAsEnum(parameters, self.TARGET_MODALITY, context)],
            "sar_scale": SAR_SCALES[self.parameterAsEnum(parameters, self.SAR_SCALE, context)],
            "speckle_filter": self.parameterAsBool(parameters, self.SPECKLE_FILTER, context),
            "coarse": self.parameterAsBool(parameters, self.COARSE, context),
            "min_reliability": self.parameterAsDouble(parameters, self.MIN_RELIABILITY, context),
            "ransac_threshold_px": self.parameterAsDouble(parameters, self.RANSAC_THRESHOLD, context),
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "verdict": {"keep_uncertain": self.parameterAsBool(parameters, self.KEEP_UNCERTAIN, context)},
        }
        model = (self.parameterAsString(parameters, self.MODEL, context) or "").strip()
        learned = method_names(learned=True)
        if method in learned:
            options["matcher_options"] = {"device": device, **({"model": model} if model else {})}
            if get_method(method).kind == "keypoint":  # the shared-modality search takes a keypoint matcher
                options["matcher_options"]["keypoints"] = KEYPOINT_MATCHERS[
                    self.parameterAsEnum(parameters, self.KEYPOINTS, context)]
        elif model:
            raise QgsProcessingException(
                f"{self._label(self.MODEL)} ({self.MODEL}) is only used by the learned methods "
                f"({', '.join(sorted(learned))}); clear it or pick one of them as {self.METHOD}."
            )
        return {
            "reference": reference,
            "target": target,
            "options": options,
            "device": device,
            "reference_crs": ref_layer.crs(),
        }

    # ----------------------------------------------------------------------------- running
    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the worker job, then hand its files to Processing."""
        job = self._resolve(parameters, context)
        destination = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not destination:
            raise QgsProcessingException(f"{self._label(self.OUTPUT)} ({self.OUTPUT}) is required.")
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context)
        own_folder = not folder
        out_dir = folder or QgsProcessingUtils.generateTempFilename("sarcoreg_coregister")

        if job["device"] != "auto" and job["options"]["method"] not in method_names(learned=True):
            feedback.pushInfo(
                f"Device '{job['device']}' is ignored: the '{job['options']['method']}' matcher runs on the CPU."
            )
        feedback.pushInfo(f"Reference: {job['reference']}\nTarget: {job['target']}\nOutput folder: {out_dir}")
        result = run_worker_job(
            "coregister",
            {"reference": job["reference"], "target": job["target"], "out_dir": out_dir, "options": job["options"]},
            feedback,
            cleanup=[out_dir, destination],
        )
        if feedback.isCanceled():
            if own_folder:
                shutil.rmtree(out_dir, ignore_errors=True)
            raise QgsProcessingException("sarcoreg coregister: cancelled")
        report: dict[str, Any] = result.get("report") or {}
        outputs: dict[str, str] = result.get("outputs") or {}
        feedback.pushInfo(
            f"Co-registration: {report.get('n_inliers')} inliers of {report.get('n_tiepoints')} tie points, "
            f"RMSE {_fmt(report.get('rmse_px'))} px ({_fmt(report.get('rmse_map'))} "
            f"{report.get('map_units', 'map units')}), median shift of the inliers "
            f"({', '.join(_fmt(v) for v in report.get('median_shift_px') or [None, None])}) px"
        )
        feedback.pushInfo(f"Device: {report.get('device', 'unknown')}; worker time {_fmt(report.get('runtime_s'))} s")
        verdict = self._verdict_results(report, feedback)

        coregistered = outputs.get("coregistered") or str(Path(out_dir) / COREGISTERED_NAME)
        _deliver_raster(Path(coregistered), Path(destination), move=own_folder)
        results: dict[str, Any] = {
            self.OUTPUT: destination,
            self.OUTPUT_FOLDER: out_dir,
            self.RMSE_PX: _number(report.get("rmse_px")),
            self.RMSE_MAP: _number(report.get("rmse_map")),
            self.N_TIEPOINTS: _number(report.get("n_tiepoints")),
            self.N_INLIERS: _number(report.get("n_inliers")),
            **self._format_results(outputs),
            **verdict,
        }
        if outputs.get("tiepoints"):
            sink_id = self._copy_tiepoints(parameters, context, outputs["tiepoints"], job["reference_crs"])
            if sink_id:
                results[self.OUTPUT_TIEPOINTS] = sink_id
        return results

    def _copy_tiepoints(self, parameters: Any, context: QgsProcessingContext, gpkg: str, crs: Any) -> str | None:
        """Copy every feature and field (but the GeoPackage fid) of the worker's tie points."""
        layer = QgsVectorLayer(f"{gpkg}|layername={TIEPOINT_LAYER}", "tiepoints", "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"cannot read the tie points written to {gpkg}")
        pk = set(layer.dataProvider().pkAttributeIndexes())
        keep = [i for i in range(layer.fields().count()) if i not in pk]
        fields = QgsFields()
        for i in keep:
            fields.append(layer.fields().at(i))
        sink, sink_id = self.parameterAsSink(
            parameters, self.OUTPUT_TIEPOINTS, context, fields, layer.wkbType(), crs if crs.isValid() else layer.crs()
        )
        if sink is None:
            return None
        for src in layer.getFeatures():  # a few thousand points at most: not worth a cancel check
            feat = QgsFeature(fields)
            feat.setGeometry(src.geometry())
            attrs = src.attributes()
            feat.setAttributes([attrs[i] for i in keep])
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        if context.willLoadLayerOnCompletion(sink_id):
            context.layerToLoadOnCompletionDetails(sink_id).setPostProcessor(TiePointStyler.create())
        return str(sink_id)


class TiePointStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles the loaded tie-point layer: outliers grey crosses, inliers coloured by residual."""

    _instance: TiePointStyler | None = None
    #: (upper residual bound in reference pixels, label, colour) of the inlier classes.
    CLASSES: list[tuple[float | None, str, str]] = [
        (0.5, "inlier, residual < 0.5 px", "#1a9641"),
        (1.0, "inlier, residual 0.5-1 px", "#a6d96a"),
        (2.0, "inlier, residual 1-2 px", "#fdae61"),
        (None, "inlier, residual >= 2 px", "#d7191c"),
    ]

    @classmethod
    def create(cls) -> TiePointStyler:
        """One shared instance (Processing keeps only a pointer to it, Python must own it)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:  # noqa: N802
        """Give the loaded layer the tie-point renderer (never fails the run)."""
        try:
            if isinstance(layer, QgsVectorLayer) and layer.fields().indexOf("RESIDUAL_PX") >= 0:
                layer.setRenderer(tiepoint_renderer())
                layer.triggerRepaint()
        except Exception as exc:  # styling is cosmetic
            feedback.pushWarning(f"could not style the tie points: {exc}")


def tiepoint_renderer() -> QgsRuleBasedRenderer:
    """Rule-based renderer for a tie-point layer with ``OUTLIER`` and ``RESIDUAL_PX`` fields."""
    root = QgsRuleBasedRenderer.Rule(None)
    outlier = QgsMarkerSymbol.createSimple(
        {"name": "cross2", "color": "#7f7f7f", "outline_color": "#7f7f7f", "size": "2.6", "outline_width": "0.4"}
    )
    root.appendChild(QgsRuleBasedRenderer.Rule(outlier, 0, 0, '"OUTLIER"', "outlier / failed"))
    lower = 0.0
    for upper, label, colour in TiePointStyler.CLASSES:
        symbol = QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": colour, "outline_color": "#232323", "size": "2.4"}
        )
        expr = f'NOT "OUTLIER" AND "RESIDUAL_PX" >= {lower}'
        if upper is not None:
            expr += f' AND "RESIDUAL_PX" < {upper}'
            lower = upper
        root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, expr, label))
    return QgsRuleBasedRenderer(root)


def _deliver_raster(source: Path, destination: Path, *, move: bool) -> None:
    """Put the worker's GeoTIFF at ``destination`` atomically, converting for other extensions.

    The file is written under a hidden ``.NAME.partial`` name first and renamed at the end,
    together with any side-car files the GDAL driver made (``.aux.xml``, ``.hdr`` ...).
    """
    if not source.exists():
        raise QgsProcessingException(f"the worker did not write {source}")
    if destination.exists() and source.resolve() == destination.resolve():
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{destination.name}.partial"
    partial = destination.with_name(stem + destination.suffix)

    def partial_files() -> list[Path]:
        return [p for p in destination.parent.iterdir() if p.name.startswith(stem + ".")]

    try:
        if destination.suffix.lower() in (".tif", ".tiff"):
            if move:
                shutil.move(str(source), partial)
            else:
                shutil.copyfile(source, partial)
        else:
            driver = QgsRasterFileWriter.driverForExtension(destination.suffix) or "GTiff"
            written = gdal.Translate(str(partial), str(source), format=driver)
            if written is None:
                raise QgsProcessingException(
                    f"GDAL could not write the co-registered raster as {driver}: {destination}"
                )
            written = None  # closes and flushes the file
        for part in sorted(partial_files(), key=lambda p: p != partial):  # the raster itself first
            os.replace(part, destination.with_name(destination.stem + part.name[len(stem) :]))
    finally:
        for part in partial_files():
            part.unlink()


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _fmt(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.3f}"
