"""CoPeDiT's training volumes, shared by both stages: the training set (in memory when it fits), in-plane flips and
crops, zero filling."""
from __future__ import annotations

import math

import numpy as np
import torch

from mribench.data.base import SubjectSet
from mribench.errors import BadDataError
from mribench.tasks import TaskSpec

MEMORY_BUDGET_BYTES = 2 * 1024**3
FLIP_VARIANTS = ((False, False), (True, False), (False, True), (True, True))  # (flip H, flip W); index 0 = none


class TrainImages:
    """Training volumes (C, D, H, W): held in memory when they fit ``MEMORY_BUDGET_BYTES``, else loaded per batch."""

    def __init__(self, train: SubjectSet, task: TaskSpec):
        self.train, self.task = train, task
        self.shape = (task.channels, *task.preprocess.shape)
        if len(train) == 0:
            raise BadDataError(f"task {task.name}: no training subjects")
        volume_bytes = 4 * math.prod(self.shape)
        self.memory = ([self._load(i) for i in range(len(train))]
                       if volume_bytes * len(train) <= MEMORY_BUDGET_BYTES else None)

    def __len__(self) -> int:
        return len(self.train)

    def _load(self, index: int) -> torch.Tensor:
        subject = self.train[index]
        if tuple(subject.image.shape) != self.shape:
            raise BadDataError(f"subject {subject.subject_id}: image shape {tuple(subject.image.shape)}, task "
                               f"{self.task.name} needs {self.shape}")
        return torch.from_numpy(np.array(subject.image, dtype=np.float32))

    def batch(self, indices) -> torch.Tensor:
        """(B, C, D, H, W) float32 for the given subject indices."""
        return torch.stack([self.memory[i] if self.memory is not None else self._load(i) for i in indices])


def flip_in_plane(tensor: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
    """Flip each sample's last two axes where ``flips`` (B, 2) bool says so (volumes and latents alike)."""
    out = tensor.clone()
    for index, (flip_h, flip_w) in enumerate(flips):
        dims = [d for d, flip in ((-2, flip_h), (-1, flip_w)) if flip]
        if dims:
            out[index] = tensor[index].flip(dims)
    return out


def random_crop(rng: np.random.Generator, plane: tuple[int, int], size: tuple[int, int] | None
                ) -> tuple[int, int, int, int] | None:
    """A random in-plane window (h0, w0, height, width) of ``size`` (clipped to the plane), or None."""
    if size is None:
        return None
    height, width = min(size[0], plane[0]), min(size[1], plane[1])
    return (int(rng.integers(0, plane[0] - height + 1)), int(rng.integers(0, plane[1] - width + 1)), height, width)


def zero_fill(complete: torch.Tensor, availability_mask: torch.Tensor) -> torch.Tensor:
    return complete * availability_mask[..., None, None].to(complete.dtype)
