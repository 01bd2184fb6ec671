"""The ``copedit`` method: CoPeVAE prompts + MDiT3D latent diffusion, one model per dataset for every missing count."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch

from mribench.data.base import SubjectSet
from mribench.method import AblationRow, Method
from mribench.protocol import Batch
from mribench.tasks import TaskSpec
from mribench_copedit.data import TrainImages
from mribench_copedit.diffusers import build_network, conditioning
from mribench_copedit.presets import PRESETS, CoPeDiTConfig
from mribench_copedit.sample import sample
from mribench_copedit.stage1 import (build_tokenizer, restore_tokenizer, tokenizer_folder, tokenizer_report,
                                     train_tokenizer)
from mribench_copedit.stage2 import train_diffusion
from mribench_copedit.tokenizer import build_discriminator, count_parameters, perceptual_weights
from mribench_copedit.variants import FULL_PSNR, REPORTED_TASK, TABLES, table_order

REFERENCE_TASKS = {
    # The paper's shapes, used by describe() when no task is given.
    "missing-modality": {"elements": ["t1", "t1ce", "t2", "flair"], "shape": (64, 192, 192), "train_missing": (1, 3)},
    "missing-slice": {"elements": 32, "shape": (32, 192, 192), "train_missing": (8, 24)},
}


def paper_row(table: str, row: str, place: int, reported_psnr: float | None) -> AblationRow:
    """The row ``row`` at ``place`` of the paper's ablation table ``table``, with the paper's PSNR (if any)."""
    reported = {REPORTED_TASK: {"psnr": reported_psnr}} if reported_psnr is not None else {}
    return AblationRow(table, row, table_order(table, place), reported)


class CoPeDiT(Method):
    """CoPeDiT (completeness perception + MDiT3D). Stage I trains CoPeVAE in the dataset's shared folder (reused by
    the +Prompts baselines), stage II trains the diffuser on latents encoded once per subject.

    At synthesis it never reads ``batch.availability_mask``: the prompts and the observed latents come from the
    zero-filled image alone (missing elements are the all-zero modality channels / slices).
    """

    name: ClassVar[str] = "copedit"
    display_name: ClassVar[str] = "CoPeDiT"
    version: ClassVar[str] = "0.1.0"
    presets: ClassVar[dict[str, CoPeDiTConfig]] = PRESETS
    reads_mask: ClassVar[bool] = False
    family: ClassVar[str] = "proposed"
    # the full model: the reference row of every ablation table
    ablation_rows: ClassVar[tuple[AblationRow, ...]] = tuple(paper_row(table, row, 0, FULL_PSNR)
                                                            for table, row in TABLES.items())
    calls_step_hook: ClassVar[bool] = True  # the hook follows stage II (the diffuser); stage I runs before it
    summary: ClassVar[str] = "CoPeDiT: CoPeVAE completeness prompts + MDiT3D latent diffusion (DDIM)"

    def __init__(self, config: CoPeDiTConfig, seed: int = 0):
        super().__init__(config, seed)
        self.problem: str | None = None
        self.tokenizer = None
        self.network = None
        self.latent_scale = 1.0
        self.training_report: dict[str, Any] = {}

    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        settings = self.config.for_problem(task.problem)
        images = TrainImages(train, task)
        shared = self.shared_dir if self.shared_dir is not None else Path(workdir) / "shared"
        self.tokenizer, facts = train_tokenizer(
            settings.tokenizer, task, images, tokenizer_folder(shared, self.config.preset, self.seed), self.seed,
            progress)
        held_out = (TrainImages(self.validation, task), "validation") if self.validation else (images, "train")
        tokenizer_quality = tokenizer_report(self.tokenizer, task, held_out[0], self.seed, split=held_out[1])
        self.problem = task.problem

        def after_step(step: int, training_seconds: float, network, latent_scale: float) -> None:
            self.network, self.latent_scale = network, latent_scale
            self.after_training_step(step, training_seconds)

        self.network, self.latent_scale = train_diffusion(
            settings.diffusion, self.tokenizer, facts["tokenizer_hash"], task, images, Path(workdir),
            self.seed, progress, after_step=after_step if self.step_hook is not None else None)
        self.training_report = {"tokenizer": {**facts, **tokenizer_quality}, "latent_scale": self.latent_scale}

    def synthesize(self, batch: Batch) -> torch.Tensor:
        """(B, C, D, H, W) complete volumes; reads ``batch.image`` only (seeded by the global torch RNG)."""
        return self.synthesize_with_prompts(batch, None)

    def synthesize_with_prompts(self, batch: Batch, prompts: torch.Tensor | None) -> torch.Tensor:
        """``synthesize`` with the prompts ``(B, 3, P)`` given instead of read from the input (the prompt analyses);
        ``None`` reads them as ``synthesize`` does. Same RNG use, so ``prompts_of(batch)`` reproduces ``synthesize``."""
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return sample(self.network, self.tokenizer, self.latent_scale, self.config.for_problem(self.problem).diffusion,
                      batch.image.float(), self.problem, generator, prompts=prompts)

    def prompts_of(self, batch: Batch) -> torch.Tensor:
        """The prompts ``(B, 3, P)`` (count, position, assessment) the diffuser receives for ``batch``, read from the
        zero-filled image alone (unused prompts zeroed as the config says)."""
        diffusion = self.config.for_problem(self.problem).diffusion
        available_latents, _ = self.tokenizer.available_latents(batch.image.float())
        return conditioning(self.tokenizer, available_latents, None, diffusion, self.problem)["prompts"]

    def report(self) -> dict[str, Any]:
        return self.training_report

    # -- the step hook: it follows stage II ---------------------------------------------------------------------
    @classmethod
    def hooked_steps(cls, config: CoPeDiTConfig) -> int:
        """Stage II steps (every preset gives both problems the same count)."""
        return max(config.brain.diffusion.steps, config.cardiac.diffusion.steps)

    @classmethod
    def with_hooked_steps(cls, config: CoPeDiTConfig, steps: int) -> CoPeDiTConfig:
        """``config`` with stage II running ``steps`` steps (stage I, and so the shared tokenizer, unchanged)."""
        return config.with_diffusion(steps=steps)

    @contextmanager
    def synthesis_ready(self) -> Iterator[None]:
        """Nothing to switch: at every hooked step ``self.network`` is the EMA diffuser in eval mode (the copy
        ``synthesize`` uses after fit) and the tokenizer is frozen; the training network is never touched."""
        yield

    # -- training facts (the leaderboard footnote) ---------------------------------------------------------------
    @classmethod
    def training_steps(cls, config: CoPeDiTConfig) -> int:
        """Stage I + stage II steps (the larger of the brain and cardiac totals; every preset gives both the same)."""
        return max(p.tokenizer.steps + p.diffusion.steps for p in (config.brain, config.cardiac))

    def parameter_count(self) -> int | None:
        """The trained tokenizer (autoencoder, prompt encoders, heads) plus the diffuser; the stage-I discriminator,
        which synthesis does not use, is not counted."""
        if self.tokenizer is None or self.network is None:
            return None
        return sum(p.numel() for module in (self.tokenizer, self.network) for p in module.parameters())

    def state(self) -> dict[str, Any]:
        return {"problem": self.problem, "tokenizer": self.tokenizer.state_dict(),
                "network": self.network.state_dict(), "latent_scale": self.latent_scale,
                "report": self.training_report}

    def load_state(self, state: dict[str, Any], task: TaskSpec) -> None:
        settings = self.config.for_problem(task.problem)
        self.problem = task.problem
        self.tokenizer = restore_tokenizer(settings.tokenizer, task, state["tokenizer"])
        self.network = build_network(settings.diffusion, settings.tokenizer, task)
        self.network.load_state_dict(state["network"])
        self.network.eval().requires_grad_(False)
        self.latent_scale = float(state["latent_scale"])
        self.training_report = state["report"]

    @classmethod
    def describe(cls, preset: str, task: TaskSpec | None = None) -> dict[str, Any]:
        """Trainable parameter counts of the preset's networks (for ``task``, else for the paper's brain and
        cardiac shapes)."""
        tasks = [task] if task is not None else [reference_task(problem) for problem in REFERENCE_TASKS]
        config = cls.presets[preset]
        perceptual = perceptual_weights()
        facts: dict[str, Any] = {}
        for spec in tasks:
            settings = config.for_problem(spec.problem)
            tokenizer = build_tokenizer(settings.tokenizer, spec)
            network = build_network(settings.diffusion, settings.tokenizer, spec)
            facts[spec.problem] = {
                "shape": list(spec.preprocess.shape), "elements": spec.n_elements,
                "tokenizer_autoencoder": count_parameters(tokenizer.vqvae),
                "prompt_encoders": count_parameters(tokenizer.prompt_encoders),
                "pretext_heads": count_parameters(tokenizer.heads),
                "discriminator": count_parameters(build_discriminator(settings.tokenizer)),
                f"diffuser ({settings.diffusion.network}, {settings.diffusion.diffuser})": count_parameters(network),
                "codebook": settings.tokenizer.codebook_size, "prompt_dim": settings.tokenizer.prompt_dim,
                "stage1_steps": settings.tokenizer.steps, "stage2_steps": settings.diffusion.steps,
                "ddim_steps": settings.diffusion.sample_steps,
                "perceptual": perceptual or "off (no $MRIBENCH_WEIGHTS/resnet50-imagenet.pth)",
            }
        return facts


def reference_task(problem: str) -> TaskSpec:
    """A TaskSpec with the paper's shapes for ``problem`` (only used to size networks)."""
    ref = REFERENCE_TASKS[problem]
    return TaskSpec.model_validate({
        "name": f"reference-{problem}", "version": 1, "description": "paper shapes", "dataset": "reference",
        "problem": problem, "elements": ref["elements"], "missing": ref["train_missing"][0],
        "train_missing": ref["train_missing"], "split": {"rule": "ratio", "test_fraction": 0.2},
        "preprocess": {"shape": ref["shape"]}, "metrics": []})


def ablation(preset: str, **changes) -> CoPeDiTConfig:
    """A preset with stage II switches changed, e.g. ``ablation("cpu", condition="none")`` or
    ``ablation("cpu", prompts_used=("count", "assessment"))``; the tokenizer (stage I) is shared with the preset."""
    return PRESETS[preset].with_diffusion(**changes)
