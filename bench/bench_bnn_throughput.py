"""Throughput of the shipped BNN (and AAE): patch pairs per second, torch and ONNX Runtime.

Usage::

    python bench/bench_bnn_throughput.py [--model bnn-sar-optical] [--batches 1,16,64,256]
                                         [--threads 1] [--seconds 3] [--aae aae-sar-optical]

Two ways of scoring are timed for every back end and batch size ``B``:

* ``pairs``: ``B`` optical patches against ``B`` SAR patches (patch verification, ``score(a, b)``);
* ``dense``: one optical template against ``B`` SAR windows (the matcher's dense search: the
  ONNX graph broadcasts ``a`` of batch 1 against ``b``; torch embeds the template once).

The ONNX rows run the shipped graph (CPU, and CUDA when the runtime has it); the torch rows run
the same architecture rebuilt from the card (backbone, width, patch size; the weights are the
graph's own only for speed-neutral reasons: random weights cost the same). With ``--aae`` the AAE
pair graph and its encoders are timed the same way (``dense`` = SAR descriptors per second).
Writes ``bench/results/bnn_throughput.json`` (``--out`` another folder).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _rate(fn: Any, batch: int, seconds: float) -> float:
    """Pairs per second of ``fn()`` (one batch) over at least ``seconds`` (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += batch
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def bnn_backends(card: Any, threads: int, max_batch: int) -> list[tuple[str, Any, Any]]:
    """``(name, pairs(a, b), dense(t, b))`` callables for the BNN of ``card`` (ONNX, torch CPU/CUDA)."""
    import onnxruntime as ort
    import torch
    from sarcoreg.models.bnn import BNN
    from sarcoreg.models.patch_model import OnnxPatchModel

    out: list[tuple[str, Any, Any]] = []
    for dev in ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else []):
        m = OnnxPatchModel(card.path, name=card.name, device=dev, batch_size=max_batch, threads=threads)
        sess = m.session if hasattr(m, "session") else None

        def dense(t: np.ndarray, b: np.ndarray, m: Any = m, sess: Any = sess) -> Any:
            if sess is None:
                return m.score(np.repeat(t, len(b), axis=0), b)
            return sess.run(None, {"a": t[:, None], "b": b[:, None]})[0]

        out.append((m.device, lambda a, b, m=m: m.score(a, b), dense))
    cfg = card.training.get("config", {})
    net_cpu = BNN(cfg.get("backbone", "vgg11"), patch_size=card.inputs["patch_size"], width=int(cfg.get("width", 64)))
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        net = net_cpu.to(dev).eval()

        def pairs(a: np.ndarray, b: np.ndarray, net: Any = net, dev: str = dev) -> Any:
            with torch.inference_mode():
                return net(torch.from_numpy(a[:, None]).to(dev), torch.from_numpy(b[:, None]).to(dev)).cpu().numpy()

        def dense_t(t: np.ndarray, b: np.ndarray, net: Any = net, dev: str = dev) -> Any:
            with torch.inference_mode():
                za = net.embed_optical(torch.from_numpy(t[:, None]).to(dev))
                zb = net.embed_sar(torch.from_numpy(b[:, None]).to(dev))
                return (1.0 / (1.0 + net.distance_of_embeddings(za, zb))).cpu().numpy()

        out.append((f"torch:{dev}", pairs, dense_t))
    return out


def aae_backends(card: Any, threads: int, max_batch: int) -> list[tuple[str, Any, Any]]:
    """The same for the AAE of ``card``: pair graph, and SAR encoder for ``dense``."""
    import torch
    from sarcoreg.models.aae import AAEConfig, AAEInference, DualAAE
    from sarcoreg.models.descriptor_model import OnnxDescriptorModel
    from sarcoreg.models.patch_model import OnnxPatchModel

    m = OnnxPatchModel(card.path, name=card.name, device="cpu", batch_size=max_batch, threads=threads)
    d = OnnxDescriptorModel(card.file_for("optical_encoder"), card.file_for("sar_encoder"), name=card.name,
                            device="cpu", batch_size=max_batch, threads=threads)
    out: list[tuple[str, Any, Any]] = [
        (m.device, lambda a, b: m.score(a, b), lambda t, b: d.embed_sar(b) @ d.embed_optical(t)[0])]
    cfg = card.training.get("config", {})
    net = AAEInference(DualAAE(AAEConfig(int(cfg.get("patch_size", card.inputs["patch_size"])),
                                         int(cfg.get("width", 64)), int(cfg.get("latent_dim", 256))))).eval()

    def pairs(a: np.ndarray, b: np.ndarray) -> Any:
        with torch.inference_mode():
            return net(torch.from_numpy(a[:, None]), torch.from_numpy(b[:, None])).numpy()

    def dense(t: np.ndarray, b: np.ndarray) -> Any:
        with torch.inference_mode():
            return (net.embed_sar(torch.from_numpy(b[:, None])) @ net.embed_optical(torch.from_numpy(t[:, None]))[0]
                    ).numpy()

    out.append(("torch:cpu", pairs, dense))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bnn-sar-optical")
    p.add_argument("--aae", default=None, help="also time this AAE card (e.g. aae-sar-optical)")
    p.add_argument("--batches", default="1,16,64,256")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for bnn_throughput.json")
    a = p.parse_args()
    import torch
    from sarcoreg.models.registry import find_card

    torch.set_num_threads(a.threads)
    batches = [int(b) for b in a.batches.split(",")]
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    todo = [(a.model, bnn_backends(find_card(a.model), a.threads, max(batches)))]
    if a.aae:
        todo.append((a.aae, aae_backends(find_card(a.aae), a.threads, max(batches))))
    print(f"threads {a.threads}; pairs = B optical vs B SAR patches, dense = 1 template vs B SAR windows")
    print(f"{'model':18s} {'back end':34s} {'mode':6s} {'batch':>6s} {'pairs/s':>10s}")
    for model_name, backends in todo:
        size = find_card(model_name).inputs["patch_size"]
        for name, pairs, dense in backends:
            for b in batches:
                x = rng.random((b, size, size), dtype=np.float32)
                y = rng.random((b, size, size), dtype=np.float32)
                for mode, fn in (("pairs", lambda x=x, y=y, f=pairs: f(x, y)),
                                 ("dense", lambda x=x, y=y, f=dense: f(x[:1], y))):
                    r = _rate(fn, b, a.seconds)
                    rows.append({"model": model_name, "backend": name, "mode": mode, "batch": b,
                                 "pairs_per_s": round(r, 1)})
                    print(f"{model_name:18s} {name:34s} {mode:6s} {b:6d} {r:10.1f}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    out = {"machine": platform.processor() or platform.machine(), "threads": a.threads, "rows": rows}
    (a.out / "bnn_throughput.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
