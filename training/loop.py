"""The one training loop of every method: seed, device, threads, resume, budget, checkpoints, history, DDP.

A method (:class:`TrainMethod`) supplies only what is its own: its networks and optimisers
(:meth:`~TrainMethod.state_objects`), one training step, the validation row of an epoch and its
score, what goes beside ``best.pt`` and the export at the end. :func:`run_training` does the rest,
the same way for every method:

* **seed, threads, device**: ``torch.manual_seed(seed)`` before the method builds its networks, one
  numpy generator (:attr:`TrainContext.rng`) for the method's sampling, ``torch.set_num_threads``,
  the device (``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``; ``cuda:LOCAL_RANK`` under torchrun);
* **epochs and steps**: ``epochs`` epochs of ``steps_per_epoch`` steps, or (``epochs=None``) a
  step-counted run to ``max_steps`` with an epoch every ``steps_per_epoch`` steps; a validation
  after every epoch, a time budget (``max_minutes``) checked after every step;
* **checkpoints**: ``last.pt`` after every epoch (everything needed to resume: the state of every
  network / optimiser / scheduler, step, epoch, elapsed seconds, best score, history, the numpy
  and torch random states, the configuration and the method's own plain-data state) and
  ``best.pt`` at the best validation score (network, epoch, step, metrics), both written
  atomically (a temporary file renamed over the old one), both naming their method, both
  loadable with ``torch.load(weights_only=True)`` (:func:`read_checkpoint`; checkpoints written
  before this loop existed are converted by the method's :meth:`~TrainMethod.legacy_checkpoint`);
* **history**: ``history.json`` (one row per epoch, what the model cards read) and
  ``history.jsonl`` (one line per step and per epoch, appended as the run goes);
* **progress**: a tqdm bar on a terminal and the step hook (:mod:`.step_hook`) for the QGIS job;
* **bf16**: :meth:`TrainContext.autocast` is ``torch.autocast(bfloat16)`` when asked;
* **DDP** (:mod:`.distributed`): under ``torchrun --nproc_per_node N`` the method wraps its
  trained modules with :meth:`TrainContext.wrap`, takes its slice of each global batch with
  :meth:`TrainContext.shard`, the step's numbers are averaged over the processes, every process
  stops at the same step, and only rank 0 writes files and logs. Validation runs on every
  process (same weights, same numbers), so that random states stay in step.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sarcoreg.models.safe_load import load_torch_weights, plain_data
from torch import nn

from .distributed import Distributed, seed_everything, setup
from .step_hook import report_epoch_step, report_step

__all__ = [
    "CHECKPOINT_FORMAT",
    "LoopConfig",
    "LoopResult",
    "RunOptions",
    "TrainContext",
    "TrainMethod",
    "legacy_best",
    "legacy_checkpoint",
    "load_best",
    "read_checkpoint",
    "run_training",
    "save_atomic",
]

CHECKPOINT_FORMAT = "sarcoreg-training-checkpoint/2"
"""``last.pt`` / ``best.pt`` written by this loop carry ``"format": CHECKPOINT_FORMAT`` and ``"method"``."""


@dataclass
class RunOptions:
    """Where and how long a method's run goes: the fields every method config shares (its base class).

    Attributes:
        device: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``.
        threads: torch CPU threads (None: torch's default).
        max_minutes: Wall-clock budget.
        seed: Seed of the weights and the sampling.
    """

    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    seed: int = 100


@dataclass
class LoopConfig:
    """How long and where a run goes (the method's own options live in its config).

    Attributes:
        epochs: Epochs to run in total (over resumed runs); ``None``: a step-counted run that
            ends at ``max_steps``, with epoch boundaries at multiples of ``steps_per_epoch``.
        steps_per_epoch: Steps between validations.
        max_steps: Stop after this many steps in total (None: no limit).
        max_minutes: Wall-clock budget; checked after every step, the epoch is then validated.
        budget_includes_resumed: The budget counts the time of the runs this one resumes
            (False: it starts at this call).
        seed: Seed of torch and of :attr:`TrainContext.rng`.
        device: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``.
        threads: ``torch.set_num_threads`` (None: torch's default).
        bf16: bfloat16 autocast in :meth:`TrainContext.autocast`.
        channels_last: Networks placed by :meth:`TrainContext.place` use the channels-last memory
            format (with bf16 autocast 2-3.6x faster per step on this AVX-512 CPU for the BNN / AAE,
            ``bench/bench_cpu_craft.py``).
        progress: tqdm bar on rank 0.
        history_name: File of the per-epoch history (``history.json``); the per-step lines go
            into the same name with ``.jsonl``.
    """

    epochs: int | None
    steps_per_epoch: int
    max_steps: int | None = None
    max_minutes: float | None = None
    budget_includes_resumed: bool = True
    seed: int = 100
    device: str = "auto"
    threads: int | None = None
    bf16: bool = False
    channels_last: bool = False
    progress: bool = True
    history_name: str = "history.json"

    @classmethod
    def from_options(cls, options: Any, steps_per_epoch: int, progress: bool = True, **overrides: Any) -> LoopConfig:
        """The loop options found on a method's config, with ``overrides`` on top.

        Read from ``options`` where it has them: ``epochs``, ``max_steps``, ``max_minutes``, ``seed``,
        ``device``, ``threads``, ``bf16``, ``channels_last`` (a missing one keeps its default).
        """
        names = ("epochs", "max_steps", "max_minutes", "seed", "device", "threads", "bf16", "channels_last")
        found = {k: getattr(options, k) for k in names if hasattr(options, k)}
        return cls(**{"steps_per_epoch": steps_per_epoch, "progress": progress, **found, **overrides})

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        if self.epochs is None and self.max_steps is None:
            raise ValueError("a run without epochs needs max_steps")


class TrainContext:
    """What a method gets from the loop: device, random generator, DDP helpers, autocast.

    Attributes:
        device: The torch device of this process.
        rng: The numpy generator of the method's sampling (saved in ``last.pt``; the same on every
            DDP process, so that every process draws the same global batch).
        dist: The DDP state (:class:`~sarcoreg.training.distributed.Distributed`).
        config: The loop options.
        log: Rank 0's log (a no-op on the other ranks).
    """

    def __init__(self, dist: Distributed, rng: np.random.Generator, config: LoopConfig,
                 log: Callable[[str], None]) -> None:
        self.dist, self.rng, self.config, self.log = dist, rng, config, log
        self.device = dist.device

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process)."""
        return self.dist.is_main

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` in DistributedDataParallel when several processes run, else itself.

        Train through the returned module's ``forward`` (that is where DDP syncs gradients);
        save, validate and export the module itself.
        """
        if not self.dist.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused_parameters)

    def shard(self, x: Any) -> Any:
        """This process's slice of a global batch (the whole batch in one process)."""
        return self.dist.shard(x)

    def place(self, module: nn.Module) -> nn.Module:
        """``module`` on this process's device, in channels-last memory format when the run asks for it.

        A ``(N, 1, H, W)`` input is already channels-last contiguous, so one-band patch networks need
        no change to their inputs; the convolutions then keep the format through the network.
        """
        module = module.to(self.device)
        if self.config.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def autocast(self) -> AbstractContextManager[Any]:
        """bfloat16 autocast of a forward pass when the run asks for it (``--bf16``), else nothing."""
        if not self.config.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @staticmethod
    def optimise(loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """``zero_grad``, ``loss.backward()``, ``step`` of each optimiser."""
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()


class TrainMethod:
    """What a method supplies to :func:`run_training`; override the hooks its training needs.

    Attributes:
        name: The method's name (``rrlnet``, ``bnn`` ...), stored in every checkpoint.
        label: Prefix of the progress bar.
    """

    name = "method"
    label = "epoch"
    net: nn.Module
    opt: torch.optim.Optimizer
    cfg: Any = None

    def state_objects(self) -> dict[str, Any]:
        """Everything with ``state_dict`` / ``load_state_dict`` to checkpoint, by key.

        ``"model"`` is the network (the one ``best.pt`` keeps); optimisers, schedulers and further
        networks get keys of their own (``"optimizer"``, ``"critic"`` ...). Default: ``self.net``
        and ``self.opt``.
        """
        return {"model": self.net, "optimizer": self.opt}

    def config_dict(self) -> dict[str, Any]:
        """The method's options as plain data (stored in the checkpoints and the history); default ``self.cfg``."""
        return asdict(self.cfg) if is_dataclass(self.cfg) and not isinstance(self.cfg, type) else {}

    def before_training(self, resumed: bool) -> None:
        """Called once before the first step (baselines, log lines)."""

    def start_epoch(self, epoch: int) -> None:
        """Called before the steps of ``epoch`` (0-based): train mode (default ``self.net.train()``), lr plans."""
        self.net.train()

    def train_step(self, step: int, epoch: int) -> dict[str, float]:
        """One optimisation step; returns its numbers (at least ``"loss"``)."""
        raise NotImplementedError

    def validate(self, epoch: int, steps: list[dict[str, float]]) -> dict[str, Any]:
        """The history row of ``epoch`` (without ``epoch`` / ``step`` / ``seconds``).

        Args:
            epoch: The epoch (0-based).
            steps: The numbers of this epoch's steps (averaged over the processes).
        """
        loss = [s["loss"] for s in steps]
        return {"loss": float(np.mean(loss)) if loss else math.nan}

    def score(self, row: dict[str, Any]) -> float | None:
        """The row's validation score, lower is better (None: no best checkpoint is kept)."""
        return None

    def best_payload(self, row: dict[str, Any]) -> dict[str, Any]:
        """Extra entries of ``best.pt`` beside the network, epoch, step and metrics."""
        return {}

    def on_best(self, row: dict[str, Any], out: Path | None) -> None:
        """Called on every process when ``row`` is the new best; ``out`` is the run folder on rank 0 (else None).

        Writes the method's extra best files (``best_inference.pt``, a ROC plot ...) into ``out``.
        """

    def epoch_line(self, row: dict[str, Any], improved: bool) -> str:
        """The log line of an epoch."""
        return f"epoch {row['epoch']}: loss {row.get('loss', math.nan):.4f}{'  (best)' if improved else ''}"

    def step_postfix(self, parts: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after a step."""
        return {"loss": f"{parts.get('loss', math.nan):.3f}"}

    def method_state(self) -> dict[str, Any]:
        """The method's own state to resume (plain data: sampler states, baselines ...)."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`method_state`."""

    def history_extra(self) -> dict[str, Any]:
        """Entries of ``history.json`` beside ``config`` and ``history``."""
        return {}

    legacy_best_key: str | None = None
    """Key of the score in the ``best`` entry of the method's checkpoints from before this loop."""
    legacy_higher_is_better = False

    def legacy_method_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """The :meth:`method_state` held in a checkpoint from before this loop."""
        return {}

    def legacy_checkpoint(self, state: dict[str, Any]) -> dict[str, Any]:
        """A ``last.pt`` written by this method's loop before :mod:`.loop` existed, in this loop's layout.

        Default: the hand-written epoch loops' layout (:func:`legacy_checkpoint`) with the keys of
        :meth:`state_objects`, :attr:`legacy_best_key` and :meth:`legacy_method_state`.
        """
        return legacy_checkpoint(state, self.name, best_key=self.legacy_best_key,
                                 higher_is_better=self.legacy_higher_is_better,
                                 method_state=self.legacy_method_state(state), state_keys=tuple(self.state_objects()))

    def export(self, out: Path) -> None:
        """Called on rank 0 at the end, when ``best.pt`` exists (ONNX export ...)."""


@dataclass
class LoopResult:
    """How a run went.

    Attributes:
        history: One row per epoch.
        best: ``{"score", "epoch", "step", "metrics"}`` of the best epoch (epoch -1: none).
        steps: Steps in total.
        epochs_run: Epochs done in total.
        seconds: Elapsed seconds in total.
        stopped_by: ``"epochs"``, ``"max_steps"`` or ``"max_minutes"``.
        last_step: Numbers of the last step.
        out_dir: The run folder.
        world_size: Processes that trained.
        rank: This process's rank.
    """

    history: list[dict[str, Any]]
    best: dict[str, Any]
    steps: int
    epochs_run: int
    seconds: float
    stopped_by: str
    last_step: dict[str, float] = field(default_factory=dict)
    out_dir: str = ""
    world_size: int = 1
    rank: int = 0

    @property
    def stopped_by_budget(self) -> bool:
        """The time budget ended the run."""
        return self.stopped_by == "max_minutes"

    def best_value(self, key: str, default: float) -> float:
        """``key`` of the best epoch's row, ``default`` when no epoch was kept as best."""
        return float(self.best["metrics"][key]) if self.best["epoch"] >= 0 else default


def _no_best() -> dict[str, Any]:
    return {"score": math.inf, "epoch": -1, "step": -1, "metrics": {}}


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file renamed over ``path`` (never half-written)."""
    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def legacy_checkpoint(state: dict[str, Any], method: str, *, best_key: str | None = None,
                      higher_is_better: bool = False, best: dict[str, Any] | None = None,
                      epochs_done: int | None = None, seconds: float | None = None,
                      method_state: dict[str, Any] | None = None,
                      state_keys: tuple[str, ...] = ("model", "optimizer")) -> dict[str, Any]:
    """A ``last.pt`` of the hand-written loops in this loop's layout (for :meth:`TrainMethod.legacy_checkpoint`).

    The epoch-based loops stored ``epoch`` (0-based, the last one run), ``seconds`` and
    ``best = {best_key: score, "epoch": 1-based, ...}``; those are the defaults here.

    Args:
        state: The old ``last.pt``.
        method: The method's name.
        best_key: The score's key in the old ``best`` (``"fpr95"``, ``"accuracy"``); None: no best.
        higher_is_better: The old score grows with quality (stored negated: lower is better here).
        best: The best epoch as ``{"score", "epoch", "step", "metrics"}`` instead of ``best_key``.
        epochs_done: Epochs the old run finished (default ``state["epoch"] + 1``).
        seconds: Its elapsed seconds (default ``state["seconds"]``).
        method_state: The method's own state (:meth:`TrainMethod.method_state`).
        state_keys: The state dicts to carry over.

    Raises:
        ValueError: A state dict or the step is missing.
    """
    missing = [k for k in (*state_keys, "step") if k not in state]
    if missing:
        raise ValueError(f"not a {method} training checkpoint: no {', '.join(missing)}")
    history = list(state.get("history", []))
    if best is None:
        old = dict(state.get("best") or {})
        score = float(old.get(best_key, math.nan)) if best_key else math.nan
        best = legacy_best(history, int(old.get("epoch", -1)), -score if higher_is_better else score)
    out = {k: state[k] for k in state_keys}
    out.update({
        "format": CHECKPOINT_FORMAT, "method": method,
        "epochs_done": int(state["epoch"]) + 1 if epochs_done is None else int(epochs_done),
        "step": int(state["step"]),
        "seconds": float(state.get("seconds", 0.0)) if seconds is None else float(seconds),
        "best": plain_data(best), "history": history, "rng": state.get("rng"), "torch_rng": state.get("torch_rng"),
        "config": state.get("config", {}), "method_state": plain_data(method_state or {}),
    })
    return out


def legacy_best(history: list[dict[str, Any]], epoch: int, score: float) -> dict[str, Any]:
    """``{"score", "epoch", "step", "metrics"}`` of an old checkpoint's best epoch (1-based; -1: none)."""
    if epoch < 0 or not math.isfinite(score):
        return _no_best()
    row = next((dict(r) for r in history if int(r.get("epoch", -2)) == epoch), {})
    return {"score": float(score), "epoch": int(epoch), "step": int(row.get("step", -1)), "metrics": row}


def load_best(module: nn.Module, out: Path) -> nn.Module:
    """``module`` with the network weights of ``out/best.pt`` (for the export at the end)."""
    module.load_state_dict(load_torch_weights(out / "best.pt", "checkpoint")["model"])
    return module


def read_checkpoint(path: str | Path, method: TrainMethod) -> dict[str, Any]:
    """A ``last.pt`` in this loop's layout, read weights-only (older layouts converted).

    Raises:
        ValueError: The file is not a checkpoint, or one of another method.
    """
    state = load_torch_weights(path, "checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {path}: not a training checkpoint (no 'model' entry); give a last.pt")
    if state.get("format") != CHECKPOINT_FORMAT:
        try:
            return method.legacy_checkpoint(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {path}: {exc}") from None
    if state.get("method") != method.name:
        raise ValueError(f"checkpoint {path} is a '{state.get('method')}' run, not '{method.name}'; "
                         f"resume it with sarcoreg-train {state.get('method')}")
    return state


class _History:
    """``history.json`` (per epoch) and ``history.jsonl`` (per step and epoch) of rank 0."""

    def __init__(self, out: Path, name: str, enabled: bool) -> None:
        self.json_path, self.lines_path, self.enabled = out / name, (out / name).with_suffix(".jsonl"), enabled

    def start(self, step: int) -> None:
        """Keep the lines up to ``step`` (a resumed run may have logged steps after its last.pt)."""
        if not self.enabled or not self.lines_path.is_file():
            return
        kept = [ln for ln in self.lines_path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        _write_text_atomic(self.lines_path, "".join(f"{ln}\n" for ln in kept))

    def line(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.lines_path.open("a") as f:
                f.write(json.dumps(plain_data(row)) + "\n")

    def write(self, config: dict[str, Any], history: list[dict[str, Any]], extra: dict[str, Any]) -> None:
        if self.enabled:
            _write_text_atomic(self.json_path, json.dumps({"config": config, **extra, "history": history}, indent=1,
                                                          default=str))


@contextmanager
def _bar(enabled: bool, total: int, desc: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, leave=False)
    try:
        yield bar
    finally:
        bar.close()


class _Clock:
    """Elapsed seconds over resumed runs and the time budget."""

    def __init__(self, spent: float, config: LoopConfig) -> None:
        self.start, self.spent = time.monotonic(), spent
        budget = config.max_minutes * 60.0 if config.max_minutes else math.inf
        self.budget_left = budget - (spent if config.budget_includes_resumed else 0.0)

    def elapsed(self) -> float:
        return self.spent + time.monotonic() - self.start

    def over_budget(self) -> bool:
        return time.monotonic() - self.start > self.budget_left


def _restore(method: TrainMethod, ctx: TrainContext, state: dict[str, Any]) -> None:
    objects = method.state_objects()
    for key, obj in objects.items():
        if key in state and state[key] is not None:
            obj.load_state_dict(state[key])
    if state.get("rng") is not None:
        ctx.rng.bit_generator.state = state["rng"]
    if state.get("torch_rng") is not None:
        torch.set_rng_state(state["torch_rng"])
    method.load_method_state(dict(state.get("method_state") or {}))


def _checkpoint(method: TrainMethod, ctx: TrainContext, *, epochs_done: int, step: int, seconds: float,
                best: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    payload: dict[str, Any] = {k: obj.state_dict() for k, obj in method.state_objects().items()}
    payload.update({
        "format": CHECKPOINT_FORMAT, "method": method.name, "epochs_done": epochs_done, "step": step,
        "seconds": seconds, "best": plain_data(best), "history": plain_data(history),
        "rng": plain_data(ctx.rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
        "config": plain_data(method.config_dict()), "method_state": plain_data(method.method_state()),
    })
    return payload


def run_training(
    make_method: Callable[[TrainContext], TrainMethod],
    out_dir: str | Path,
    config: LoopConfig,
    *,
    resume: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> LoopResult:
    """Build the method on this process's device and train it (see the module docstring).

    Args:
        make_method: Builds the method's networks, optimisers and data from a :class:`TrainContext`
            (called after seeding, before any resume).
        out_dir: The run folder (created on rank 0).
        config: Loop options.
        resume: A ``last.pt`` of an earlier run of the same method: networks, optimisers, step,
            epoch, elapsed time, best, history and random states are restored.
        log: Where rank 0's lines go.

    Returns:
        The :class:`LoopResult` (on every process).
    """
    if config.threads:
        torch.set_num_threads(int(config.threads))
    dist = setup(config.device)
    try:
        return _run(make_method, Path(out_dir), config, dist, resume, log)
    finally:
        dist.close()


def _run(make_method: Callable[[TrainContext], TrainMethod], out: Path, config: LoopConfig, dist: Distributed,
         resume: str | Path | None, log: Callable[[str], None]) -> LoopResult:
    main_log = log if dist.is_main else (lambda _s: None)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ctx = TrainContext(dist, seed_everything(config.seed), config, main_log)
    method = make_method(ctx)
    step, epochs_done, spent = 0, 0, 0.0
    best, history = _no_best(), []
    if resume is not None:
        state = read_checkpoint(resume, method)
        _restore(method, ctx, state)
        step, epochs_done, spent = int(state["step"]), int(state["epochs_done"]), float(state["seconds"])
        best, history = dict(state["best"]), list(state["history"])
        main_log(f"resumed from {resume}: epoch {epochs_done}, step {step}")
    if dist.active:
        main_log(f"DDP: {dist.world_size} processes, {dist.device.type}; batches are split over the processes")
    method.before_training(resume is not None)
    files = _History(out, config.history_name, dist.is_main)
    files.start(step)
    clock = _Clock(spent, config)
    stopped_by = "epochs"
    last: dict[str, float] = {}
    epoch = epochs_done
    while True:
        if config.max_steps is not None and step >= config.max_steps:
            stopped_by = "max_steps"
            break
        if config.epochs is not None and epoch >= config.epochs:
            break
        n = config.steps_per_epoch - (step % config.steps_per_epoch if config.epochs is None else 0)
        if config.max_steps is not None:
            n = min(n, config.max_steps - step)
        method.start_epoch(epoch)
        parts: list[dict[str, float]] = []
        over = False
        with _bar(config.progress and dist.is_main, n, f"{method.label} {epoch + 1}"
                  + (f"/{config.epochs}" if config.epochs else "")) as bar:
            for i in range(n):
                last = dist.mean(method.train_step(step, epoch))
                step += 1
                parts.append(last)
                if config.epochs is None:
                    report_step(step / max(config.max_steps or 1, 1), f"step {step}/{config.max_steps}")
                else:
                    report_epoch_step(epoch, config.epochs, i, n)
                files.line({"kind": "step", "epoch": epoch + 1, "step": step, **last,
                            "seconds": round(clock.elapsed(), 2)})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(method.step_postfix(last))
                if dist.any(clock.over_budget()):
                    over = True
                    break
        row = {"epoch": epoch + 1, "step": step, **method.validate(epoch, parts),
               "seconds": round(clock.elapsed(), 1)}
        history.append(row)
        score = method.score(row)
        improved = score is not None and score < best["score"]
        if score is not None and improved:
            best = {"score": float(score), "epoch": epoch + 1, "step": step, "metrics": plain_data(row)}
            method.on_best(row, out if dist.is_main else None)
            if dist.is_main:
                module = method.state_objects()["model"]
                save_atomic({"format": CHECKPOINT_FORMAT, "method": method.name, "model": module.state_dict(),
                             "epoch": epoch + 1, "step": step, "metrics": plain_data(row),
                             **plain_data(method.best_payload(row))}, out / "best.pt")
        main_log(method.epoch_line(row, improved))
        epoch += 1
        if dist.is_main:
            save_atomic(_checkpoint(method, ctx, epochs_done=epoch, step=step, seconds=clock.elapsed(), best=best,
                                    history=history), out / "last.pt")
            files.line({"kind": "epoch", **row})
            files.write(plain_data(method.config_dict()), plain_data(history), plain_data(method.history_extra()))
        if over:
            stopped_by = "max_minutes"
            main_log(f"stopped: time budget of {config.max_minutes} min used")
            break
    dist.barrier()
    if dist.is_main and (out / "best.pt").is_file():
        method.export(out)
    return LoopResult(history, best, step, epoch, round(clock.elapsed(), 1), stopped_by, last, str(out),
                      dist.world_size, dist.rank)
