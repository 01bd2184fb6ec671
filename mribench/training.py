"""Shared by every trainable method: seeding, device and torchrun/DDP set-up, atomic resumable checkpoints,
EMA, warm-up cosine learning rate (progress is :mod:`mribench.progress`, re-exported here).

A training loop built from these pieces resumes after a kill: it saves a checkpoint every ``save_every`` steps
(atomically) and, when restarted with the same workdir, continues from the last one with the same torch, numpy and
Python RNG state. Numpy generators a loop creates itself must be derived from the step
(``np.random.default_rng([seed, step])``) so a resumed run draws what an uninterrupted one would.
"""
from __future__ import annotations

import copy
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mribench.atomic import atomic_path
from mribench.errors import CheckpointMismatchError, MribenchError
# re-exported: the training loops of the plugins report progress through this module
from mribench.progress import make_progress, progress_task  # noqa: F401


# -- seeding and devices -------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch; CPU results are then repeatable run to run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, NCCL on GPU); else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def default_device() -> torch.device:
    info = dist_info()
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def barrier() -> None:
    if dist_info().distributed:
        dist.barrier()


def wrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else the model itself."""
    if not dist_info().distributed:
        return model
    device = default_device()
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# -- checkpoints ---------------------------------------------------------------------------------------------
class UnreadableCheckpointError(MribenchError):
    """A checkpoint file that exists but cannot be read (truncated, corrupt, not a checkpoint)."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save, atomically (a kill never leaves a half-written checkpoint) and reproducibly: the same object gives
    the same bytes, hence the same SHA-256. torch.save names the entries of its zip archive after the file it is
    given (here a random temp name); saved through an open file object they get torch's fixed name instead."""
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        torch.save(obj, handle)


def load_checkpoint(path: Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Safe load (``weights_only=True``); refuses a checkpoint whose ``expect`` entries differ."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MribenchError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # noqa: BLE001 - corrupt/truncated files raise many types
        raise UnreadableCheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}); delete it to retrain") \
            from None
    for key, value in (expect or {}).items():
        if payload.get(key) != value:
            raise CheckpointMismatchError(
                f"{path}: checkpoint was written with {key}={payload.get(key)!r}, this run needs {value!r} "
                "(another config?); use --overwrite always to retrain"
            )
    return payload


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": _python_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.asarray(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


class TrainState:
    """A resumable training stage: models, optimisers, schedulers, EMA and step, saved atomically to one file.

    Usage::

        state = TrainState(workdir / "stage1.pt", config_hash, model=net, opt=opt, sched=sched, ema=ema)
        start = state.resume()          # 0, or the step after the last checkpoint
        for step in range(start, total):
            ...
            state.maybe_save(step + 1, every=100)
    """

    def __init__(self, path: Path, config_hash: str, **objects: Any):
        self.path = Path(path)
        self.config_hash = config_hash
        self.objects = objects
        self.extra: dict[str, Any] = {}

    def resume(self) -> int:
        if not self.path.exists():
            return 0
        payload = load_checkpoint(self.path, expect={"config_hash": self.config_hash})
        for name, obj in self.objects.items():
            unwrap(obj).load_state_dict(payload["objects"][name]) if isinstance(obj, torch.nn.Module) \
                else obj.load_state_dict(payload["objects"][name])
        set_rng_state(payload["rng"])
        self.extra = payload.get("extra", {})
        return int(payload["step"])

    def save(self, step: int) -> None:
        if not dist_info().is_main:
            return
        objects = {name: (unwrap(obj).state_dict() if isinstance(obj, torch.nn.Module) else obj.state_dict())
                   for name, obj in self.objects.items()}
        atomic_torch_save({"config_hash": self.config_hash, "step": step, "objects": objects, "rng": rng_state(),
                           "extra": self.extra}, self.path)

    def maybe_save(self, step: int, every: int, total: int) -> None:
        if step % max(1, every) == 0 or step == total:
            self.save(step)


# -- EMA and schedules ---------------------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a model's parameters (decay e.g. 0.9999), with its own state dict."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), unwrap(model).parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), unwrap(model).buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base LR over ``warmup_steps``, then cosine decay to ``min_factor`` × base."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class CSVLog:
    """Append-only CSV of per-step losses (header written once; resumes by appending)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._header: list[str] | None = None
        if self.path.exists():
            first = self.path.read_text().splitlines()[:1]
            self._header = first[0].split(",") if first else None

    def write(self, **row: Any) -> None:
        if not dist_info().is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            if self._header is None:
                self._header = list(row)
                fh.write(",".join(self._header) + "\n")
            fh.write(",".join(f"{row.get(k, '')}" for k in self._header) + "\n")
