"""Descriptor models: patch -> unit descriptor, one encoder per modality (AAE and alike).

A descriptor model embeds optical and SAR patches separately, so a dense correspondence map
needs one optical embedding per template and one SAR embedding per window (instead of one pair
evaluation per window). Two back ends with the same interface:

* :class:`OnnxDescriptorModel`: two ONNX graphs (input ``x`` ``(N, 1, P, P)`` float32 ->
  ``descriptor`` ``(N, D)``), run by ONNX Runtime; torch is never imported.
* :class:`TorchDescriptorModel`: a torch module with ``embed_optical`` / ``embed_sar``
  (e.g. :class:`sarcoreg.models.nets.aae.AAEInference`), on CPU or CUDA.

:func:`load_descriptor_model` resolves a card name, a pair-model ``.onnx`` (whose encoder graphs
lie next to it, see :func:`sarcoreg.models.card.encoder_files`) or a ``.pt`` file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from .card import encoder_files, find_card, sha256_of
from .patch_model import TorchBackend

__all__ = [
    "DescriptorModel",
    "OnnxDescriptorModel",
    "TorchDescriptorModel",
    "encoder_files",
    "load_descriptor_model",
    "validate_descriptor_model",
]


class DescriptorModel(ABC):
    """Embeds optical and SAR patches into comparable unit descriptors.

    Attributes:
        name: Model name.
        patch_size: Side ``P`` of the patches it takes.
        device: What runs it.
        batch_size: Patches per back-end call.
    """

    name: str
    patch_size: int
    device: str
    batch_size: int

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"{self.name}: embedding wants (N, {self.patch_size}, {self.patch_size}) patches, got {x.shape}; "
                "resample the patches to the model's patch size first"
            )
        return np.ascontiguousarray(np.nan_to_num(x, nan=0.0)[:, None])

    def _embed(self, which: str, x: np.ndarray) -> np.ndarray:
        x4 = self._prepare(x)
        if x4.shape[0] == 0:
            return np.zeros((0, 0), np.float32)
        parts = [self._run(which, x4[i : i + self.batch_size]) for i in range(0, x4.shape[0], self.batch_size)]
        return np.concatenate(parts).astype(np.float32)

    def embed_optical(self, x: np.ndarray) -> np.ndarray:
        """Unit descriptors ``(N, D)`` float32 of optical patches ``(N, P, P)`` in [0, 1]."""
        return self._embed("optical", x)

    def embed_sar(self, x: np.ndarray) -> np.ndarray:
        """Unit descriptors ``(N, D)`` float32 of SAR patches ``(N, P, P)`` in [0, 1]."""
        return self._embed("sar", x)

    def score(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity ``(N,)`` of optical patches ``a`` and SAR patches ``b`` (``(N, P, P)``)."""
        return np.asarray((self.embed_optical(a) * self.embed_sar(b)).sum(axis=1), dtype=np.float32)

    @abstractmethod
    def _run(self, which: str, x: np.ndarray) -> np.ndarray:
        """Descriptors ``(n, D)`` of one batch ``(n, 1, P, P)`` float32; ``which`` = optical | sar."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, patch_size={self.patch_size}, device={self.device!r})"


class OnnxDescriptorModel(DescriptorModel):
    """Two encoder graphs run by ONNX Runtime.

    Args:
        optical: Optical encoder ``.onnx`` (input ``(N, 1, P, P)``, output ``(N, D)``).
        sar: SAR encoder ``.onnx``.
        name: Model name.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: Patches per session call.
        threads: Intra-op threads (None: ONNX Runtime's default).
    """

    def __init__(self, optical: str | Path, sar: str | Path, name: str, device: str = "auto",
                 batch_size: int = 256, threads: int | None = None) -> None:
        import onnxruntime as ort

        from .runtime import onnx_providers
        from .safe_load import ModelFileError, onnx_session

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.sessions: dict[str, Any] = {}
        sizes = set()
        for which, path in (("optical", Path(optical)), ("sar", Path(sar))):
            if not path.is_file():
                raise FileNotFoundError(f"{name}: {which} encoder graph not found: {path}")
            sess = onnx_session(path, providers=onnx_providers(device), sess_options=opts,
                                what=f"{name}: {which} encoder graph")
            shape_in, outs = sess.get_inputs()[0].shape, sess.get_outputs()
            if len(shape_in) != 4 or shape_in[1] != 1 or not outs or len(outs[0].shape) != 2:
                raise ModelFileError(
                    f"{name}: {which} encoder graph {path} maps {shape_in} to "
                    f"{outs[0].shape if outs else 'nothing'}; an encoder maps (N, 1, P, P) to (N, D)"
                )
            size = shape_in[-1]
            if not isinstance(size, int):
                raise ModelFileError(f"{path}: the patch size (last input dimension) must be fixed, got {size!r}")
            sizes.add(size)
            self.sessions[which] = sess
        if len(sizes) != 1:
            raise ValueError(f"{name}: the two encoders take different patch sizes {sorted(sizes)}")
        self.name = name
        self.patch_size = int(sizes.pop())
        self.device = f"onnxruntime:{self.sessions['optical'].get_providers()[0]}"
        self.batch_size = int(batch_size)

    def _run(self, which: str, x: np.ndarray) -> np.ndarray:
        sess = self.sessions[which]
        return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


class TorchDescriptorModel(TorchBackend, DescriptorModel):
    """A torch module with ``embed_optical`` / ``embed_sar`` (inputs ``(N, 1, P, P)``).

    Args:
        module: E.g. :class:`sarcoreg.models.nets.aae.AAEInference`.
        patch_size: ``P``.
        name: Model name.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: Patches per forward call.
    """

    def __init__(self, module: Any, patch_size: int, name: str, device: str = "auto", batch_size: int = 256) -> None:
        self._attach(module, patch_size, name, device, batch_size)

    def _run(self, which: str, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        fn = self.module.embed_optical if which == "optical" else self.module.embed_sar
        with torch.inference_mode():
            return np.asarray(fn(torch.from_numpy(x).to(self._device)).float().cpu().numpy())


def _verified(card: Any, role: str) -> Path:
    """The card's ``role`` file after checking that it exists and matches its checksum."""
    path = Path(card.file_for(role))
    if not path.is_file():
        raise FileNotFoundError(f"model '{card.name}': {role} file {path} is missing")
    want = card.extra_sha256.get(role, "")
    if want and sha256_of(path) != want:
        raise ValueError(f"model '{card.name}': {path} does not match the card's checksum for {role}")
    return path


def load_descriptor_model(name_or_path: str | Path, device: str = "auto", backend: str = "auto",
                          batch_size: int = 256) -> DescriptorModel:
    """Load a descriptor model by card name, pair-model ``.onnx`` or ``.pt`` file.

    Args:
        name_or_path: A card name (its file is the pair model; the encoder graphs are the card's
            ``extra_files`` ``optical_encoder`` / ``sar_encoder``, checksummed, or else lie next to it),
            a pair-model ``.onnx`` path (same rule), or a ``.pt`` state dict / checkpoint of
            :class:`sarcoreg.models.nets.aae.DualAAE` (torch back end; the network comes from the
            descriptor loader of the method the checkpoint names, :mod:`.loaders`).
        device: ``auto``, ``cpu`` or ``cuda``.
        backend: ``auto`` (by file type), ``onnx`` or ``torch``.
        batch_size: Patches per back-end call.

    Raises:
        ValueError: Unknown card name (the message lists the shipped ones), wrong back end.
        FileNotFoundError: A file is missing (the message names it).
    """
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown backend '{backend}'; use auto, onnx or torch")
    path = Path(str(name_or_path)).expanduser()
    name = path.stem
    encoders: tuple[Path, Path] | None = None
    expected_size: int | None = None
    if path.suffix.lower() not in (".onnx", ".pt", ".pth"):
        card = find_card(str(name_or_path))
        path, name = card.path, card.name
        expected_size = int(card.inputs["patch_size"]) if card.inputs.get("patch_size") else None
        if not path.is_file():
            raise FileNotFoundError(f"model '{name}': weight file {path} is missing")
        if card.sha256 and sha256_of(path) != card.sha256:
            raise ValueError(f"model '{name}': {path} does not match the card's checksum")
        if {"optical_encoder", "sar_encoder"} <= set(card.extra_files):  # named and checksummed on the card
            encoders = _verified(card, "optical_encoder"), _verified(card, "sar_encoder")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix.lower() == ".onnx":
        if backend == "torch":
            raise ValueError(f"{path} is an ONNX graph; the torch back end needs a .pt file")
        opt, sar = encoders or encoder_files(path)
        return validate_descriptor_model(OnnxDescriptorModel(opt, sar, name=name, device=device,
                                                             batch_size=batch_size), path, expected_size)
    if backend == "onnx":
        raise ValueError(f"{path} is a torch file; export it to ONNX first or use backend='torch'")
    from .loaders import loader_for, weights_method
    from .safe_load import ModelFileError, load_torch_weights

    method, state, _ = weights_method(load_torch_weights(path), path)
    build = loader_for(method).descriptor
    if build is None:
        raise ModelFileError(f"model file {path}: a '{method}' model has no descriptor encoders")
    try:
        module, size = build(state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:  # weights of another shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"model file {path}: not the weights of an AAE descriptor model ({first})") from None
    return validate_descriptor_model(TorchDescriptorModel(module, size, name=name, device=device,
                                                          batch_size=batch_size), path, expected_size)


def validate_descriptor_model(model: DescriptorModel, path: Path, expected_size: int | None = None) -> DescriptorModel:
    """Check a freshly loaded descriptor model on two test patches per modality; returns it.

    The patch size must be the card's (``expected_size``, when it gives one), and both encoders
    must give finite descriptors of one dimension, so a model with damaged weights is named when
    it is loaded.

    Raises:
        ModelFileError: The check fails; the message names the model and its file.
    """
    from .safe_load import ModelFileError, check_finite

    source = f"model '{model.name}' ({path})"
    if expected_size is not None and int(model.patch_size) != expected_size:
        raise ModelFileError(f"{source} takes {model.patch_size} x {model.patch_size} patches, its card says "
                             f"{expected_size}")
    p = int(model.patch_size)
    ramp = np.linspace(0.0, 1.0, p * p, dtype=np.float32).reshape(p, p)
    probe = np.stack([ramp, ramp.T])
    try:
        opt, sar = model.embed_optical(probe), model.embed_sar(probe)
    except Exception as exc:
        raise ModelFileError(f"{source} fails on a test batch of two patches: {exc}") from None
    check_finite(opt, (2, None), source, "optical descriptor")
    check_finite(sar, (2, opt.shape[1]), source, "SAR descriptor")
    return model
