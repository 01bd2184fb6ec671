"""The element-method fit loop every learned 2D baseline shares (MMGAN, MMT, M2DN, Hyper-GAE, their +Prompts
variants): configs, resumable training with EMA and the step hook, synthesis over element stacks, state."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.method import Method, config_hash
from mribench.protocol import Batch, infer_availability, seeded_rng
from mribench.tasks import TaskSpec
from mribench.training import (CSVLog, EMA, TrainState, atomic_torch_save, dist_info, load_checkpoint, progress_task,
                               unwrap, warmup_cosine, wrap_ddp)
from mribench_baselines.conditioning import CodeSpec, prompt_provider
from mribench_baselines.elements import element_stack, volume_from_stack
from mribench_baselines.plugin import prompt_provider_missing_reason
from mribench_baselines.training_data import ElementBatch, TrainingData


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
        return prompt_provider_missing_reason() if cls.uses_prompts else None

    @classmethod
    def describe(cls, preset: str, task: TaskSpec | None = None) -> dict[str, Any]:
        n = task.n_elements if task is not None else 4
        method = cls(cls.preset_config(preset, task.problem) if task is not None else cls.presets[preset])
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
            provider = prompt_provider()
            if self.shared_dir is None:
                raise MribenchError(f"task {task.name}: +Prompts methods need the runner's shared folder for the "
                                    "tokenizer")
            self._tokenizer = provider.frozen_tokenizer(train, task, self.config.preset, self.seed, self.shared_dir,
                                                        progress)
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
            visible_volume = infer_availability(batch.image, problem)
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
            self._tokenizer = prompt_provider().restore_tokenizer(state["tokenizer"], task, self.config.preset)
