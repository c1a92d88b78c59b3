"""The output formats of a co-registration: the one list of files an output set can hold.

Each entry says what one file of the set is: its key (``CoregOptions.write_outputs``,
``CoregResult.outputs``, ``report["outputs"]``), its file name, the function that writes it and,
optionally, the Processing output that hands its path to models and scripts. The engine writes
the formats of this list (:func:`sarcoreg.core.outputs.write_outputs`), the output folder
checks (:mod:`sarcoreg.core.output_set`) and the Processing algorithms read their file names and
outputs from it; nothing else keeps a copy.

This module imports nothing but the standard library (the QGIS plugin reads the list when
Processing loads the provider, without numpy, GDAL or matplotlib). Code is named by strings
(``"module:function"``, resolved with :func:`sarcoreg.core.methods.resolve`: a leading dot is
relative to the ``sarcoreg`` package) and imported only when a file is written.

The writer contract: ``write(artifacts, path)`` writes one file at ``path`` (a path in the staging
folder of the set; go through :func:`sarcoreg.core.exports.atomic_path`) from
``artifacts``, a :class:`sarcoreg.core.exports.artifacts.RunArtifacts` (the fit, the tie points,
the rasters and their georeferencing, the report, the output options). It returns nothing and
raises on failure (the whole set is then dropped). Formats are written in list order, those
marked ``own_thread`` beside the others and those marked ``last`` after all others.

Adding a built-in format: its writer module in ``core/exports/formats/<key>.py`` and one entry
in :data:`BUILTIN_FORMATS` (at the end: Processing shows the outputs in list order). Out of tree::

    register_format(OutputFormat("summary", "summary.txt", "mypackage.summary:write", "one-line summary"))

registers it in this process; the environment variable ``SARCOREG_OUTPUT_FORMATS``
(``"module:attribute"``, comma-separated, each naming an :class:`OutputFormat` or a sequence of
them) adds formats in every process that reads the list, the worker of the QGIS plugin included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BUILTIN_FORMATS",
    "FORMATS_ENV",
    "OUTPUT_NAMES",
    "OutputFormat",
    "ProcessingOutput",
    "get_format",
    "output_formats",
    "output_names",
    "register_format",
    "unregister_format",
]

#: Environment variable naming extra formats (``"module:attribute"``, comma-separated).
FORMATS_ENV = "SARCOREG_OUTPUT_FORMATS"


@dataclass(frozen=True)
class ProcessingOutput:
    """The Processing output that gives a format's path to models and scripts.

    Attributes:
        name: Output name (``REPORT_HTML``); saved models and scripts use it, never change it.
        kind: ``"file"`` (``QgsProcessingOutputFile``) or ``"html"`` (``QgsProcessingOutputHtml``).
        description: Its label in the Processing dialogs and help.
    """

    name: str
    kind: Literal["file", "html"]
    description: str


@dataclass(frozen=True)
class OutputFormat:
    """One file of the output set.

    Attributes:
        key: Its key in ``write_outputs``, ``CoregResult.outputs`` and ``report["outputs"]``.
        file_name: The file's name in the output folder.
        writer: ``"module:function"`` of ``write(artifacts, path)`` (see the module docstring).
        description: What the file is, one line.
        processing: The Processing output that returns its path, or None.
        own_thread: Written by a thread of its own, beside the other formats (large GDAL-only
            work that runs without the GIL: the co-registered raster).
        last: Written after every other file of the set, those of ``own_thread`` formats
            included (``report.json``: a set whose report is there has all its files).
        prepare: ``"module:function"`` of ``prepare(artifacts)``, run for every format of the set
            before any file is written (e.g. to put facts into ``artifacts.report`` that the
            other writers show), or None.
    """

    key: str
    file_name: str
    writer: str
    description: str
    processing: ProcessingOutput | None = None
    own_thread: bool = False
    last: bool = False
    prepare: str | None = None

    def __post_init__(self) -> None:
        if not self.key or not self.key.replace("_", "").isalnum():
            raise ValueError(f"output key must be letters, digits or '_', got {self.key!r}")
        name = self.file_name
        if not name or name.startswith(".") or "/" in name or "\\" in name or name in ("..",):
            raise ValueError(f"output '{self.key}': file_name must be a plain, visible file name, got {name!r}")
        for label, ref in (("writer", self.writer), ("prepare", self.prepare)):
            if ref is not None and ref.count(":") != 1:
                raise ValueError(f"output '{self.key}': {label} must be 'module:function', got {ref!r}")
        if self.own_thread and self.last:
            raise ValueError(f"output '{self.key}': a format written last cannot have a thread of its own")
        if self.processing is not None and self.processing.kind not in ("file", "html"):
            raise ValueError(f"output '{self.key}': Processing output kind must be file or html, "
                             f"got {self.processing.kind!r}")


#: The built-in formats, in writing order (a format marked ``last`` waits for all others wherever it
#: stands). New ones go at the end: Processing adds their outputs in this order.
BUILTIN_FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("tiepoints", "tiepoints.gpkg", ".core.exports.formats.tiepoints:write",
                 "tie points: GeoPackage point layer, AROSICS-style fields"),
    OutputFormat("points", "gcps.points", ".core.exports.formats.points:write",
                 "GCPs for the QGIS Georeferencer (.points)",
                 ProcessingOutput("POINTS_FILE", "file", "QGIS Georeferencer GCP file (.points)")),
    OutputFormat("gcp_vrt", "gcps.vrt", ".core.exports.formats.gcp_vrt:write",
                 "the target with GCPs, a GDAL VRT (gdalwarp it)"),
    OutputFormat("shifts", "shifts.tif", ".core.exports.formats.shifts:write",
                 "shift field: 2-band (dx, dy) GeoTIFF of the fitted correction"),
    OutputFormat("coregistered", "coregistered.tif", ".core.exports.formats.coregistered:write",
                 "the co-registered target, a Cloud-Optimised GeoTIFF", own_thread=True,
                 prepare=".core.exports.formats.coregistered:prepare"),
    OutputFormat("report_html", "report.html", ".core.exports.formats.report_html:write",
                 "the quality report, self-contained HTML",
                 ProcessingOutput("REPORT_HTML", "html", "Co-registration report")),
    OutputFormat("report_json", "report.json", ".core.exports.formats.report_json:write",
                 "the run report, JSON", ProcessingOutput("REPORT_JSON", "file", "Run report (JSON)"), last=True),
)

#: The files of the built-in set (output key -> file name), in writing order.
OUTPUT_NAMES: dict[str, str] = {f.key: f.file_name for f in BUILTIN_FORMATS}

_registered: list[OutputFormat] = []


def _from_environment() -> list[OutputFormat]:
    """The formats :data:`FORMATS_ENV` names.

    Raises:
        ImportError: A name cannot be imported.
        TypeError: It names something that is not an :class:`OutputFormat` (or a sequence of them).
    """
    from .methods import resolve

    found: list[OutputFormat] = []
    for ref in (r.strip() for r in os.environ.get(FORMATS_ENV, "").split(",")):
        if not ref:
            continue
        value = resolve(ref)
        items = list(value) if isinstance(value, Sequence) else [value]
        bad = [i for i in items if not isinstance(i, OutputFormat)]
        if bad:
            raise TypeError(f"{FORMATS_ENV}: {ref} is not an OutputFormat (or a sequence of them): {bad[0]!r}")
        found += items
    return found


def output_formats() -> tuple[OutputFormat, ...]:
    """Every format: the built-in ones, then the registered ones, then those of :data:`FORMATS_ENV`.

    Raises:
        ValueError: Two formats share a key or a file name.
        ImportError: A format of :data:`FORMATS_ENV` cannot be imported.
    """
    found = (*BUILTIN_FORMATS, *_registered, *_from_environment())
    keys, names = [f.key for f in found], [f.file_name for f in found]
    for label, values in (("key", keys), ("file name", names)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"two output formats have the {label} {twice[0]!r}")
    return found


def output_names() -> dict[str, str]:
    """Output key -> file name of every format (:func:`output_formats`), in writing order."""
    return {f.key: f.file_name for f in output_formats()}


def get_format(key: str) -> OutputFormat:
    """The format of ``key``.

    Raises:
        ValueError: No such format; the message lists the known keys.
    """
    formats = output_formats()
    for f in formats:
        if f.key == key:
            return f
    raise ValueError(f"unknown output {key!r}; known: {', '.join(f.key for f in formats)}")


def register_format(fmt: OutputFormat) -> OutputFormat:
    """Add ``fmt`` at the end of the list (for this process); returns it.

    Raises:
        ValueError: A format with that key or file name exists.
    """
    for f in output_formats():
        if fmt.key == f.key or fmt.file_name == f.file_name:
            raise ValueError(f"output '{fmt.key}' ({fmt.file_name}) clashes with the existing output "
                             f"'{f.key}' ({f.file_name})")
    _registered.append(fmt)
    return fmt


def unregister_format(key: str) -> None:
    """Remove a format added by :func:`register_format` (built-in formats stay).

    Raises:
        ValueError: ``key`` was not registered.
    """
    for i, f in enumerate(_registered):
        if f.key == key:
            del _registered[i]
            return
    raise ValueError(f"output '{key}' was not registered (built-in outputs cannot be removed)")
