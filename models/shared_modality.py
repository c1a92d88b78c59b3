"""Shared-modality transform networks (Borisov, Myasnikov & Myasnikov 2026) and their inference API.

Two U-Nets map a SAR image ``x`` (``C_X`` bands) and an optical image ``y`` (``C_Y`` bands) of one
place onto images of a *shared modality* with ``K`` channels in [0, 1] (``f_X x ~ f_Y y``), which
ordinary matchers (SIFT, DISK/ALIKED + LightGlue, XFeat ...) then match. Criterion ``v1`` of the
paper also trains two inverse U-Nets (shared -> original modality) as a degeneracy measure;
``v2`` does without them (see :mod:`sarcoreg.training.shared_losses`).

Network (paper section 3.3, public code ``models/base_model.py``): ``smp.Unet`` with an
EfficientNet-B0 encoder (no pretrained weights), 5 levels, scSE attention in the decoder,
decoder channels (256, 128, 64, 32, 16), then a sigmoid (the inverse networks have none). Input
height and width must be multiples of 32.

Inputs are prepared *outside* the networks (unlike the public code, which takes linear SAR and
applies ``log10`` inside): SAR in dB, optical reflectance or digital numbers, each scene
percentile-stretched to [0, 1] with :func:`normalise`. This keeps the ONNX graphs free of
data-dependent preprocessing and lets one model serve dB rasters of any origin.

Inference: :func:`load_shared_model` returns a :class:`SharedModalityModel` whose
``transform(batch, modality)`` maps ``(B, C, H, W)`` float32 in [0, 1] to ``(B, K, H, W)`` float32
in [0, 1], on torch (CPU / CUDA) or ONNX Runtime (CPU / CUDA provider). A shipped model is one
card (``method = "shared"``) with two ONNX files, ``file`` = the SAR network and
``extra_files = {"optical": ...}``. The ONNX files also serve the torch back end: their
initialisers keep the torch parameter names, so :func:`state_dict_from_onnx` rebuilds the state dict.

Nothing here imports QGIS; torch and onnxruntime are imported only where they are used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .runtime import onnx_cuda_available, onnx_providers, torch_device
from .shared_config import SharedConfig, build_unet

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .card import ModelCard

__all__ = [
    "MULTIPLE",
    "MODALITIES",
    "SharedConfig",
    "SharedModalityModel",
    "build_unet",
    "export_onnx",
    "load_shared_model",
    "make_nets",
    "normalise",
    "state_dict_from_onnx",
]

#: Height and width of every network input must be a multiple of this (5 stride-2 levels).
MULTIPLE = 32
#: The two modalities ``transform`` and ``normalise`` accept.
MODALITIES = ("sar", "optical")

def make_nets(config: SharedConfig) -> nn.Module:
    """The networks of ``config`` as one :class:`~sarcoreg.models.nets.shared.SharedModalityNets`."""
    from .nets.shared import SharedModalityNets

    return SharedModalityNets(config)


def __getattr__(name: str) -> Any:
    """Lazy attribute ``SharedModalityNets`` (torch is imported on first access only)."""
    if name == "SharedModalityNets":
        from .nets.shared import SharedModalityNets

        return SharedModalityNets
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def normalise(
    image: np.ndarray,
    modality: str,
    low: float = 0.5,
    high: float = 99.5,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Percentile stretch of one scene to [0, 1], as the shared-modality models expect their input.

    The ``low`` / ``high`` percentiles are taken over the valid pixels of the scene, **jointly
    over all bands** (as the public code's ``PercentileLimiter``): this keeps the relative
    brightness of the bands (the colour of an optical image, VV above VH in a dual-pol SAR image).
    Values are clipped to that range and scaled linearly; invalid pixels (``valid`` False, or not
    finite) become 0. SAR must already be in dB (converting amplitude or intensity is the
    caller's job, e.g. :mod:`sarcoreg.core.prepare`).

    Args:
        image: ``(C, H, W)`` or ``(H, W)``, any real dtype.
        modality: ``"sar"`` or ``"optical"`` (the same rule for both; checked for typos).
        low: Lower percentile (0-100).
        high: Upper percentile (0-100).
        valid: Optional ``(H, W)`` or ``(C, H, W)`` boolean mask of usable pixels.

    Returns:
        float32 of the shape of ``image``, in [0, 1]. An image with no spread (or no valid
        pixel) gives zeros.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be 'sar' or 'optical', got {modality!r}")
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100, got {low}, {high}")
    x = np.asarray(image, dtype=np.float32)
    ok = np.isfinite(x)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        if v.shape != x.shape:
            v = np.broadcast_to(v, x.shape)
        ok &= v
    out = np.zeros(x.shape, dtype=np.float32)
    if not ok.any():
        return out
    lo, hi = np.percentile(x[ok], [low, high])
    if not hi > lo:
        return out
    out[ok] = np.clip((x[ok] - lo) / (hi - lo), 0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------
# ONNX export and the weights inside ONNX files
# --------------------------------------------------------------------------------------------


def _to_fp16_weights(model: Any) -> Any:
    """Store the float32 weight tensors (2-D and more) as float16 plus a ``Cast`` back to float32.

    Computation stays float32. One-dimensional tensors (biases, BatchNorm scale, shift, running
    mean and variance) stay float32: they are a small part of the file, and rounding a running
    mean to float16 next to a tiny running variance shifts a normalised activation by several
    standard deviations (measured: up to 0.99 at single output pixels of a trained network).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts = []
    new_inits = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) < 2:
            new_inits.append(init)
            continue
        arr = numpy_helper.to_array(init)
        half = numpy_helper.from_array(arr.astype(np.float16), name=init.name + "__fp16")
        new_inits.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast"))
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def export_onnx(
    net: nn.Module,
    path: str | Path,
    in_channels: int,
    *,
    fp16_weights: bool = True,
    opset: int = 17,
    check_size: int = 96,
    tolerance: float = 5e-3,
    check_inputs: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Export one forward network to ONNX with dynamic batch, height and width.

    The graph has input ``x`` ``(B, C, H, W)`` float32 and output ``y`` ``(B, K, H, W)`` float32.
    Batch normalisation is kept as separate nodes (not folded into the convolutions) so that the
    initialisers keep the torch parameter names; ONNX Runtime folds them when it loads the graph.
    With ``fp16_weights`` the initialisers are stored in float16 (half the file) and cast to
    float32 inside the graph; this is kept only if ONNX Runtime still agrees with torch within
    ``tolerance`` (max abs difference on random inputs), otherwise the float32 file is written.

    Args:
        net: A forward network from :func:`build_unet` (any device; exported on the CPU).
        path: Output ``.onnx`` file.
        in_channels: ``C`` of the network input.
        fp16_weights: Try float16 storage of the weights.
        opset: ONNX opset (>= 17).
        check_size: Side of the random check images (two sizes are checked: this and +32 x +64).
        tolerance: Largest accepted ONNX Runtime vs torch difference for the fp16 file.
        check_inputs: More check batches ``(B, C, H, W)`` float32 (e.g. real normalised scenes,
            H and W multiples of 32), checked together with the random ones.

    Returns:
        ``{"file", "bytes", "fp16_weights", "max_abs_diff_fp32", "max_abs_diff_fp16", "max_abs_diff",
        "opset", "checked_batches"}``: the differences are ONNX Runtime (CPU) vs torch (CPU,
        float32) over the check images; ``max_abs_diff`` is the one of the file written.
    """
    import copy
    import io
    import warnings

    import onnx
    import torch

    from .safe_load import onnx_session

    if opset < 17:
        raise ValueError("opset must be >= 17")
    path = Path(path)
    cpu = copy.deepcopy(net).to("cpu").float().eval()
    example = torch.rand(1, in_channels, MULTIPLE * 2, MULTIPLE * 2)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            cpu, (example,), buf,  # type: ignore[arg-type]
            dynamo=False, opset_version=opset, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}, "y": {0: "batch", 2: "height", 3: "width"}},
            training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
        )
    model32 = onnx.load_from_string(buf.getvalue())
    gen = torch.Generator().manual_seed(0)
    checks = [torch.rand(2, in_channels, check_size, check_size, generator=gen),
              torch.rand(1, in_channels, check_size + 32, check_size + 64, generator=gen)]
    checks += [torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)) for c in check_inputs or []]
    with torch.no_grad():
        refs = [cpu(c).numpy() for c in checks]

    def max_diff(model_bytes: bytes) -> float:
        sess = onnx_session(model_bytes, what="exported graph")
        outs = [sess.run(None, {"x": c.numpy()})[0] for c in checks]
        return max(float(np.abs(o - r).max()) for o, r in zip(outs, refs, strict=True))

    bytes32 = model32.SerializeToString()
    diff32 = max_diff(bytes32)
    data, diff, used_fp16, diff16 = bytes32, diff32, False, None
    if fp16_weights:
        bytes16 = _to_fp16_weights(onnx.load_from_string(bytes32)).SerializeToString()
        diff16 = max_diff(bytes16)
        if diff16 <= tolerance:
            data, diff, used_fp16 = bytes16, diff16, True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return {"file": str(path), "bytes": len(data), "fp16_weights": used_fp16, "max_abs_diff_fp32": diff32,
            "max_abs_diff_fp16": diff16, "max_abs_diff": diff, "opset": opset, "checked_batches": len(checks)}


def state_dict_from_onnx(path: str | Path) -> dict[str, np.ndarray]:
    """The float32 weights inside an ONNX file written by :func:`export_onnx`, by torch name.

    Names are resolved through the ``Cast`` (float16 storage) and ``Identity`` (weights that the
    exporter de-duplicated) nodes back to the initialisers.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    changed = True
    while changed:
        changed = False
        for node in model.graph.node:
            if node.op_type in ("Cast", "Identity") and node.input and node.input[0] in values:
                if node.output[0] not in values:
                    values[node.output[0]] = values[node.input[0]]
                    changed = True
    return {k: np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else v for k, v in values.items()
            if not k.endswith("__fp16")}


#: Parameters smp.Unet holds but never uses (the encoder's classifier head, the attention before the
#: last decoder block that has no skip connection): the ONNX export leaves them out.
_UNUSED = re.compile(r"encoder\._conv_head\.|encoder\._bn1\.|decoder\.blocks\.\d+\.attention1\.")


def _load_forward_net_from_onnx(path: Path, in_channels: int, out_channels: int) -> nn.Module:
    """A torch forward network with the weights of an exported ONNX file."""
    import torch

    net = build_unet(in_channels, out_channels, sigmoid=True)
    weights = state_dict_from_onnx(path)
    state = {}
    for key, ref in net.state_dict().items():
        if key.endswith("num_batches_tracked") or (key not in weights and _UNUSED.search(key)):
            state[key] = ref  # not part of the forward graph, so not in the ONNX file
            continue
        if key not in weights:
            raise ValueError(f"{path}: no weight '{key}' in the ONNX file (not written by export_onnx?)")
        arr = torch.from_numpy(np.array(weights[key], dtype=np.float32))
        if tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"{path}: weight '{key}' has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}")
        state[key] = arr
    net.load_state_dict(state)
    return net.eval()


# --------------------------------------------------------------------------------------------
# Inference object
# --------------------------------------------------------------------------------------------


class SharedModalityModel:
    """A loaded shared-modality model: ``transform(batch, modality)`` on torch or ONNX Runtime.

    Attributes:
        name: Model name (card name or file stem).
        sar_bands: SAR input bands, in order (dB, normalised with :func:`normalise`).
        optical_bands: Optical input bands, in order.
        channels: ``K``, channels of the shared images.
        multiple: Input height and width must be multiples of this (32).
        device: The device actually used: ``"cpu"`` / ``"cuda:0"`` (torch) or the ONNX Runtime
            execution provider (``"CPUExecutionProvider"``, ``"CUDAExecutionProvider"``).
        backend: ``"onnx"`` or ``"torch"``.
        card: The model card, or ``None`` for a model loaded from a file.
        config: The :class:`SharedConfig`.
    """

    multiple: int = MULTIPLE

    def __init__(
        self,
        name: str,
        config: SharedConfig,
        runners: dict[str, Any],
        backend: str,
        device: str,
        card: ModelCard | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.sar_bands = tuple(config.sar_bands)
        self.optical_bands = tuple(config.optical_bands)
        self.channels = int(config.channels)
        self.backend = backend
        self.device = device
        self.card = card
        self._runners = runners

    def __repr__(self) -> str:
        return (f"SharedModalityModel({self.name!r}, sar={list(self.sar_bands)}, optical={list(self.optical_bands)}, "
                f"K={self.channels}, backend={self.backend}, device={self.device})")

    def bands(self, modality: str) -> tuple[str, ...]:
        """The input bands of ``modality``."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be 'sar' or 'optical', got {modality!r}")
        return self.sar_bands if modality == "sar" else self.optical_bands

    def transform(self, batch: np.ndarray, modality: str) -> np.ndarray:
        """Shared-modality images of a batch of one modality.

        Args:
            batch: ``(B, C, H, W)`` float32 already normalised to [0, 1] (:func:`normalise`), ``C``
                = ``len(self.bands(modality))``; a one-band optical batch is replicated to the
                model's optical band count (a gray optical image as R = G = B). ``H`` and ``W``
                must be multiples of :attr:`multiple`.
            modality: ``"sar"`` or ``"optical"``.

        Returns:
            ``(B, K, H, W)`` float32 in [0, 1].

        Raises:
            ValueError: Wrong modality, rank, band count or size.
        """
        want = len(self.bands(modality))
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"batch must be (B, C, H, W), got shape {x.shape}")
        if x.shape[1] != want:
            if modality == "optical" and x.shape[1] == 1:
                x = np.repeat(x, want, axis=1)
            else:
                names = list(self.bands(modality))
                raise ValueError(f"model '{self.name}' takes {want} {modality} band(s) {names}, got {x.shape[1]}")
        h, w = x.shape[2:]
        if h % self.multiple or w % self.multiple or h == 0 or w == 0:
            raise ValueError(f"height and width must be positive multiples of {self.multiple}, got {h} x {w}")
        if x.shape[0] == 0:
            return np.zeros((0, self.channels, h, w), dtype=np.float32)
        x = np.ascontiguousarray(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0))
        run = self._runners[modality]
        y = np.asarray(run(x), dtype=np.float32)
        return np.clip(y, 0.0, 1.0)


def _torch_runner(net: Any, device: torch.device) -> Any:
    import torch

    net = net.to(device).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run


def _onnx_runner(path: Path, device: str, threads: int | None, what: str = "model file") -> tuple[Any, str]:
    import onnxruntime as ort

    from .safe_load import ModelFileError, onnx_session

    providers = onnx_providers(device)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    sess = onnx_session(path, providers=providers, sess_options=opts, what=what)
    shapes = [i.shape for i in sess.get_inputs()] + [o.shape for o in sess.get_outputs()]
    if len(shapes) != 2 or any(len(shape) != 4 for shape in shapes):
        raise ModelFileError(f"{what} {path}: inputs and outputs {shapes}; a shared-modality network maps one "
                             "(B, C, H, W) input to one (B, K, H, W) output")

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {"x": x})[0])

    return run, str(sess.get_providers()[0])


def _config_from_inputs(inputs: dict[str, Any]) -> SharedConfig:
    return SharedConfig(
        sar_bands=tuple(inputs["sar_bands"]),
        optical_bands=tuple(inputs["optical_bands"]),
        channels=int(inputs.get("channels", 3)),
        criterion=str(inputs.get("criterion", "v2")),
        rgb=tuple(int(i) for i in inputs.get("rgb", ())),
    )


def _check_files(card: ModelCard) -> None:
    from .card import sha256_of

    for role, (p, expected) in card.all_files().items():
        if not p.is_file():
            raise FileNotFoundError(f"model '{card.name}': {role} weight file {p} is missing")
        digest = sha256_of(p)
        if expected and digest != expected:
            raise ValueError(f"model '{card.name}': {p} does not match the card's checksum "
                             f"({digest[:12]} != {expected[:12]})")


def _from_checkpoint(path: Path, device: str, name: str) -> SharedModalityModel:
    """A torch model from a training checkpoint (``{"model": state, "config": {...}}``)."""
    from .safe_load import load_torch_weights

    ckpt = load_torch_weights(path)
    if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a shared-modality checkpoint (needs 'model' and 'config')")
    config = SharedConfig.from_dict(ckpt["config"] if "sar_bands" in ckpt["config"] else ckpt["config"]["model"])
    nets = make_nets(config)
    nets.load_state_dict(ckpt["model"])
    dev = torch_device(device)
    runners = {"sar": _torch_runner(nets.sar, dev), "optical": _torch_runner(nets.optical, dev)}
    return _validated(SharedModalityModel(name, config, runners, "torch", str(dev), None), str(path))


def load_shared_model(
    name_or_card_or_path: str | Path | ModelCard,
    device: str = "auto",
    backend: str = "auto",
    threads: int | None = None,
) -> SharedModalityModel:
    """Load a shared-modality model.

    Args:
        name_or_card_or_path: A card name (``"shared-v2"``), a :class:`ModelCard`, a card
            ``.json`` file, a training checkpoint ``.pt`` (``best.pt`` / ``last.pt`` of
            ``sarcoreg-train shared``; torch back end) or a run folder holding ``best.pt``.
        device: ``"auto"`` (CUDA when the back end has it), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        backend: ``"auto"``: ONNX Runtime for a card, unless a CUDA device is wanted (or
            ``auto`` and torch sees one) that this ONNX Runtime lacks: then torch, with the
            weights read from the ONNX files; checkpoints always run on torch. Or ``"onnx"`` /
            ``"torch"``.
        threads: CPU threads of ONNX Runtime (default: its own choice); torch threads are the
            caller's (``torch.set_num_threads``).

    Returns:
        The :class:`SharedModalityModel`; ``device`` and ``backend`` say what is really used.

    Raises:
        ValueError: Unknown name, not a ``shared`` card, checksum mismatch, bad device / back end.
        FileNotFoundError: A weight file is missing.
    """
    from .card import ModelCard, find_card

    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"unknown backend '{backend}'; use auto, onnx or torch")
    device = str(device or "auto")
    if isinstance(name_or_card_or_path, ModelCard):
        card = name_or_card_or_path
    else:
        text = str(name_or_card_or_path)
        path = Path(text).expanduser()
        if path.is_dir() and (path / "best.pt").is_file():
            path = path / "best.pt"
        if path.suffix.lower() in (".pt", ".pth"):
            if backend == "onnx":
                raise ValueError(f"{path} is a torch checkpoint; use backend='torch' (or auto)")
            if not path.is_file():
                raise FileNotFoundError(f"model file not found: {path}")
            return _from_checkpoint(path, device, path.parent.name or path.stem)
        if path.suffix.lower() == ".json":
            from .card import read_card

            try:
                card = read_card(path)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise ValueError(f"model card {path}: {exc}") from None
        else:
            card = find_card(text)
    if card.method != "shared":
        raise ValueError(f"model '{card.name}' is a '{card.method}' model, not a shared-modality one")
    _check_files(card)
    config = _config_from_inputs(card.inputs)
    files = {"sar": card.file_for("main"), "optical": card.file_for("optical")}
    use = backend
    if use == "auto":
        use = "onnx"
        wants_cuda = device.startswith("cuda") or device == "auto"
        if wants_cuda:
            if not onnx_cuda_available():
                try:
                    import torch

                    if torch.cuda.is_available():
                        use = "torch"
                except ImportError:
                    pass
                if use == "onnx" and device.startswith("cuda"):
                    raise ValueError(f"device {device!r} asked for, but neither ONNX Runtime nor torch has CUDA here")
    if use == "onnx":
        runners: dict[str, Any] = {}
        used = ""
        for modality, p in files.items():
            runners[modality], used = _onnx_runner(p, device, threads, f"model '{card.name}': {modality} network")
        return _validated(SharedModalityModel(card.name, config, runners, "onnx", used, card), str(files["sar"]))
    dev = torch_device(device)
    cx, cy, k = len(config.sar_bands), len(config.optical_bands), config.channels
    nets = {"sar": _load_forward_net_from_onnx(files["sar"], cx, k),
            "optical": _load_forward_net_from_onnx(files["optical"], cy, k)}
    runners = {m: _torch_runner(n, dev) for m, n in nets.items()}
    return _validated(SharedModalityModel(card.name, config, runners, "torch", str(dev), card), str(files["sar"]))


def _validated(model: SharedModalityModel, source: str) -> SharedModalityModel:
    """Check a freshly loaded model on one small test image per modality; returns it.

    Each network must map a ``(1, C, 64, 64)`` image with the card's band count to finite
    ``(1, K, 64, 64)`` values, so a damaged or mismatched file is named when it is loaded.

    Raises:
        ModelFileError: The check fails; the message names the model and ``source`` (its file).
    """
    from .safe_load import ModelFileError, check_finite

    side = 2 * MULTIPLE
    ramp = np.linspace(0.0, 1.0, side * side, dtype=np.float32).reshape(side, side)
    for modality in MODALITIES:
        bands = len(model.bands(modality))
        label = f"model '{model.name}' ({source}), {modality} network"
        try:
            out = model.transform(np.broadcast_to(ramp, (1, bands, side, side)), modality)
        except Exception as exc:
            raise ModelFileError(f"{label} fails on a {bands}-band test image: {exc}") from None
        check_finite(out, (1, model.channels, side, side), label, "output")
    return model
