"""Tiny synthetic tasks and subject sets for CoPeDiT's tests (no phantoms, no files); also used by the DDP worker."""
from __future__ import annotations

import numpy as np

from mribench.data.base import Subject, SubjectSet
from mribench.tasks import TaskSpec

SHAPE = (16, 16, 16)


def make_task(problem: str) -> TaskSpec:
    brain = problem == "missing-modality"
    return TaskSpec.model_validate({
        "name": f"tiny-{'brain' if brain else 'cardiac'}", "version": 1, "description": "test", "dataset": "tiny",
        "problem": problem, "elements": ["t1", "t1ce", "t2", "flair"] if brain else SHAPE[0],
        "missing": 1 if brain else 4, "train_missing": (1, 3) if brain else (4, 8),
        "split": {"rule": "ratio", "test_fraction": 0.25}, "preprocess": {"shape": SHAPE}, "metrics": []})


def synthetic_volume(subject_id: str, channels: int) -> np.ndarray:
    """A blob at a subject-specific place; modalities are different intensity maps of it. Values in (0, 1]."""
    rng = np.random.default_rng(int(subject_id.split("-")[1]))
    d, h, w = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    centre = rng.uniform(-0.3, 0.3, 3)
    radius = rng.uniform(0.4, 0.7)
    blob = np.exp(-((d - centre[0]) ** 2 + (h - centre[1]) ** 2 + (w - centre[2]) ** 2) / radius**2)
    image = np.stack([(0.5 + 0.5 * c / max(1, channels - 1)) * blob ** (1 + c % 2) for c in range(channels)])
    return image.astype(np.float32)


def make_subjects(task: TaskSpec, n: int = 6, first: int = 0) -> SubjectSet:
    """``n`` subjects numbered from ``first`` (tests take held-out ones with another ``first``)."""
    ids = [f"sub-{i:03d}" for i in range(first, first + n)]
    return SubjectSet(ids, lambda sid: Subject(sid, synthetic_volume(sid, task.channels), np.eye(4)))
