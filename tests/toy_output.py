"""A toy output format for the output-list tests: added through the list, nowhere else.

``toy.txt`` holds a few facts of the run read from the :class:`RunArtifacts` the writer gets, so
a test can tell the writer saw the real run. :data:`TOY_FORMAT` is also what
``SARCOREG_OUTPUT_FORMATS=tests.toy_output:TOY_FORMAT`` names (for the worker of the QGIS tests).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sarcoreg.core.exports import atomic_write_text
from sarcoreg.core.exports.artifacts import RunArtifacts
from sarcoreg.core.output_formats import OutputFormat, ProcessingOutput, register_format, unregister_format

TOY = "toy"
TOY_FILE = "toy.txt"
TOY_OUTPUT = "TOY_FILE"
TOY_FORMAT = OutputFormat(TOY, TOY_FILE, f"{__name__}:write", "toy facts of the run (tests)",
                          ProcessingOutput(TOY_OUTPUT, "file", "Toy facts (tests)"))


def write(artifacts: RunArtifacts, path: Path) -> None:
    """Facts of the run as one JSON line: inliers, RMSE, the target's file, the set's keys, the thread."""
    facts = {
        "n_inliers": artifacts.fit.n_inliers,
        "rmse_px": artifacts.fit.rmse_px,
        "tiepoints": len(artifacts.tiepoints.score),
        "target": artifacts.grid.target.path,
        "keys": list(artifacts.keys),
        "thread": threading.current_thread().name,
    }
    atomic_write_text(path, json.dumps(facts) + "\n")


@contextmanager
def toy_format(fmt: OutputFormat = TOY_FORMAT) -> Iterator[OutputFormat]:
    """``fmt`` in the output list of this process for the duration of the block."""
    register_format(fmt)
    try:
        yield fmt
    finally:
        unregister_format(fmt.key)
