"""Throughput of the pruned RRL-Net: patch pairs per second for torch and ONNX Runtime.

Usage::

    python bench/bench_rrlnet_throughput.py [--model rrlnet-visnir] [--batches 1,16,64,256]
                                            [--threads 2] [--seconds 5]

Runs the shipped ONNX model (ONNX Runtime, CPU and CUDA when the runtime has it) and the same
architecture in torch (CPU, and CUDA when available; random weights: the speed does not depend
on them) at a few batch sizes and prints one line per back end and batch size. Writes
``bench/results/rrlnet_throughput.json``.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="rrlnet-visnir")
    p.add_argument("--batches", default="1,16,64,256")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    import onnxruntime as ort
    import torch
    from sarcoreg.models.patch_model import OnnxPatchModel
    from sarcoreg.models.registry import find_card
    from sarcoreg.models.rrlnet import RRLNetInference

    torch.set_num_threads(a.threads)
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    card = find_card(a.model)
    backends: list[tuple[str, Any]] = []
    for dev in ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else []):
        m = OnnxPatchModel(card.path, name=card.name, device=dev, batch_size=max(batches), threads=a.threads)
        backends.append((m.device, lambda x, y, m=m: m.score(x, y)))
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        net = RRLNetInference().eval().to(dev)

        def run(x: np.ndarray, y: np.ndarray, net: Any = net, dev: str = dev) -> np.ndarray:
            with torch.inference_mode():
                out = net(torch.from_numpy(x[:, None]).to(dev), torch.from_numpy(y[:, None]).to(dev))
                return out.cpu().numpy()

        backends.append((f"torch:{dev}", run))
    print(f"{'back end':40s} {'batch':>6s} {'pairs/s':>10s}")
    for name, fn in backends:
        for b in batches:
            x = rng.random((b, 64, 64), dtype=np.float32)
            y = rng.random((b, 64, 64), dtype=np.float32)
            r = _rate(lambda fn=fn, x=x, y=y: fn(x, y), b, a.seconds)
            rows.append({"backend": name, "batch": b, "pairs_per_s": round(r, 2)})
            print(f"{name:40s} {b:6d} {r:10.1f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": platform.processor() or platform.machine(), "threads": a.threads, "model": a.model, "rows": rows}
    (RESULTS / "rrlnet_throughput.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
