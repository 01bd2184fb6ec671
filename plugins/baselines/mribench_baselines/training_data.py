"""Training data of the learned baselines: element-stack batches with random availability from complete volumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.protocol import (draw_availability, draw_training_availability, expand_mask, infer_availability,
                               seeded_rng)
from mribench.tasks import TaskSpec
from mribench.training import progress_task
from mribench_baselines.elements import BRAIN, element_stack

IN_MEMORY_LIMIT_BYTES = 2 * 1024**3  # stack the training set in RAM below this size, else load subjects per step


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
    """Draws element-stack batches with random availability from complete training volumes."""

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
        patterns, prompts = [], []
        with progress_task(progress, "prompts: encoding training patterns", len(self)) as advance:
            for index in range(len(self)):
                masks = draw_training_availability(rng, self.task, bank)
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
        return draw_availability(rng, self.problem, self.task.channels, d, k)

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
            visible = infer_availability(image[None], self.problem)[0] if condition is not None else mask
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
