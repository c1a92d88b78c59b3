"""Processing algorithm "Train a model" (``sarcoreg:trainmodel``).

Runs ``sarcoreg-train`` in the worker (job ``train``, :mod:`sarcoreg.core.train_job`), writes the
model and its card into a model folder and adds that folder to the "model folders" Processing
setting, which the worker receives as ``SARCOREG_MODEL_PATH``: the model is then usable by name
in the MODEL parameter of the other algorithms.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ...core.methods import method_names
from ..settings import add_model_folder
from ..worker_bridge import run_worker_job
from .base import SarcoregAlgorithm
from .coregister import DEVICES


def train_methods() -> list[str]:
    """The METHOD enum: the catalog's trainable methods, in catalog order."""
    return method_names(trainable=True)


_HELP = """
<p>Trains a learned matcher with <i>sarcoreg-train</i> in the sarcoreg worker (progress per epoch;
<i>Cancel</i> stops the worker and removes the partial run and model). The trained model and its
card are written into the <b>model folder</b>, which is added to the Processing setting
<i>Model folders</i> (Settings > Options > Processing > Providers > SAR-Optical Co-registration):
afterwards the model name can be given as <b>Model</b> in <i>Co-register SAR to optical</i>,
<i>Extract tie points</i> and <i>Correspondence map</i>.</p>
<h3>Parameters</h3>
<ul>
<li><b>Method</b>: rrlnet (RRL-Net patch verification), bnn (BNN two-tower embeddings), aae
(semi-supervised adversarial autoencoders: descriptors and correspondence maps) or shared (the
shared-modality U-Nets, criterion v2; the model is then usable by <i>Generate shared-modality
layers</i> and the <i>shared</i> method).</li>
<li><b>Training data</b>: a folder of aligned pairs (NNNN_rgb.jpg / NNNN_nir.jpg, or the S1/S2 npz
folder), or a patch .npy file (rrlnet); for shared: the S1/S2 npz folder, a MultiSenGE folder
(s1&lt;ID&gt;.tif / s2&lt;ID&gt;.tif) or a SEN1-2 folder; see <i>sarcoreg-train rrlnet|bnn|aae|shared -h</i>.
The aae cuts
search patches from image pairs, so its images must be at least the search size.</li>
<li><b>Run folder</b>: checkpoints, history and the exported network.</li>
<li><b>Model name</b>: letters, digits, '.', '_' and '-'; an existing model of that name in the
model folder is not overwritten.</li>
<li><b>Model folder</b>: where &lt;name&gt;.onnx and cards/&lt;name&gt;.json go.</li>
<li>Advanced: <b>epochs</b>, <b>time budget</b> (minutes, 0: none), <b>steps per epoch</b> and
<b>patch pairs per image</b> (rrlnet; search patches per image pair for aae) (0: the training's
defaults), <b>patch size</b> and <b>network width</b> (bnn, aae; 0: defaults 64 / 128 px and the
published widths; small widths train on a CPU; for shared the patch size is the training crop, a
multiple of 32), <b>search size</b> (aae, 0: 256 px),
<b>device</b>.</li>
</ul>
"""


def default_model_folder() -> str:
    """``<QGIS profile>/sarcoreg/models``: a model folder that survives plugin updates."""
    return str(Path(QgsApplication.qgisSettingsDirPath()) / "sarcoreg" / "models")


class TrainModelAlgorithm(SarcoregAlgorithm):
    """Train a learned matcher in the worker and register its model folder."""

    METHOD = "METHOD"
    DATA = "DATA"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    MODEL_NAME = "MODEL_NAME"
    MODEL_FOLDER = "MODEL_FOLDER"
    EPOCHS = "EPOCHS"
    MAX_MINUTES = "MAX_MINUTES"
    STEPS_PER_EPOCH = "STEPS_PER_EPOCH"
    PAIRS_PER_IMAGE = "PAIRS_PER_IMAGE"
    PATCH_SIZE = "PATCH_SIZE"
    SEARCH_SIZE = "SEARCH_SIZE"
    WIDTH = "WIDTH"
    DEVICE = "DEVICE"
    MODEL_FILE = "MODEL_FILE"
    CARD = "CARD"

    _name = "trainmodel"
    _display = "Train a model"
    _group = "Models"
    _group_id = "models"
    _help = _HELP

    def tags(self) -> list[str]:
        """Search words of the toolbox."""
        return ["train", "model", "deep learning", *train_methods(), "autoencoder", "network", "onnx"]

    def initAlgorithm(self, config: Any = None) -> None:  # noqa: N802
        """Declare the parameters and outputs."""
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, self.tr("Method"), options=train_methods(),
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.DATA, self.tr("Training data (folder)"),
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, self.tr("Run folder")))
        self.addParameter(QgsProcessingParameterString(self.MODEL_NAME, self.tr("Model name")))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.MODEL_FOLDER, self.tr("Model folder (the model and its card go here)"),
            defaultValue=default_model_folder()))
        advanced = [
            self._int(self.EPOCHS, "Epochs", 10, 1, 10000),
            QgsProcessingParameterNumber(self.MAX_MINUTES, self.tr("Time budget (minutes, 0: none)"),
                                         QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
            self._int(self.STEPS_PER_EPOCH, "Steps per epoch (0: all training pairs)", 0, 0, 10**7),
            self._int(self.PAIRS_PER_IMAGE, "Patch pairs per image pair, rrlnet / search patches, aae (0: default)",
                      0, 0, 10**5),
            self._int(self.PATCH_SIZE, "Patch size, bnn / aae / shared crop (0: default; aae, shared: multiple of 32)",
                      0, 0, 1024),
            self._int(self.SEARCH_SIZE, "Search patch size, aae (0: default 256)", 0, 0, 4096),
            self._int(self.WIDTH, "Network width, bnn / aae (0: the published width 64)", 0, 0, 512),
            QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"), options=DEVICES, defaultValue=0),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addOutput(QgsProcessingOutputFile(self.MODEL_FILE, self.tr("Model file")))
        self.addOutput(QgsProcessingOutputFile(self.CARD, self.tr("Model card")))
        self.addOutput(QgsProcessingOutputString(self.MODEL_NAME, self.tr("Model name")))

    def _int(self, name: str, label: str, default: int, lo: int, hi: int) -> Any:
        return QgsProcessingParameterNumber(
            name, self.tr(label), QgsProcessingParameterNumber.Integer, defaultValue=default, minValue=lo, maxValue=hi)

    # ----------------------------------------------------------------------------- validation
    def _resolve(self, parameters: Any, context: Any) -> dict[str, Any]:
        """Check the inputs and build the worker job's parameters."""
        data = (self.parameterAsFile(parameters, self.DATA, context) or "").strip()
        if not data or not Path(data).exists():
            raise QgsProcessingException(f"{self._label(self.DATA)} ({self.DATA}): '{data}' does not exist.")
        name = (self.parameterAsString(parameters, self.MODEL_NAME, context) or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise QgsProcessingException(
                f"{self._label(self.MODEL_NAME)} ({self.MODEL_NAME}) must be letters, digits, '.', '_' or '-', "
                f"got '{name}'.")
        raw = parameters.get(self.MODEL_FOLDER)
        folder = self.parameterAsFileOutput(parameters, self.MODEL_FOLDER, context) or default_model_folder()
        if str(raw) == "TEMPORARY_OUTPUT":
            raise QgsProcessingException(
                f"{self._label(self.MODEL_FOLDER)} ({self.MODEL_FOLDER}) must be a lasting folder, not a temporary "
                "one.")
        if (Path(folder) / "cards" / f"{name}.json").exists():
            raise QgsProcessingException(
                f"{self._label(self.MODEL_NAME)} ({self.MODEL_NAME}): a model '{name}' already exists in {folder}; "
                "choose another name or remove it first.")
        max_minutes = self.parameterAsDouble(parameters, self.MAX_MINUTES, context)
        return {
            "method": train_methods()[self.parameterAsEnum(parameters, self.METHOD, context)],
            "data": [data],
            "model_name": name,
            "model_folder": str(Path(folder).expanduser().resolve()),
            "epochs": self.parameterAsInt(parameters, self.EPOCHS, context),
            "max_minutes": max_minutes or None,
            "steps_per_epoch": self.parameterAsInt(parameters, self.STEPS_PER_EPOCH, context) or None,
            "pairs_per_image": self.parameterAsInt(parameters, self.PAIRS_PER_IMAGE, context) or None,
            "patch_size": self.parameterAsInt(parameters, self.PATCH_SIZE, context) or None,
            "search_size": self.parameterAsInt(parameters, self.SEARCH_SIZE, context) or None,
            "width": self.parameterAsInt(parameters, self.WIDTH, context) or None,
            "device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
        }

    # ----------------------------------------------------------------------------- running
    def processAlgorithm(  # noqa: N802
        self, parameters: Any, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Run the worker job ``train``, then register the model folder."""
        job = self._resolve(parameters, context)
        run = Path(self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context))
        job["out_dir"] = str(run)
        run_was_empty = not run.exists() or not any(run.iterdir())
        folder = Path(job["model_folder"])
        outputs = [folder / f"{job['model_name']}.onnx", folder / "cards" / f"{job['model_name']}.json"]
        if job["method"] == "aae":  # its two encoder graphs lie next to the pair graph (encoder_files)
            outputs += [folder / f"{job['model_name']}-{m}-encoder.onnx" for m in ("optical", "sar")]
        if job["method"] == "shared":  # one network per sensor
            outputs = [folder / f"{job['model_name']}-{m}.onnx" for m in ("sar", "optical")] + outputs[1:]
        feedback.pushInfo(f"Training {job['method']} on {job['data'][0]} into {run}; model folder {folder}")
        try:
            result = run_worker_job("train", job, feedback, cleanup=[run, *outputs])
        except QgsProcessingException:
            if run_was_empty:  # Processing may have made the run folder before the worker started
                shutil.rmtree(run, ignore_errors=True)
            raise
        folders = add_model_folder(str(folder))
        feedback.pushInfo(f"Model '{result['model_name']}' written to {result['model_file']} after "
                          f"{result.get('epochs_done')} epoch(s); model folders: {folders}")
        return {self.OUTPUT_FOLDER: str(run), self.MODEL_FOLDER: str(folder), self.MODEL_FILE: result["model_file"],
                self.CARD: result["card"], self.MODEL_NAME: result["model_name"]}
