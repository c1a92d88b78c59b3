"""Processing algorithm "Install model pack" (``sarcoreg:installmodelpack``).

Thin: the worker runs :func:`sarcoreg.models.packs.install_pack` (the same function as
``sarcoreg models install PACK.zip``), so the model lands in the user's model folder of the
environment that uses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFolder,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
)

from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm

_HELP = """
<p>Installs a <b>model pack</b> (a zip with one model's card and weight files, built with
<code>make models</code> or <code>sarcoreg models pack</code>) into the user's model folder
(<code>~/.local/share/sarcoreg/models</code>, or the folder named by the environment variable
<code>SARCOREG_MODELS</code>). The model can then be picked by name in every algorithm's
<i>Model</i> parameter.</p>
<p>Every file is checked against the pack's SHA-256 manifest, and the card must name files the
pack holds; a pack with absolute or <code>..</code> names, links, or files of another kind is
refused. Nothing in a pack is run: cards are JSON, weights are ONNX graphs or weights-only torch
files. The install is all or nothing.</p>
<h3>Parameters</h3>
<ul>
<li><b>Model pack</b>: the <code>.zip</code> file.</li>
<li><b>Replace an installed model</b>: off (default): a model of the same name installed with
other files is kept and the algorithm stops with an error. On: it is replaced.</li>
</ul>
<h3>Outputs</h3>
<ul>
<li><b>MODEL_NAME</b>: the model's name. <b>MODEL_FOLDER</b>: the folder it was installed in.
<b>STATUS</b>: installed, replaced or unchanged (the same files were installed already).</li>
</ul>
"""


class InstallModelPackAlgorithm(SarcoregAlgorithm):
    """Install a model pack into the user's model folder (in the worker)."""

    PACK = "PACK"
    FORCE = "FORCE"
    MODEL_NAME = "MODEL_NAME"
    MODEL_FOLDER = "MODEL_FOLDER"
    STATUS = "STATUS"

    _name = "installmodelpack"
    _display = "Install model pack"
    _group = "Models"
    _group_id = "models"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["model", "pack", "install", "weights", "onnx", "card", "download"]

    def shortDescription(self) -> str:  # noqa: N802
        """One line for the toolbox tooltip."""
        return self.tr("Install a model pack (card + weights, checksummed) into the user's model folder.")

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterFile(self.PACK, self.tr("Model pack"), extension="zip"))
        self.addParameter(QgsProcessingParameterBoolean(
            self.FORCE, self.tr("Replace an installed model of the same name"), defaultValue=False))
        self.addOutput(QgsProcessingOutputString(self.MODEL_NAME, self.tr("Model name")))
        self.addOutput(QgsProcessingOutputFolder(self.MODEL_FOLDER, self.tr("Model folder")))
        self.addOutput(QgsProcessingOutputString(self.STATUS, self.tr("Status")))

    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        """The worker job's parameters; the pack must be an existing file."""
        pack = (self.parameterAsFile(parameters, self.PACK, context) or "").strip()
        if not pack or not Path(pack).is_file():
            raise QgsProcessingException(f"Model pack ({self.PACK}): '{pack}' is not a file.")
        return {"pack": str(Path(pack).resolve()), "force": self.parameterAsBool(parameters, self.FORCE, context)}

    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the worker job ``install_model_pack``."""
        job = self._resolve(parameters, context)
        result = run_worker_job("install_model_pack", job, feedback)
        feedback.pushInfo(f"model {result['name']} ({result['method']}): {result['status']} in {result['folder']}")
        if result.get("shadowed_by"):
            feedback.pushWarning(f"a model called {result['name']} in {result['shadowed_by']} is found first and "
                                 "is the one used")
        return {self.MODEL_NAME: result["name"], self.MODEL_FOLDER: result["folder"], self.STATUS: result["status"]}
