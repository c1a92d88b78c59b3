"""Worker job ``train``: a ``sarcoreg-train`` run in-process, then the model + card in a model folder.

The worker starts this job by name (:data:`sarcoreg.core.train_job.TRAIN_JOB`), so the core never
imports training code. The method catalog (:mod:`sarcoreg.core.methods`) says which command line
trains a method (``training_entry``) and which card writer exports its run (``card_writer``);
the arguments and the progress plumbing come from :mod:`sarcoreg.core.train_job`.

After the run the model is exported where the user said (``write(run, name, source, notes,
folder=...)`` of the method's card writer), so that a worker with that folder in
``SARCOREG_MODEL_PATH`` finds the model by name.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from sarcoreg.core.methods import get_method, resolve
from sarcoreg.core.progress import Progress
from sarcoreg.core.train_job import EPOCH_LINE, LineReporter, throttled, train_argv

from .step_hook import step_hook

__all__ = ["run_from_params"]

#: Files a finished run leaves as its best model (ONNX graph, or the torch checkpoint of the shared U-Nets).
BEST_FILES = ("best.onnx", "best.pt")


def run_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Train a model and write it with its card into a model folder.

    Params:
        method (str): a trainable method of the catalog ("rrlnet", "bnn", "aae", "shared" ...).
        data (str | list[str]): ``--data`` sources of ``sarcoreg-train``.
        out_dir (str): run folder (checkpoints, history, best.onnx).
        model_name (str): name of the model (its card and ``.onnx`` file).
        model_folder (str): model folder to write ``<name>.onnx`` and ``cards/<name>.json`` into.
        epochs (int), max_minutes (float), steps_per_epoch (int), pairs_per_image (int; rrlnet
        patch pairs, aae search patches per image pair), batch_size (int), threads (int), device
        (str), patch_size / width (int; bnn and aae), search_size (int; aae): training options.
        extra_args (list[str]): further ``sarcoreg-train`` arguments.

    Returns:
        ``{"model_name", "model_file", "card", "model_folder", "run", "epochs_done", "argv"}``.

    Raises:
        ValueError: A bad parameter (the message names it).
        RuntimeError: The training failed or wrote no model.
    """
    name = str(params.get("model_name") or "").strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"train job: model_name {name!r} must be letters, digits, '.', '_' or '-'")
    if not params.get("model_folder"):
        raise ValueError("train job needs 'model_folder'")
    argv = train_argv(params)
    spec = get_method(str(params["method"]))
    if not spec.training_entry or not spec.card_writer:
        raise ValueError(f"train job: method '{spec.name}' has no training entry and card writer in the catalog")
    train_main = resolve(spec.training_entry.split(":", 1)[0] + ":main")

    epochs = int(params.get("epochs", 10))
    reporter = LineReporter(progress.sub(0.0, 0.95), epochs)
    progress.report(0.0, f"sarcoreg-train {' '.join(argv)}")
    with contextlib.redirect_stdout(reporter), step_hook(throttled(reporter.progress, params)):
        code = train_main(argv)
    reporter.write("\n")
    if code != 0:
        raise RuntimeError(f"sarcoreg-train exited with code {code}: {' | '.join(reporter.lines[-5:])}")
    run, folder = Path(params["out_dir"]), Path(params["model_folder"])
    if not any((run / f).is_file() for f in BEST_FILES):
        raise RuntimeError(f"the training wrote no model (no {' or '.join(BEST_FILES)} in {run}); train longer")
    progress.report(0.96, "writing the model card")
    notes = f"trained with sarcoreg-train {' '.join(argv)}"
    card = resolve(spec.card_writer)(run, name, "user-trained", notes, folder=folder)
    epochs_done = sum(1 for line in reporter.lines if EPOCH_LINE.match(line))
    progress.report(1.0, f"model '{name}' written to {folder}")
    return {"model_name": name, "model_file": str(folder / card.file), "card": str(folder / "cards" / f"{name}.json"),
            "model_folder": str(folder), "run": str(run), "epochs_done": epochs_done, "argv": argv}
