"""What every learned baseline shares: element views, training batches, conditioning codes, one training loop.

Elements: brain volumes (C, D, H, W) have C elements (modalities), cardiac volumes (1, D, H, W) have D elements
(slices). Every baseline here is a 2D network over an *element stack* (S, N, H, W) of N elements:
brain → one sample per axial slice (S = B·D, N = C); cardiac → one sample per volume (S = B, N = D).

Conditioning: the base methods read the binary availability code (S, N); their "+Prompts" variants read the frozen
CoPeVAE prompt tokens (S, 3, P) instead and never the mask. Where a network needs to know structurally which
elements are present (attention keys, where to put noise), a +Prompts variant infers it from the zero-filled image
(:func:`inferred_availability`), never from ``Batch.availability_mask``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.method import Method, config_hash
from mribench.protocol import Batch, draw_missing, expand_mask, seeded_rng
from mribench.tasks import TaskSpec
from mribench.training import (CSVLog, EMA, TrainState, atomic_torch_save, dist_info, load_checkpoint, progress_task,
                               unwrap, warmup_cosine, wrap_ddp)
from mribench_baselines.plugin import copedit_missing_reason

BRAIN = "missing-modality"
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3  # stack the training set in RAM below this size, else load subjects per step


# -- element views ------------------------------------------------------------------------------------------
def element_stack(volume: torch.Tensor, availability: torch.Tensor, problem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, D, H, W) volumes + (B, C, D) availability → element stack (S, N, H, W) + availability (S, N)."""
    if problem == BRAIN:
        b, c, d, h, w = volume.shape
        return (volume.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w),
                availability.permute(0, 2, 1).reshape(b * d, c))
    return volume[:, 0], availability[:, 0]


def volume_from_stack(stack: torch.Tensor, problem: str, batch_size: int) -> torch.Tensor:
    """Inverse of :func:`element_stack`: (S, N, H, W) → (B, C, D, H, W)."""
    if problem == BRAIN:
        s, n, h, w = stack.shape
        return stack.reshape(batch_size, s // batch_size, n, h, w).permute(0, 2, 1, 3, 4)
    return stack[:, None]


def inferred_availability(image: torch.Tensor, problem: str) -> torch.Tensor:
    """Availability (B, C, D) read off a zero-filled image (B, C, D, H, W): an element that is all zero is missing.

    Brain: a channel is present when any of its voxels is non-zero; cardiac: a slice when any of its pixels is.
    """
    if problem == BRAIN:
        present = image.flatten(2).abs().amax(dim=2) > 0
        return present[:, :, None].expand(image.shape[:3])
    return image.flatten(3).abs().amax(dim=3) > 0


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes (replicate) up to a multiple; returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


# -- conditioning -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodeSpec:
    """What conditions a network: the binary mask code (N values) or prompt tokens (3 × prompt_dim)."""

    n_elements: int
    prompt_dim: int = 0  # 0 = binary mask code

    @property
    def uses_prompts(self) -> bool:
        return self.prompt_dim > 0


class ConditionCode(nn.Module):
    """Binary availability code (S, N) or prompt tokens (S, 3, P) → conditioning vector (S, dim)."""

    def __init__(self, spec: CodeSpec, dim: int):
        super().__init__()
        width = 3 * spec.prompt_dim if spec.uses_prompts else spec.n_elements
        self.net = nn.Sequential(nn.LayerNorm(width) if spec.uses_prompts else nn.Identity(),
                                 nn.Linear(width, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition.flatten(1).float())


# -- configs ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Fields every learned baseline has. ``preset`` names the size (also picks the CoPeVAE preset for +Prompts)."""

    preset: str
    steps: int
    batch_elements: int  # element images per step; see :meth:`samples_per_step`
    lr: float
    warmup_steps: int = 0
    save_every: int = 200
    prompt_bank: int = 8  # +Prompts: missing patterns (and their prompts) precomputed per training subject
    infer_chunk: int = 16  # element-stack samples per forward pass at synthesis
    # True when ``steps`` stops at the 15-minute training cap (2 CPU cores) before the validation plateau
    # (``mribench curve``: twice the steps still gains >= 0.5 dB); the leaderboard footnote marks the method.
    budget_capped: bool = False

    def samples_per_step(self, n_elements: int) -> int:
        """Element stacks per training step: brain (4 contrasts) 32 → 8 slices, cardiac (32 slices) 32 → 1 volume.

        Counting element images rather than stacks makes a step cost about the same on both problems.
        """
        return max(1, self.batch_elements // n_elements)


# -- training data ------------------------------------------------------------------------------------------
@dataclass
class ElementBatch:
    """One training batch of element stacks.

    target: (S, N, H, W) complete elements in [0, 1]; image: the same with missing elements zeroed.
    availability: (S, N) bool, the true pattern (for losses); visible: what the network may use structurally
    (the true pattern for mask methods, the inferred one for +Prompts); condition: code (S, N) or prompts (S, 3, P).
    """

    target: torch.Tensor
    image: torch.Tensor
    availability: torch.Tensor
    visible: torch.Tensor
    condition: torch.Tensor


class TrainingData:
    """Draws element-stack batches with random missing patterns from complete training volumes."""

    def __init__(self, train: SubjectSet, task: TaskSpec):
        if len(train) == 0:
            raise MribenchError(f"task {task.name}: no training subjects")
        self.train, self.task, self.problem = train, task, task.problem
        c, (d, h, w) = task.channels, task.preprocess.shape
        small = len(train) * c * d * h * w * 4 <= IN_MEMORY_LIMIT_BYTES
        self.volumes = train.stack() if small else None
        self.prompts: torch.Tensor | None = None  # (n_subjects, bank, 3, P)
        self.patterns: torch.Tensor | None = None  # (n_subjects, bank, C, D)

    def __len__(self) -> int:
        return len(self.train)

    def volume(self, index: int) -> torch.Tensor:
        if self.volumes is not None:
            return self.volumes[index]
        return torch.from_numpy(self.train[index].image).float()

    def build_prompt_bank(self, tokenizer, bank: int, seed: int, progress) -> None:
        """Draw ``bank`` training patterns per subject and compute their prompts once (the tokenizer is frozen)."""
        rng = seeded_rng("prompt-bank", self.task.name, seed)
        lo, hi = self.task.train_missing
        patterns, prompts = [], []
        with progress_task(progress, "prompts: encoding training patterns", len(self)) as advance:
            for index in range(len(self)):
                masks = torch.from_numpy(np.stack([self._draw(rng, int(rng.integers(lo, hi + 1)))
                                                   for _ in range(bank)]))
                volume = self.volume(index)
                complete = volume[None].expand(bank, *volume.shape)
                image = complete * expand_mask(masks, complete.shape).float()
                with torch.no_grad():
                    prompts.append(tokenizer.prompts(image).float().cpu())
                patterns.append(masks)
                advance()
        self.patterns, self.prompts = torch.stack(patterns), torch.stack(prompts)

    def _draw(self, rng: np.random.Generator, k: int) -> np.ndarray:
        d = self.task.preprocess.shape[0]
        return draw_missing(rng, self.problem, self.task.channels, d, k)

    def batch(self, rng: np.random.Generator, size: int, k_range: tuple[int, int]) -> ElementBatch:
        """``size`` samples; mask methods draw k uniformly in ``k_range``, +Prompts methods use the bank."""
        targets, masks, conditions = [], [], []
        for _ in range(size):
            index = int(rng.integers(len(self)))
            complete = self.volume(index)
            if self.prompts is not None:
                entry = int(rng.integers(self.prompts.shape[1]))
                mask, condition = self.patterns[index, entry], self.prompts[index, entry]
            else:
                mask = torch.from_numpy(self._draw(rng, int(rng.integers(k_range[0], k_range[1] + 1))))
                condition = None
            image = complete * expand_mask(mask[None], complete[None].shape)[0].float()
            visible = inferred_availability(image[None], self.problem)[0] if condition is not None else mask
            stack, availability = element_stack(complete[None], mask[None], self.problem)
            visible = element_stack(image[None], visible[None], self.problem)[1]
            if self.problem == BRAIN:  # one axial slice of the volume
                d = int(rng.integers(stack.shape[0]))
                stack, availability, visible = stack[d:d + 1], availability[d:d + 1], visible[d:d + 1]
            targets.append(stack)
            masks.append(torch.stack([availability[0], visible[0]]))
            conditions.append(condition[None] if condition is not None else availability.float())
        target = torch.cat(targets)
        both = torch.stack(masks)
        availability, visible = both[:, 0], both[:, 1]
        image = target * availability[..., None, None].float()
        return ElementBatch(target, image, availability, visible, torch.cat(conditions))


def missing_l1(prediction: torch.Tensor, batch: ElementBatch) -> torch.Tensor:
    """Mean absolute error over the missing elements of a batch."""
    missing = (~batch.availability)[..., None, None].expand_as(prediction)
    return (prediction - batch.target).abs()[missing].mean()


# -- the generic method -------------------------------------------------------------------------------------
def frozen_tokenizer(train: SubjectSet, task: TaskSpec, preset: str, seed: int, shared_dir: Path | None,
                     progress):
    """CoPeDiT's frozen CoPeVAE tokenizer from the copedit plugin, found through the registry."""
    from mribench.plugins import registry

    registry().method("copedit")  # raises a clear error when the plugin is absent
    from mribench_copedit.api import frozen_tokenizer as copedit_tokenizer

    if shared_dir is None:
        raise MribenchError(f"task {task.name}: +Prompts methods need the runner's shared folder for the tokenizer")
    return copedit_tokenizer(train, task, preset, seed, shared_dir, progress)


def restore_tokenizer(state: dict[str, Any], task: TaskSpec, preset: str):
    """Rebuild the frozen CoPeVAE saved in a +Prompts checkpoint (as the copedit method restores its own)."""
    from mribench_copedit.presets import PRESETS
    from mribench_copedit.trainer import build_tokenizer, freeze

    tokenizer = build_tokenizer(PRESETS[preset].for_problem(task.problem).tokenizer, task)
    tokenizer.load_state_dict(state)
    return freeze(tokenizer)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Zero the optimiser's gradients, backpropagate ``loss`` and take one step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


class ElementMethod(Method):
    """A 2D element-stack baseline. Subclasses define the networks, one training step and one prediction.

    Subclass hooks: ``build_networks(spec) -> dict of modules``, ``build_optimizers() -> dict of optimisers``,
    ``train_step(batch, step) -> dict of losses``, ``predict(image, visible, condition) -> (S, N, H, W)``
    (image in [0, 1]), optionally ``ema_of`` (name of the network whose EMA is used at synthesis) and
    ``k_range(step)`` (curriculum).
    """

    uses_prompts: ClassVar[bool] = False
    calls_step_hook = True
    ema_of: ClassVar[str | None] = None
    default_prompt_dim: ClassVar[int] = 512  # the paper's prompt width; the tokenizer's own width wins in fit

    def __init__(self, config: Any, seed: int = 0):
        super().__init__(config, seed)
        self.nets: dict[str, nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.ema: EMA | None = None
        self.task: TaskSpec | None = None
        self.spec: CodeSpec | None = None
        self._tokenizer = None

    # -- hooks ----------------------------------------------------------------------------------------------
    def build_networks(self, spec: CodeSpec) -> dict[str, nn.Module]:
        raise NotImplementedError

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: ElementBatch, step: int) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, image: torch.Tensor, visible: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def k_range(self, step: int) -> tuple[int, int]:
        return tuple(self.task.train_missing)

    # -- availability and description -----------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls) -> str | None:
        return copedit_missing_reason() if cls.uses_prompts else None

    @classmethod
    def describe(cls, preset: str, task: TaskSpec | None = None) -> dict[str, Any]:
        n = task.n_elements if task is not None else 4
        method = cls(cls.presets[preset])
        spec = CodeSpec(n, cls.default_prompt_dim if cls.uses_prompts else 0)
        facts: dict[str, Any] = {"elements": n, "backbone": "2D over element stacks"}
        if cls.uses_prompts:
            facts["prompt_dim"] = f"{spec.prompt_dim} (assumed; the tokenizer's width is used in fit)"
        for name, net in method.build_networks(spec).items():
            facts[f"params_{name}"] = sum(p.numel() for p in net.parameters())
        return facts

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        workdir = Path(workdir)
        self.task = task
        data = TrainingData(train, task)
        prompt_dim = 0
        if self.uses_prompts:
            self._tokenizer = frozen_tokenizer(train, task, self.config.preset, self.seed, self.shared_dir, progress)
            bank_path = workdir / "prompt_bank.pt"
            if bank_path.exists():
                saved = load_checkpoint(bank_path, expect={"config_hash": config_hash(self.config)})
                data.patterns, data.prompts = saved["patterns"], saved["prompts"]
            else:
                data.build_prompt_bank(self._tokenizer, self.config.prompt_bank, self.seed, progress)
                atomic_torch_save({"config_hash": config_hash(self.config), "patterns": data.patterns,
                                   "prompts": data.prompts}, bank_path)
            prompt_dim = int(data.prompts.shape[-1])
        self._build(CodeSpec(task.n_elements, prompt_dim))
        self.nets = {name: wrap_ddp(net) for name, net in self.nets.items()}
        total, batch_size = self.config.steps, self.config.samples_per_step(task.n_elements)
        scheds = {name: warmup_cosine(opt, self.config.warmup_steps, total) for name, opt in self.opts.items()}
        objects: dict[str, Any] = {**self.nets, **{f"opt_{k}": v for k, v in self.opts.items()},
                                   **{f"sched_{k}": v for k, v in scheds.items()}}
        if self.ema is not None:
            objects["ema"] = self.ema
        state = TrainState(workdir / "train.pt", config_hash(self.config), **objects)
        start = state.resume()
        training_seconds = float(state.extra.get("training_seconds", 0.0))
        log = CSVLog(workdir / "losses.csv")
        rank = dist_info().rank  # each DDP rank draws its own batches
        for net in self.nets.values():
            net.train()
        with progress_task(progress, f"{self.name}: training", total, start) as advance:
            for step in range(start, total):
                started = time.perf_counter()
                rng = seeded_rng("train-batch", self.name, self.seed, step, rank)
                batch = data.batch(rng, batch_size, self.k_range(step))
                losses = self.train_step(batch, step)
                for sched in scheds.values():
                    sched.step()
                if self.ema is not None:
                    self.ema.update(self.nets[self.ema_of])
                log.write(step=step + 1, **losses)
                advance(**losses)
                training_seconds += time.perf_counter() - started
                self.after_training_step(step + 1, training_seconds)  # before saving: a kill inside it repeats it
                state.extra["training_seconds"] = training_seconds
                state.maybe_save(step + 1, self.config.save_every, total)
        self.nets = {name: unwrap(net).eval() for name, net in self.nets.items()}

    @contextmanager
    def synthesis_ready(self) -> Iterator[None]:
        """Unwrapped networks in eval mode (the EMA copy where there is one, as after fit); training mode after."""
        wrapped = self.nets
        self.nets = {name: unwrap(net).eval() for name, net in wrapped.items()}
        try:
            yield
        finally:
            self.nets = wrapped
            for net in wrapped.values():
                net.train()

    def _build(self, spec: CodeSpec) -> None:
        self.spec = spec
        self.nets = self.build_networks(spec)
        self.opts = self.build_optimizers()
        self.ema = EMA(self.nets[self.ema_of], self.config.ema_decay) if self.ema_of else None

    def parameter_count(self) -> int:
        """Every network fit trains (a GAN's discriminator included; +Prompts' frozen tokenizer excluded)."""
        return sum(p.numel() for net in self.nets.values() for p in unwrap(net).parameters())

    # -- synthesis ------------------------------------------------------------------------------------------
    def _inference_nets(self) -> dict[str, nn.Module]:
        if self.ema is None:
            return self.nets
        return {**self.nets, self.ema_of: self.ema.model}

    @torch.no_grad()
    def synthesize(self, batch: Batch) -> torch.Tensor:
        """(B, C, D, H, W) in [0, 1] with missing elements filled; observed elements are written back."""
        problem, b = self.task.problem, batch.image.shape[0]
        if self.uses_prompts:
            visible_volume = inferred_availability(batch.image, problem)
            prompts = self._tokenizer.prompts(batch.image).float()
        else:
            visible_volume = batch.availability_mask.bool()
        image, visible = element_stack(batch.image.float(), visible_volume, problem)
        if self.uses_prompts:
            per_volume = image.shape[0] // b
            condition = prompts.repeat_interleave(per_volume, dim=0)
        else:
            condition = visible.float()
        chunk = self.config.infer_chunk
        outputs = [self.predict(image[i:i + chunk], visible[i:i + chunk], condition[i:i + chunk])
                   for i in range(0, image.shape[0], chunk)]
        filled = torch.where(visible[..., None, None], image, torch.cat(outputs).clamp(0, 1))
        return volume_from_stack(filled, problem, b).contiguous()

    # -- state ----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        nets = self._inference_nets()
        state = {"n_elements": self.spec.n_elements, "prompt_dim": self.spec.prompt_dim,
                 "nets": {name: net.state_dict() for name, net in nets.items()}}
        if self.uses_prompts:  # the frozen tokenizer travels with the checkpoint, as CoPeDiT's does
            state["tokenizer"] = self._tokenizer.state_dict()
        return state

    def load_state(self, state: dict[str, Any], task: TaskSpec) -> None:
        if int(state["n_elements"]) != task.n_elements:
            raise MribenchError(f"task {task.name}: checkpoint has {state['n_elements']} elements, task has "
                                f"{task.n_elements}")
        self.task = task
        self.spec = CodeSpec(int(state["n_elements"]), int(state["prompt_dim"]))
        self.nets = self.build_networks(self.spec)
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
            net.eval()
        self.ema = None
        if self.uses_prompts:
            self._tokenizer = restore_tokenizer(state["tokenizer"], task, self.config.preset)

