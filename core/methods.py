"""The method catalog: the one list of co-registration methods sarcoreg knows.

Everything that offers a choice of method reads it from here: the engine (which matcher or
keypoint search to run), ``sarcoreg coregister --method`` and ``sarcoreg matchers``, the
diagnostics, the training job and every Processing algorithm's method list. Nothing else keeps
a copy.

This module imports nothing but the standard library (no numpy, no torch, no QGIS), so the QGIS
plugin can read the catalog without loading the processing stack. Code is named by strings
(``"module:attribute"``) and imported only when it is used; a string that starts with a dot is
relative to the ``sarcoreg`` package, so the built-in entries work whatever the top-level package
is called. Training is named the same way (never imported by the core).

Adding a method::

    from sarcoreg.core.methods import MethodSpec, register_method

    register_method(MethodSpec(
        name="census", kind="window", factory="mypackage.census:CensusMatcher",
        description="census transform, Hamming distance",
    ))

A built-in method is one more entry in :data:`BUILTIN_METHODS`. New entries go at the end: the
Processing algorithms show methods in catalog order and store the position of the chosen one
(saved models and batch files keep working only if existing positions never change).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BUILTIN_METHODS",
    "DEFAULT_METHOD",
    "MethodSpec",
    "default_model",
    "get_method",
    "method_names",
    "methods",
    "register_method",
    "resolve",
    "unregister_method",
]

#: How a method finds tie points: ``window`` (a :class:`~sarcoreg.core.matchers.base.Matcher`
#: run on template / search-window chips at candidates) or ``keypoint`` (a whole-image search).
MethodKind = Literal["window", "keypoint"]
#: What a window matcher's ``MatchResult.maps`` hold: ``similarity`` (higher is better),
#: ``distance`` (the map stores ``1 / (1 + h)`` of a distance ``h``; lower ``h`` is better) or
#: ``none`` (no maps).
MapKind = Literal["similarity", "distance", "none"]


@dataclass(frozen=True)
class MethodSpec:
    """One co-registration method.

    Attributes:
        name: The method's name (``--method NAME``, ``CoregOptions.method``, the report).
        kind: ``"window"`` or ``"keypoint"`` (see :data:`MethodKind`).
        factory: ``"module:attribute"`` of what runs it: a ``Matcher`` subclass (or any callable
            returning one) for window methods, a ``TiePointSearch`` class (built with the method's
            ``matcher_options``; see :mod:`sarcoreg.core.tiepoint_search`) for keypoint methods. A
            leading dot makes the module relative to the ``sarcoreg`` package.
        description: A one-line description for help texts, ``sarcoreg matchers`` and reports.
        learned: Whether it runs a trained model (takes the ``model`` and ``device`` options).
        default_model: Model card used when the user names none (learned methods).
        map_kind: What its correspondence maps hold (see :data:`MapKind`).
        training_entry: ``"module:subcommand"`` of the training command line that trains its
            models (``main(argv)`` of the module takes the subcommand first), or None when the
            method cannot be trained here.
        card_writer: ``"module:function"`` that turns a finished training run into a model file
            and card in a model folder: ``write(run, name, source, notes, folder=...)``.
    """

    name: str
    kind: MethodKind
    factory: str
    description: str
    learned: bool = False
    default_model: str | None = None
    map_kind: MapKind = "similarity"
    training_entry: str | None = None
    card_writer: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"method name must be letters, digits, '-' or '_', got {self.name!r}")
        if self.kind not in ("window", "keypoint"):
            raise ValueError(f"method '{self.name}': kind must be 'window' or 'keypoint', got {self.kind!r}")
        if self.map_kind not in ("similarity", "distance", "none"):
            raise ValueError(f"method '{self.name}': map_kind must be similarity, distance or none, "
                             f"got {self.map_kind!r}")
        for label, ref in (("factory", self.factory), ("training_entry", self.training_entry),
                           ("card_writer", self.card_writer)):
            if ref is not None and ref.count(":") != 1:
                raise ValueError(f"method '{self.name}': {label} must be 'module:name', got {ref!r}")
        if self.card_writer and not self.training_entry:
            raise ValueError(f"method '{self.name}': a card_writer needs a training_entry")

    @property
    def trainable(self) -> bool:
        """Whether ``sarcoreg-train`` (and the Processing training algorithm) can train it."""
        return self.training_entry is not None

    @property
    def has_maps(self) -> bool:
        """Whether its matches come with correspondence maps over the search window."""
        return self.map_kind != "none"

    @property
    def training_command(self) -> str | None:
        """The ``sarcoreg-train`` subcommand that trains it (None when not trainable)."""
        return self.training_entry.split(":", 1)[1] if self.training_entry else None


#: The method used when none is named.
DEFAULT_METHOD = "structural"

#: The built-in methods, in the order the Processing algorithms show them (append only).
BUILTIN_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec(
        "structural", "window", ".core.matchers.structural:StructuralMatcher",
        "CFOG oriented-gradient channel features + FFT correlation (classical SAR/optical)",
    ),
    MethodSpec(
        "ncc", "window", ".core.matchers.ncc:NCCMatcher",
        "normalised cross-correlation of intensities (same-modality baseline)",
    ),
    MethodSpec(
        "mi", "window", ".core.matchers.mutual_info:MutualInfoMatcher",
        "mutual information of intensities, coarse-to-fine search",
    ),
    MethodSpec(
        "sift", "window", ".core.matchers.sift:SiftMatcher",
        "SIFT keypoints, ratio test and translation consensus", map_kind="none",
    ),
    MethodSpec(
        "rrlnet", "window", ".core.matchers.rrlnet:RRLNetMatcher",
        "RRL-Net learned patch similarity (ONNX Runtime; coarse grid + refinement)",
        learned=True, default_model="rrlnet-sar-optical",
        training_entry=".training.cli:rrlnet", card_writer=".training.model_card:write_card",
    ),
    MethodSpec(
        "bnn", "window", ".core.matchers.bnn:BNNMatcher",
        "BNN / MoCo-BNN learned common embedding (dense distance map)",
        learned=True, default_model="bnn-sar-optical", map_kind="distance",
        training_entry=".training.cli:bnn", card_writer=".training.bnn_card:write_bnn_card",
    ),
    MethodSpec(
        "aae", "window", ".core.matchers.aae:AAEMatcher",
        "AAE learned descriptors, cosine correspondence map (Hughes & Schmitt 2019)",
        learned=True, default_model="aae-sar-optical",
        training_entry=".training.cli:aae", card_writer=".training.aae_card:write_aae_card",
    ),
    MethodSpec(
        "shared", "keypoint", ".core.shared_matching:SharedModalitySearch",
        "shared-modality U-Nets + keypoint matcher (Borisov et al. 2026; --keypoints)",
        learned=True, default_model="shared-v2", map_kind="none",
        training_entry=".training.cli:shared", card_writer=".training.shared_card:write_shared_card",
    ),
)

_registered: list[MethodSpec] = []


def methods() -> tuple[MethodSpec, ...]:
    """Every method: the built-in ones, then the registered ones, in catalog order."""
    return (*BUILTIN_METHODS, *_registered)


def method_names(
    *,
    kind: MethodKind | None = None,
    learned: bool | None = None,
    trainable: bool | None = None,
    maps: bool | None = None,
) -> list[str]:
    """Names of the methods, in catalog order, optionally only those with the given properties.

    Args:
        kind: Only methods of this kind.
        learned: Only learned (True) or only classical (False) methods.
        trainable: Only methods that can (True) or cannot (False) be trained here.
        maps: Only methods with (True) or without (False) correspondence maps.

    Returns:
        Names in catalog order (a filtered list keeps the relative order, so a Processing enum
        built from it only ever grows at the end).
    """
    return [
        m.name for m in methods()
        if (kind is None or m.kind == kind)
        and (learned is None or m.learned == learned)
        and (trainable is None or m.trainable == trainable)
        and (maps is None or m.has_maps == maps)
    ]


def get_method(name: str) -> MethodSpec:
    """The method called ``name``.

    Raises:
        ValueError: No such method; the message lists the known ones.
    """
    for spec in methods():
        if spec.name == name:
            return spec
    raise ValueError(f"method '{name}' is unknown; choose one of: {', '.join(sorted(method_names()))}")


def default_model(name: str) -> str:
    """The model card a learned method uses when the user names none.

    Raises:
        ValueError: Unknown method, or one without a default model.
    """
    spec = get_method(name)
    if not spec.default_model:
        raise ValueError(f"method '{name}' has no default model")
    return spec.default_model


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` at the end of the catalog (for this process); returns it.

    Raises:
        ValueError: A method of that name exists, or a second keypoint method (the engine has one
            whole-image keypoint search, the shared modality, until the keypoint contract of
            issue 14 exists).
    """
    if spec.name in method_names():
        raise ValueError(f"method '{spec.name}' exists already")
    if spec.kind == "keypoint":
        raise ValueError(f"method '{spec.name}': only window methods can be registered for now "
                         "(the engine's one keypoint search is the built-in 'shared')")
    _registered.append(spec)
    return spec


def unregister_method(name: str) -> None:
    """Remove a method added by :func:`register_method` (built-in methods stay).

    Raises:
        ValueError: ``name`` was not registered.
    """
    for i, spec in enumerate(_registered):
        if spec.name == name:
            del _registered[i]
            return
    raise ValueError(f"method '{name}' was not registered (built-in methods cannot be removed)")


def resolve(ref: str) -> Any:
    """Import what ``"module:attribute"`` names (a leading dot: relative to the sarcoreg package).

    Raises:
        ImportError: The module or the attribute does not exist.
    """
    module, _, attr = ref.partition(":")
    package = __name__.rsplit(".", 2)[0] if module.startswith(".") else None
    mod = importlib.import_module(module, package)
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ImportError(f"{mod.__name__} has no '{attr}' ({ref})") from None
