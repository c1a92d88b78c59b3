"""The core's half of the worker job ``train``: arguments and progress, no training code.

The job itself (:func:`sarcoreg.training.job.run_from_params`) lives in ``training/``, which the
core never imports: the worker starts it by name (:data:`TRAIN_JOB`, through
:func:`sarcoreg.core.methods.resolve`). What is here is what both sides need: the
``sarcoreg-train`` arguments of a job (:func:`train_argv`; the subcommand is the method's
``training_entry`` in the method catalog) and the progress plumbing.

The training functions report through printed lines (``epoch K: loss ...``) and a step hook; the
job turns each epoch line into a progress report (``K / epochs``) and a log line, and checks for
cancel on every line and step. The QGIS side cancels by stopping the worker process (and removes
the run folder and the model files it created).
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from .methods import get_method, method_names
from .progress import Progress

__all__ = ["EPOCH_LINE", "TRAIN_JOB", "LineReporter", "throttled", "train_argv"]

log = logging.getLogger("sarcoreg.train")

#: The job that trains a model and writes its card (``module:function``, relative to sarcoreg).
TRAIN_JOB = ".training.job:run_from_params"
#: A line ``sarcoreg-train`` prints at the end of each epoch.
EPOCH_LINE = re.compile(r"^epoch (\d+):")


def train_argv(params: dict[str, Any]) -> list[str]:
    """The ``sarcoreg-train`` arguments for the job's parameters (see :func:`run_from_params`)."""
    method = str(params.get("method", ""))
    trainable = method_names(trainable=True)
    if method not in trainable:
        raise ValueError(f"train job: method '{method}' cannot be trained here; choose one of {', '.join(trainable)}")
    data = params.get("data")
    specs = [data] if isinstance(data, str) else list(data or [])
    if not specs:
        raise ValueError("train job needs 'data' (a training data folder or file)")
    if not params.get("out_dir"):
        raise ValueError("train job needs 'out_dir' (the run folder)")
    argv = [str(get_method(method).training_command)]
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


class LineReporter(io.TextIOBase):
    """A text stream that logs each printed line and reports epoch lines as progress."""

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress = progress
        self.epochs = max(1, epochs)
        self.buffer_text = ""
        self.lines: list[str] = []

    def writable(self) -> bool:
        """Always: the stream takes text."""
        return True

    def write(self, text: str) -> int:
        """Take ``text``; every finished line is logged (and reported, if it ends an epoch)."""
        self.buffer_text += text
        while "\n" in self.buffer_text:
            line, self.buffer_text = self.buffer_text.split("\n", 1)
            self._line(line.rstrip())
        return len(text)

    def _line(self, line: str) -> None:
        if not line:
            return
        self.lines.append(line)
        match = EPOCH_LINE.match(line)
        if match:
            k = int(match.group(1))
            log.info(line)
            self.progress.report(min(k / self.epochs, 1.0), f"epoch {k}/{self.epochs}")
        else:
            log.info(line[:500])
            self.progress.check()


def throttled(progress: Progress, params: dict[str, Any], every_s: float = 0.5) -> Callable[[float, str], None]:
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
