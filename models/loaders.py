"""Which network a model is and how it loads: one table keyed by the method a card or checkpoint names.

A model card says its ``method`` (``models/cards/*.json``); a training checkpoint written by the
training loop (``best.pt`` / ``last.pt``) says it too (``{"method": ..., "model": state_dict}``).
:data:`LOADERS` maps that name to a :class:`MethodLoader`:

========== ======= =================================================================
method     kind    torch network of a state dict / ONNX back end
========== ======= =================================================================
``rrlnet`` patch   :class:`~.nets.rrlnet.RRLNetInference` (pruned) / pair graph
``bnn``    patch   :class:`~.nets.bnn.BNN` (config in its ``bnn_config`` buffer) / pair graph
``aae``    patch   :class:`~.nets.aae.AAEInference` (sizes from the weights) / pair graph;
                   also descriptors (two encoders)
``shared`` image   :func:`~.shared_modality.load_shared_model` (both back ends)
========== ======= =================================================================

Patch models share one ONNX contract (two inputs ``(N, 1, P, P)``, one score per pair), so every
patch method's ONNX back end is :class:`~.patch_model.OnnxPatchModel`; the torch back end builds
the method's network from its state dict. Image models (shared modality) load through their own
function. :func:`register_loader` adds the loader of an out-of-tree method.

Files that name no method (state dicts and checkpoints written before checkpoints carried one,
such as ``checkpoints/rrlnet-visnir-warmstart.pt`` or a ``best_inference.pt``) are the one case
where the method is read from the weights' keys: :func:`legacy_method`, used only for those.

Nothing here imports torch or ONNX Runtime at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .shared_modality import SharedModalityModel

__all__ = [
    "LOADERS",
    "MethodLoader",
    "TorchNetwork",
    "legacy_method",
    "loader_for",
    "register_loader",
    "tagged_weights",
    "unregister_loader",
    "weights_method",
]

#: A state dict -> ``(torch module, patch size P)``; the module's ``forward(a, b)`` maps two
#: ``(N, 1, P, P)`` float tensors in [0, 1] to ``(N,)`` scores (patch networks), or it has
#: ``embed_optical`` / ``embed_sar`` ``(N, 1, P, P) -> (N, D)`` (descriptor networks).
TorchNetwork = Callable[[dict[str, Any]], tuple[Any, int]]
#: A card, card name, card file or checkpoint path + ``device`` + ``backend`` -> an image model.
ImageLoader = Callable[..., "SharedModalityModel"]


@dataclass(frozen=True)
class MethodLoader:
    """How the models of one method load.

    Attributes:
        method: The method name a card's ``method`` or a checkpoint's ``"method"`` holds.
        kind: ``"patch"`` (a :class:`~.patch_model.PatchModel`: ``score(a, b) -> (N,)``) or
            ``"image"`` (a :class:`~.shared_modality.SharedModalityModel`: ``transform(batch, modality)``).
        network: Patch methods: the torch network of a state dict (see :data:`TorchNetwork`).
        descriptor: Methods with separate encoders: the torch descriptor network of a state dict
            (``embed_optical`` / ``embed_sar``), else None.
        image: Image methods: the loader of a card or checkpoint (``(source, device=, backend=)``).
    """

    method: str
    kind: Literal["patch", "image"]
    network: TorchNetwork | None = None
    descriptor: TorchNetwork | None = None
    image: ImageLoader | None = None

    def __post_init__(self) -> None:
        if self.kind == "patch" and self.network is None:
            raise ValueError(f"loader '{self.method}': a patch method needs a torch network builder")
        if self.kind == "image" and self.image is None:
            raise ValueError(f"loader '{self.method}': an image method needs an image loader")


def _rrlnet_network(state: dict[str, Any]) -> tuple[Any, int]:
    """RRL-Net from a full or pruned state dict -> (:class:`RRLNetInference`, 64)."""
    from .nets.rrlnet import PATCH_SIZE, RRLNet, RRLNetInference

    net = RRLNet().prune_for_inference()
    drop = ("decoder_a.", "decoder_b.", "stage_heads.", "sub_heads.")
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith(drop)})
    return RRLNetInference(net), PATCH_SIZE


def _bnn_network(state: dict[str, Any]) -> tuple[Any, int]:
    """BNN from its state dict (the ``bnn_config`` buffer says backbone, dimension, patch size)."""
    from .nets.bnn import module_from_state

    return module_from_state(state)


def _aae_network(state: dict[str, Any]) -> tuple[Any, int]:
    """Dual AAE from its state dict (sizes read from the weight shapes) -> (:class:`AAEInference`, P)."""
    from .nets.aae import AAEInference, aae_from_state_dict

    aae = aae_from_state_dict(state)
    return AAEInference(aae), aae.config.patch_size


def _shared_loader(source: Any, device: str = "auto", backend: str = "auto") -> SharedModalityModel:
    from .shared_modality import load_shared_model

    return load_shared_model(source, device=device, backend=backend)


#: The loaders of the built-in methods (see the module docstring); :func:`register_loader` adds more.
LOADERS: dict[str, MethodLoader] = {
    entry.method: entry
    for entry in (
        MethodLoader("rrlnet", "patch", network=_rrlnet_network),
        MethodLoader("bnn", "patch", network=_bnn_network),
        MethodLoader("aae", "patch", network=_aae_network, descriptor=_aae_network),
        MethodLoader("shared", "image", image=_shared_loader),
    )
}
_BUILTIN = frozenset(LOADERS)


def loader_for(method: str) -> MethodLoader:
    """The loader of ``method``.

    Raises:
        ValueError: No loader for it; the message lists the methods that have one.
    """
    if method not in LOADERS:
        known = ", ".join(sorted(LOADERS))
        raise ValueError(f"no model loader for method '{method}' (models load for: {known})")
    return LOADERS[method]


def register_loader(loader: MethodLoader, *, replace: bool = False) -> None:
    """Add the loader of an out-of-tree method (a built-in one is never replaced).

    Raises:
        ValueError: The method has a loader already (and ``replace`` is False, or it is built in).
    """
    if loader.method in _BUILTIN or (loader.method in LOADERS and not replace):
        raise ValueError(f"method '{loader.method}' has a loader already")
    LOADERS[loader.method] = loader


def unregister_loader(method: str) -> None:
    """Remove an out-of-tree method's loader (built-in ones stay)."""
    if method not in _BUILTIN:
        LOADERS.pop(method, None)


def legacy_method(state: dict[str, Any]) -> str:
    """The method of weights that do not name one, from their keys: the fallback for old files only.

    Files from before checkpoints carried ``"method"`` (plain state dicts such as
    ``best_inference.pt``, old ``{"model": state}`` checkpoints) are recognised by a key that only
    one network has: ``tower_a.*`` (RRL-Net), ``enc_opt.fc.weight`` (AAE), ``bnn_config`` (BNN).

    Raises:
        ValueError: No known network's keys.
    """
    if any(k.startswith("tower_a.") for k in state):
        return "rrlnet"
    if "enc_opt.fc.weight" in state:
        return "aae"
    if "bnn_config" in state:
        return "bnn"
    raise ValueError("weights that name no method and are not a known network's state dict "
                     "(expected a 'method' entry, or RRL-Net 'tower_a.*', AAE 'enc_opt.*' or BNN 'bnn_config' keys)")


def weights_method(obj: Any, source: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Which method a loaded ``.pt`` file holds, and its state dict.

    Args:
        obj: What :func:`~.safe_load.load_torch_weights` returned: a checkpoint
            ``{"method": ..., "model": state, ...}``, an old checkpoint ``{"model": state}`` or a
            plain state dict.
        source: The file (for messages).

    Returns:
        ``(method, state dict of the network, the whole file as a dict)``; the method comes from
        the file's ``"method"`` entry, or (files that have none) :func:`legacy_method`.

    Raises:
        ValueError: Not a dict, or weights of no known network.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: not a state dict (it holds a {type(obj).__name__})")
    state = obj["model"] if isinstance(obj.get("model"), dict) else obj
    method = obj.get("method")
    if isinstance(method, str) and method:
        return method, state, obj
    try:
        return legacy_method(state), state, obj
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def tagged_weights(method: str, state: dict[str, Any]) -> dict[str, Any]:
    """Weights that say their method: ``{"method": method, "model": state}``.

    What an inference weight file (``best_inference.pt``) should hold so that loading it needs no
    guessing; :func:`sarcoreg.models.load` reads both this and a plain state dict.
    """
    return {"method": method, "model": state}

