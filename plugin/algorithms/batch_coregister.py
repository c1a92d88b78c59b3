"""Processing algorithm "Co-register many pairs" (``sarcoreg:batchcoregister``).

A thin adapter over ``sarcoreg batch``: the worker job ``batch`` (:mod:`sarcoreg.core.batch.job`)
runs the pairs on Dask distributed (a local cluster of worker processes inside the worker, or
an existing scheduler) and writes ``<folder>/<id>/`` per pair and the summary files; this side
checks the parameters, forwards progress and cancel, and loads the summary layer coloured by
status. Dask is never imported into QGIS's own Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ...core.batch.folders import SUMMARY_FILES, remove_unfinished
from ...core.methods import method_names
from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm
from .coregister import TRANSFORMS


def _batch_methods() -> list[str]:
    """The METHOD enum: the catalog's classical methods (no model to ship to the Dask workers), in catalog order."""
    return method_names(learned=False)


_HELP = """
<p>Co-registers many pairs at once with <i>sarcoreg batch</i>: each pair is one task on
<b>Dask distributed</b>, run in the sarcoreg worker process (QGIS stays responsive; <i>Cancel</i>
stops every worker). Each pair's outputs go to <i>&lt;output folder&gt;/&lt;id&gt;/</i> (the files
of <i>Co-register SAR to optical</i>, written whole or not at all); the summary layer (one target
footprint per pair, coloured by status: ok, uncertain, failed, error) is loaded, and
<i>summary.csv</i> and <i>summary.html</i> (counts, map, worst pairs linked to their reports) are
written beside it.</p>
<p>Running it again into the same folder <b>continues</b>: pairs already done are not computed again
(tick <i>Run every pair again</i> to force).</p>
<h3>Parameters</h3>
<ul>
<li><b>Table of pairs</b>: a CSV with the columns <i>reference</i>, <i>target</i>, optionally <i>id</i>
(the pair's folder name) and option columns named like the <i>sarcoreg coregister</i> options
(<i>method</i>, <i>transform</i>, <i>spacing</i>, <i>window</i>, <i>radius</i>, <i>target-bands</i> ...);
relative paths are read from the table's folder.</li>
<li>Or <b>Reference raster</b> and <b>Folder of target rasters</b> (the stack case: every raster
matching the file pattern is co-registered onto the reference).</li>
<li><b>Method</b> and <b>Transform</b>: for every pair (table cells override them).</li>
<li><b>Worker processes</b>: 0 sizes the local cluster to the machine (one per CPU core).</li>
<li><b>Dask scheduler address</b> (advanced): <i>tcp://host:8786</i> of a running Dask cluster
instead of a local one; its workers need sarcoreg installed and must see the rasters under the
same paths.</li>
</ul>
"""


class SummaryStyler(QgsProcessingLayerPostProcessorInterface):
    """Applies the batch's status style (``summary.qml``) to the loaded summary layer."""

    instance: SummaryStyler | None = None

    def __init__(self, qml: str) -> None:
        super().__init__()
        self.qml = qml

    @classmethod
    def create(cls, qml: str) -> SummaryStyler:
        # Processing keeps only a raw pointer: hold the Python object alive.
        cls.instance = SummaryStyler(qml)
        return cls.instance

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:  # noqa: N802
        if layer is not None and Path(self.qml).is_file():
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()


class BatchCoregisterAlgorithm(SarcoregAlgorithm):
    """Many pairs on Dask distributed in the worker; loads the summary layer."""

    PAIRS = "PAIRS"
    REFERENCE = "REFERENCE"
    TARGETS = "TARGETS"
    PATTERN = "PATTERN"
    METHOD = "METHOD"
    TRANSFORM = "TRANSFORM"
    WORKERS = "WORKERS"
    THREADS = "THREADS_PER_WORKER"
    SCHEDULER = "SCHEDULER"
    REDO = "REDO"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    SUMMARY = "SUMMARY"
    SUMMARY_CSV = "SUMMARY_CSV"
    SUMMARY_HTML = "SUMMARY_HTML"
    COUNTS = {"ok": "N_OK", "uncertain": "N_UNCERTAIN", "failed": "N_FAILED", "error": "N_ERROR"}

    _name = "batchcoregister"
    _display = "Co-register many pairs"
    _group = "Co-registration"
    _group_id = "coregistration"
    _help = _HELP
    _folder_files = {OUTPUT_FOLDER: SUMMARY_FILES}

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["batch", "many", "stack", "time series", "dask", "cluster", "sar", "optical", "co-registration"]

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterFile(self.PAIRS, self.tr("Table of pairs (CSV)"), extension="csv",
                                                     optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE, self.tr("Reference raster (with a folder of targets)"), optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.TARGETS, self.tr("Folder of target rasters"), behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, self.tr("Method"), options=_batch_methods(),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.TRANSFORM, self.tr("Transform"), options=TRANSFORMS,
                                                     defaultValue=TRANSFORMS.index("affine")))
        self.addParameter(QgsProcessingParameterNumber(
            self.WORKERS, self.tr("Worker processes (0: one per CPU core)"), QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0, maxValue=512))
        self.addParameter(QgsProcessingParameterBoolean(self.REDO, self.tr("Run every pair again"),
                                                        defaultValue=False))
        advanced = [
            QgsProcessingParameterString(self.PATTERN, self.tr("File pattern of the targets in the folder"),
                                         defaultValue="*.tif"),
            QgsProcessingParameterNumber(self.THREADS, self.tr("Pairs per worker process at once"),
                                         QgsProcessingParameterNumber.Integer, defaultValue=1, minValue=1,
                                         maxValue=64),
            QgsProcessingParameterString(self.SCHEDULER, self.tr("Dask scheduler address (empty: a local cluster)"),
                                         defaultValue="", optional=True),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputVectorLayer(self.SUMMARY, self.tr("Co-registration summary")))
        self.addOutput(QgsProcessingOutputFile(self.SUMMARY_CSV, self.tr("Summary table (CSV)")))
        self.addOutput(QgsProcessingOutputHtml(self.SUMMARY_HTML, self.tr("Summary report")))
        for status, name in self.COUNTS.items():
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(f"Pairs {status}")))

    # ----------------------------------------------------------------------------- validation
    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        """Check the inputs (a table, or a reference and a folder) and build the job's parameters."""
        table = (self.parameterAsFile(parameters, self.PAIRS, context) or "").strip()
        folder = (self.parameterAsFile(parameters, self.TARGETS, context) or "").strip()
        has_reference = parameters.get(self.REFERENCE) not in (None, "")
        job: dict[str, Any] = {}
        if table:
            if folder or has_reference:
                raise QgsProcessingException(
                    f"Give either a {self._label(self.PAIRS)} ({self.PAIRS}) or a {self._label(self.REFERENCE)} "
                    f"({self.REFERENCE}) with a {self._label(self.TARGETS)} ({self.TARGETS}), not both.")
            if not Path(table).is_file():
                raise QgsProcessingException(f"{self._label(self.PAIRS)} ({self.PAIRS}): '{table}' does not exist.")
            job["table"] = table
        elif folder and has_reference:
            if not Path(folder).is_dir():
                raise QgsProcessingException(f"{self._label(self.TARGETS)} ({self.TARGETS}): '{folder}' is not a "
                                             "folder.")
            layer = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
            pattern = (self.parameterAsString(parameters, self.PATTERN, context) or "*.tif").strip()
            job["reference"] = self._raster_path(layer, self.REFERENCE)
            job["targets"] = str(Path(folder) / pattern)
        else:
            raise QgsProcessingException(
                f"Give a {self._label(self.PAIRS)} ({self.PAIRS}), or a {self._label(self.REFERENCE)} "
                f"({self.REFERENCE}) and a {self._label(self.TARGETS)} ({self.TARGETS}).")
        job.update(
            options={"method": _batch_methods()[self.parameterAsEnum(parameters, self.METHOD, context)],
                     "transform": TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)]},
            workers=self.parameterAsInt(parameters, self.WORKERS, context) or None,
            threads_per_worker=self.parameterAsInt(parameters, self.THREADS, context) or 1,
            scheduler=(self.parameterAsString(parameters, self.SCHEDULER, context) or "").strip() or None,
            redo=self.parameterAsBool(parameters, self.REDO, context),
        )
        return job

    # ----------------------------------------------------------------------------- running
    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the worker job ``batch``, then load the summary layer."""
        job = self._resolve(parameters, context)
        out_dir = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context)
        if not out_dir:
            raise QgsProcessingException(f"{self._label(self.OUTPUT_FOLDER)} ({self.OUTPUT_FOLDER}) is required.")
        job["out_dir"] = out_dir
        feedback.pushInfo(f"Pairs: {job.get('table') or job.get('targets')}; output folder {out_dir}; "
                          f"{'scheduler ' + job['scheduler'] if job['scheduler'] else 'local Dask cluster'}")
        try:
            result = run_worker_job("batch", job, feedback)
        except QgsProcessingException:
            # A stopped worker leaves staging folders in the pairs it was running: remove them.
            remove_unfinished(out_dir)
            raise
        summary: dict[str, str] = result.get("summary") or {}
        counts: dict[str, int] = result.get("counts") or {}
        feedback.pushInfo(f"{result.get('pairs')} pairs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                          + f" ({result.get('computed')} run now, {result.get('reused')} reused)")
        gpkg = summary.get("gpkg", str(Path(out_dir) / "summary.gpkg"))
        layer_source = f"{gpkg}|layername=summary"
        context.addLayerToLoadOnCompletion(
            layer_source, QgsProcessingContext.LayerDetails("Co-registration summary", context.project(), self.SUMMARY))
        context.layerToLoadOnCompletionDetails(layer_source).setPostProcessor(
            SummaryStyler.create(summary.get("qml", str(Path(out_dir) / "summary.qml"))))
        results: dict[str, Any] = {
            self.OUTPUT_FOLDER: out_dir,
            self.SUMMARY: layer_source,
            self.SUMMARY_CSV: summary.get("csv", ""),
            self.SUMMARY_HTML: summary.get("html", ""),
        }
        for status, name in self.COUNTS.items():
            results[name] = int(counts.get(status, 0))
        return results
