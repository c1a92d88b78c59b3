"""Several training processes with torch DDP: process group, device per process, rank-0 helpers.

``torchrun --nproc_per_node N -m sarcoreg.training.cli <method> ...`` starts N copies of the
training command; torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` in each. :func:`setup` reads them, joins the process group (``nccl`` on CUDA,
``gloo`` on the CPU) and picks this process's device (``cuda:LOCAL_RANK``). Without those
variables (a plain ``sarcoreg-train``) everything here is a no-op for a single process.

Every rank draws the same global batch from the same seeded generator and keeps its own slice
(:meth:`Distributed.shard`, every N-th sample): the data order is the single-process one, and DDP's gradient mean
over equal slices is the gradient of the global batch, so N processes follow the loss curve of
one process with the same global batch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Distributed", "env_rank", "is_main_process", "main_print", "seed_everything", "setup", "write_summary"]


def env_rank() -> int:
    """This process's rank from torchrun's environment (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single-process run): the process that writes files and logs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


def main_print(text: str) -> None:
    """``print(text, flush=True)`` on rank 0 only."""
    if is_main_process():
        print(text, flush=True)


def write_summary(out: str | Path, summary: dict[str, object]) -> None:
    """Rank 0 writes ``out/summary.json`` and prints it as one line (the other ranks do nothing)."""
    if is_main_process():
        Path(out, "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        print(json.dumps(summary, default=str), flush=True)


@dataclass
class Distributed:
    """Where this process stands in a (possibly one-process) training run.

    Attributes:
        rank: This process's rank, 0..world_size-1.
        world_size: Number of processes.
        device: This process's torch device.
        owns_group: True when :func:`setup` created the process group (and :meth:`close` ends it).
    """

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes checkpoints, history and logs."""
        return self.rank == 0

    def shard(self, x: Any) -> Any:
        """This rank's share of a global batch (numpy array or tensor, first axis): every N-th sample from ``rank``.

        Interleaved rather than contiguous, so that a batch laid out by class (positives first,
        negatives last) gives every process both classes in the same proportion.

        Raises:
            ValueError: The batch does not split evenly over the processes (DDP's gradient mean
                would then weight the samples unequally).
        """
        if not self.active:
            return x
        n = len(x)
        if n % self.world_size:
            raise ValueError(
                f"a global batch of {n} does not split evenly over {self.world_size} processes; "
                "use a --batch-size that is a multiple of --nproc_per_node"
            )
        return x[self.rank :: self.world_size]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each number over the processes (the loss of the global batch)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        means = (t / self.world_size).cpu().tolist()
        return {k: float(v) for k, v in zip(keys, means, strict=True)}

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process (so that every process stops at the same step)."""
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(int(t.item()))

    def barrier(self) -> None:
        """Wait for every process."""
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """End the process group if :func:`setup` made it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _resolve_device(device: str, local_rank: int, world_size: int) -> torch.device:
    from sarcoreg.models.runtime import torch_device

    dev = torch_device(device)
    if world_size > 1 and dev.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(f"process with LOCAL_RANK {local_rank} but torch sees only {count} CUDA devices; "
                             "start at most that many processes per node (--nproc_per_node)")
        dev = torch.device("cuda", local_rank)  # one GPU per process, whatever cuda:N was asked for
        torch.cuda.set_device(dev)
    return dev


def setup(device: str = "auto") -> Distributed:
    """Join the process group torchrun describes (or none) and pick this process's device.

    Args:
        device: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``; under torchrun a CUDA device becomes
            ``cuda:LOCAL_RANK``.

    Returns:
        The process's :class:`Distributed`.

    Raises:
        ValueError: CUDA asked for but missing, or more processes than GPUs on a node.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        from sarcoreg.models.runtime import torch_device

        return Distributed(0, 1, torch_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _resolve_device(device, local_rank, world)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return Distributed(dist.get_rank(), dist.get_world_size(), dev, owns)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (CPU and CUDA) and return a numpy generator with the same seed."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
