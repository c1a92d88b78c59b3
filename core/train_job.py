"""Worker job ``train``: a ``sarcoreg-train`` run in-process, then the model + card in a model folder.

The training functions report through printed lines (``epoch K: loss ...``); the job captures
what ``sarcoreg.training.cli.main`` prints, turns each epoch line into a progress report
(``K / epochs``) and a log line, and checks for cancel on every line. The QGIS side cancels by
stopping the worker process (and removes the run folder and the model files it created).

After the run the model is exported where the user said: ``write_card(..., folder=...)`` of
:mod:`sarcoreg.training.model_card` (rrlnet), :mod:`sarcoreg.training.bnn_card` (bnn) or
:mod:`sarcoreg.training.aae_card` (aae: the pair graph and its two encoder graphs), so that a worker
with that folder in ``SARCOREG_MODEL_PATH`` finds the model by name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .progress import Progress

__all__ = ["TRAINABLE", "train_argv", "run_from_params"]

log = logging.getLogger("sarcoreg.train")

#: Methods the job can train and write a model card for.
TRAINABLE: tuple[str, ...] = ("rrlnet", "bnn", "aae", "shared")
_EPOCH_LINE = re.compile(r"^epoch (\d+):")


def train_argv(params: dict[str, Any]) -> list[str]:
    """The ``sarcoreg-train`` arguments for the job's parameters (see :func:`run_from_params`)."""
    method = str(params.get("method", ""))
    if method not in TRAINABLE:
        raise ValueError(f"train job: method '{method}' cannot be trained here; choose one of {', '.join(TRAINABLE)}")
    data = params.get("data")
    specs = [data] if isinstance(data, str) else list(data or [])
    if not specs:
        raise ValueError("train job needs 'data' (a training data folder or file)")
    if not params.get("out_dir"):
        raise ValueError("train job needs 'out_dir' (the run folder)")
    argv = [method]
    for spec in specs:
        argv += ["--data", str(spec)]
    argv += ["--out", str(params["out_dir"]), "--epochs", str(int(params.get("epochs", 10))),
             "--device", str(params.get("device", "auto")), "--no-progress"]
    if params.get("max_minutes"):
        argv += ["--max-minutes", str(float(params["max_minutes"]))]
    if params.get("steps_per_epoch"):
        argv += ["--steps-per-epoch", str(int(params["steps_per_epoch"]))]
    if params.get("threads"):
        argv += ["--threads", str(int(params["threads"]))]
    if method == "rrlnet" and params.get("pairs_per_image"):
        argv += ["--pairs-per-image", str(int(params["pairs_per_image"]))]
    if method == "aae" and params.get("pairs_per_image"):
        argv += ["--per-image", str(int(params["pairs_per_image"]))]
    if method in ("bnn", "aae"):
        for key, flag in (("patch_size", "--patch-size"), ("width", "--width")):
            if params.get(key):
                argv += [flag, str(int(params[key]))]
    if method == "shared" and params.get("patch_size"):  # the training crop of the U-Nets
        argv += ["--crop", str(int(params["patch_size"]))]
    if method == "aae" and params.get("search_size"):
        argv += ["--search-size", str(int(params["search_size"]))]
    if params.get("batch_size"):
        argv += ["--batch-size", str(int(params["batch_size"]))]
    argv += [str(a) for a in params.get("extra_args") or []]
    return argv


class _LineReporter(io.TextIOBase):
    """A text stream that logs each printed line and reports epoch lines as progress."""

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress = progress
        self.epochs = max(1, epochs)
        self.buffer_text = ""
        self.lines: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buffer_text += text
        while "\n" in self.buffer_text:
            line, self.buffer_text = self.buffer_text.split("\n", 1)
            self._line(line.rstrip())
        return len(text)

    def _line(self, line: str) -> None:
        if not line:
            return
        self.lines.append(line)
        match = _EPOCH_LINE.match(line)
        if match:
            k = int(match.group(1))
            log.info(line)
            self.progress.report(min(k / self.epochs, 1.0), f"epoch {k}/{self.epochs}")
        else:
            log.info(line[:500])
            self.progress.check()


def _throttled(progress: Progress, params: dict[str, Any], every_s: float = 0.5) -> Callable[[float, str], None]:
    """A step hook that reports at most every ``every_s`` seconds (and checks cancel every step).

    With a time budget (``max_minutes``) the fraction is the larger of the steps done and the time
    spent, since a budgeted run stops before its planned steps.
    """
    budget = float(params.get("max_minutes") or 0.0) * 60.0
    t0 = time.monotonic()
    last = [-1.0]

    def hook(fraction: float, message: str) -> None:
        now = time.monotonic()
        if budget > 0:
            fraction = max(fraction, min((now - t0) / budget, 1.0))
        if now - last[0] >= every_s:
            last[0] = now
            progress.report(fraction, message)
        else:
            progress.check()

    return hook


def run_from_params(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Train a model and write it with its card into a model folder.

    Params:
        method (str): "rrlnet", "bnn", "aae" or "shared".
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
    """
    name = str(params.get("model_name") or "").strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"train job: model_name {name!r} must be letters, digits, '.', '_' or '-'")
    if not params.get("model_folder"):
        raise ValueError("train job needs 'model_folder'")
    argv = train_argv(params)
    from sarcoreg.training.cli import main as train_main
    from sarcoreg.training.step_hook import step_hook

    epochs = int(params.get("epochs", 10))
    reporter = _LineReporter(progress.sub(0.0, 0.95), epochs)
    progress.report(0.0, f"sarcoreg-train {' '.join(argv)}")
    with contextlib.redirect_stdout(reporter), step_hook(_throttled(reporter.progress, params)):
        code = train_main(argv)
    reporter.write("\n")
    if code != 0:
        raise RuntimeError(f"sarcoreg-train exited with code {code}: {' | '.join(reporter.lines[-5:])}")
    run, folder = Path(params["out_dir"]), Path(params["model_folder"])
    best = run / ("best.pt" if params["method"] == "shared" else "best.onnx")
    if not best.is_file():
        raise RuntimeError(f"the training wrote no model ({best} is missing); train longer")
    progress.report(0.96, "writing the model card")
    notes = f"trained with sarcoreg-train {' '.join(argv)}"
    if params["method"] == "rrlnet":
        from sarcoreg.training.model_card import write_card

        card = write_card(run, name, "user-trained", notes, folder=folder)
    elif params["method"] == "shared":  # two ONNX files (SAR and optical network) and the card
        from sarcoreg.training.shared_card import write_shared_card

        card = write_shared_card(run, name, "user-trained", notes, folder=folder)
    elif params["method"] == "aae":
        from sarcoreg.training.aae_card import write_aae_card

        card = write_aae_card(run, name, "user-trained", notes, folder=folder)
    else:
        from sarcoreg.training.bnn_card import write_bnn_card

        card = write_bnn_card(run, name, "user-trained", notes, folder=folder)
    epochs_done = sum(1 for line in reporter.lines if _EPOCH_LINE.match(line))
    progress.report(1.0, f"model '{name}' written to {folder}")
    return {"model_name": name, "model_file": str(folder / card.file), "card": str(folder / "cards" / f"{name}.json"),
            "model_folder": str(folder), "run": str(run), "epochs_done": epochs_done, "argv": argv}
