"""Tiny synthetic tasks and subjects for the baseline tests: smooth, correlated elements (learning is measurable)."""
from __future__ import annotations

import numpy as np
import torch

from mribench.data.base import Subject, SubjectSet
from mribench.protocol import Batch, evaluation_pattern
from mribench.tasks import TaskSpec

SHAPE = (8, 16, 16)


def make_task(problem: str, missing: int = 1, shape: tuple[int, int, int] = SHAPE) -> TaskSpec:
    """A small brain (C=3) or cardiac (D slices) task."""
    brain = problem == "missing-modality"
    return TaskSpec.model_validate({
        "name": f"tiny-{'brain' if brain else 'cardiac'}", "version": 1, "description": "test", "dataset": "tiny",
        "problem": problem, "elements": ["A", "B", "C"] if brain else shape[0], "missing": missing,
        "train_missing": [1, 2] if brain else [2, 4], "split": {"rule": "ratio", "test_fraction": 0.25},
        "preprocess": {"shape": list(shape)}, "metrics": [{"name": "psnr"}]})


def _volume(rng: np.random.Generator, problem: str, shape: tuple[int, int, int]) -> np.ndarray:
    d, h, w = shape
    zz, yy, xx = np.meshgrid(np.linspace(-1, 1, d), np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    radius = 0.5 + 0.3 * rng.random()
    shift = 0.2 * rng.standard_normal(2)
    blob = np.clip(1.2 - ((yy - shift[0]) ** 2 + (xx - shift[1]) ** 2 + 0.3 * zz ** 2) / radius ** 2, 0, 1)
    if problem == "missing-modality":  # three contrasts: bright, inverted inside, squared
        return np.stack([blob, (blob > 0) * (1 - 0.7 * blob), blob ** 2]).astype(np.float32)
    return blob[None].astype(np.float32)


def make_subjects(problem: str, n: int, seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> SubjectSet:
    rng = np.random.default_rng(seed)
    subjects = {f"s{i:02d}": Subject(f"s{i:02d}", _volume(rng, problem, shape), np.eye(4)) for i in range(n)}
    return SubjectSet(sorted(subjects), subjects.__getitem__)


def make_batch(task: TaskSpec, subjects: SubjectSet, index: int = 0) -> tuple[Batch, torch.Tensor]:
    """A one-subject test batch and its complete volume (1, C, D, H, W)."""
    subject = subjects[index]
    complete = torch.from_numpy(subject.image)[None]
    mask = torch.from_numpy(evaluation_pattern(task, subject.subject_id))[None]
    return Batch.from_complete(complete, mask, [subject.subject_id], {"affine": torch.eye(4)[None]}), complete
