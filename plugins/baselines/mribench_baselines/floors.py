"""Floors: simple methods every missing-data paper reports. They exercise the pipeline and set the bar to beat.

zero-fill        leaves the missing elements at 0.
mean-available   brain: the voxel-wise mean of the observed modalities; cardiac: the mean of the two observed
                 slices bordering the missing run (one at the edge of the stack).
nearest-contrast brain: copies the observed modality that best predicts the missing one, through a per-pair linear
                 intensity map fitted on the training foreground.
slice-interp     cardiac: linear interpolation across the missing run from its two neighbouring slices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mribench.data.base import SubjectSet
from mribench.method import Method
from mribench.protocol import Batch
from mribench.tasks import TaskSpec
from mribench.training import progress_task


@dataclass(frozen=True)
class FloorConfig:
    """Floors have no size; ``max_train_subjects`` bounds what nearest-contrast reads in ``fit``."""

    max_train_subjects: int = 0  # 0 = all


_SAME_FOR_ALL_PRESETS = {"smoke": FloorConfig(max_train_subjects=8), "cpu": FloorConfig(), "paper": FloorConfig()}


class _Floor(Method):
    """A floor that learns nothing: ``fit`` and ``state`` are empty."""

    presets = _SAME_FOR_ALL_PRESETS
    family = "floor"

    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        self.problem = task.problem

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any], task: TaskSpec) -> None:
        self.problem = task.problem


class ZeroFill(_Floor):
    name = "zero-fill"
    summary = "missing elements stay 0"

    def synthesize(self, batch: Batch) -> torch.Tensor:
        return batch.image.clone()


class MeanAvailable(_Floor):
    name = "mean-available"
    summary = "mean of the observed modalities / of the slices bordering the missing run"

    def synthesize(self, batch: Batch) -> torch.Tensor:
        if self.problem == "missing-modality":
            return _fill_channels_with_mean(batch)
        return _fill_runs(batch, interpolate=False)


class NearestContrast(_Floor):
    name = "nearest-contrast"
    problems = frozenset({"missing-modality"})
    summary = "best-predicting observed modality through a fitted linear intensity map"

    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        super().fit(train, task, workdir, progress)
        channels = task.channels
        n = len(train) if not self.config.max_train_subjects else min(len(train), self.config.max_train_subjects)
        # Normal equations per (target, source) pair, accumulated over the foreground of every training subject.
        sums = torch.zeros(channels, channels, 5, dtype=torch.float64)  # n, Σs, Σt, Σs², Σst
        sum_t2 = torch.zeros(channels, dtype=torch.float64)
        with progress_task(progress, "nearest-contrast: fitting intensity maps", n) as advance:
            for index in range(n):
                volume = torch.from_numpy(np.asarray(train[index].image, dtype=np.float64)).reshape(channels, -1)
                voxels = volume[:, (volume > 0).any(dim=0)]
                for t in range(channels):
                    target = voxels[t]
                    sum_t2[t] += (target * target).sum()
                    for s in range(channels):
                        source = voxels[s]
                        sums[t, s] += torch.stack([torch.tensor(float(source.numel()), dtype=torch.float64),
                                                   source.sum(), target.sum(), (source * source).sum(),
                                                   (source * target).sum()])
                advance()
        count, s1, t1, s2, st = sums.unbind(-1)
        slope = (count * st - s1 * t1) / (count * s2 - s1 * s1).clamp_min(1e-12)
        intercept = (t1 - slope * s1) / count.clamp_min(1)
        # mean squared residual of t ≈ slope·s + intercept, expanded from the accumulated sums
        t2 = sum_t2[:, None].expand_as(count)
        sse = (t2 - 2 * slope * st - 2 * intercept * t1 + slope**2 * s2 + 2 * slope * intercept * s1
               + intercept**2 * count)
        self.slope, self.intercept = slope.float(), intercept.float()
        self.residual = (sse / count.clamp_min(1)).float()

    def state(self) -> dict[str, Any]:
        return {"slope": self.slope, "intercept": self.intercept, "residual": self.residual}

    def load_state(self, state: dict[str, Any], task: TaskSpec) -> None:
        super().load_state(state, task)
        self.slope, self.intercept, self.residual = state["slope"], state["intercept"], state["residual"]

    def synthesize(self, batch: Batch) -> torch.Tensor:
        output = batch.image.clone()
        observed = batch.availability_mask.all(dim=2)  # (B, C)
        for b in range(output.shape[0]):
            sources = observed[b].nonzero().flatten()
            for t in (~observed[b]).nonzero().flatten():
                s = sources[self.residual[t, sources].argmin()]
                output[b, t] = self.slope[t, s] * batch.image[b, s] + self.intercept[t, s]
        return output


class SliceInterp(_Floor):
    name = "slice-interp"
    problems = frozenset({"missing-slice"})
    summary = "linear interpolation across the missing run from its two neighbouring slices"

    def synthesize(self, batch: Batch) -> torch.Tensor:
        return _fill_runs(batch, interpolate=True)


FLOORS = [ZeroFill, MeanAvailable, NearestContrast, SliceInterp]


# -- helpers -------------------------------------------------------------------------------------------------
def _fill_channels_with_mean(batch: Batch) -> torch.Tensor:
    observed = batch.availability_mask.all(dim=2).to(batch.image.dtype)  # (B, C)
    weights = observed[:, :, None, None, None]
    mean = (batch.image * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp_min(1)
    return torch.where(weights.bool(), batch.image, mean.expand_as(batch.image))


def _fill_runs(batch: Batch, interpolate: bool) -> torch.Tensor:
    """Fill each missing run of slices from its bordering observed slices (mean, or linear interpolation)."""
    output = batch.image.clone()
    depth = output.shape[2]
    for b in range(output.shape[0]):
        for c in range(output.shape[1]):
            available = batch.availability_mask[b, c]
            d = 0
            while d < depth:
                if available[d]:
                    d += 1
                    continue
                start = d
                while d < depth and not available[d]:
                    d += 1
                before = output[b, c, start - 1] if start > 0 else None
                after = output[b, c, d] if d < depth else None
                if before is None and after is None:
                    continue
                if before is None or after is None:
                    output[b, c, start:d] = before if after is None else after
                    continue
                length = d - start
                for i in range(length):
                    w = (i + 1) / (length + 1) if interpolate else 0.5
                    output[b, c, start + i] = (1 - w) * before + w * after
    return output
