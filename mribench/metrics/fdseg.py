"""fd-seg: Fréchet distance between encoder features of real and synthesised volumes, taken from the
benchmark's own downstream Full segmenter (:mod:`mribench.metrics.segmenter`). It runs offline wherever the
segmenter can be trained (datasets with labels), has its own name and column, and is never presented as FID.

What it means: how far, in the feature space the segmenter uses to find the anatomy and lesions, the completed
volumes sit from the real ones (0: indistinguishable to it). It is only as good as that segmenter: features of a
network that has not learned to segment (see its validation Dice, recorded in the ``dice`` result) measure little
more than intensity statistics.

Features: the global mean of the SegResNet's deepest encoder features of the complete volume (real: all real;
synthesised: observed elements real, missing elements synthesised), one vector per test subject.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from mribench.metrics.base import EvalContext
from mribench.metrics.dice import has_labels
from mribench.metrics.frechet import FrechetMetric
from mribench.metrics.segmenter import get_segmenter


class SegmenterFeatures:
    """Adapter: (N, C, D, H, W) volumes → (N, F) encoder features of a Segmenter."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self.info = segmenter.info

    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.segmenter.features(volume) for volume in volumes])


class FDSeg(FrechetMetric):
    """Fréchet distance of the downstream segmenter's encoder features, one sample per subject: the complete volume
    (1, C, D, H, W) with real vs synthesised missing elements. ``prepare`` trains (or loads) the segmenter; a dataset
    without labels gives "not computed". With a stand-in extractor:

    >>> class MeanStd:  # stand-in extractor: (N, ...) -> (N, 2) features
    ...     info = {"name": "mean-std", "sha256": "0" * 64}
    ...     def __call__(self, batch):
    ...         return torch.stack([batch.flatten(1).mean(1), batch.flatten(1).std(1)], dim=1)
    >>> metric = FDSeg()
    >>> metric.extractor = MeanStd()
    >>> availability = torch.tensor([[[True] * 4, [False] * 4]])
    >>> for seed in range(3):
    ...     target = torch.rand(1, 2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    ...     metric.update(target, target, availability, {"subject_id": f"s{seed}", "problem": "missing-modality"})
    >>> result = metric.compute()
    >>> abs(result.aggregate["mean"]) < 1e-6, result.aggregate["n"]
    (True, 3)
    """

    name: ClassVar[str] = "fd-seg"
    display_name: ClassVar[str] = "FD-Seg"
    higher_is_better: ClassVar[bool] = False
    description: ClassVar[str] = "Fréchet distance of the downstream segmenter's encoder features (not FID)"

    def prepare(self, context: EvalContext) -> None:
        if not has_labels(context.train):
            self.unavailable = "the dataset has no segmentation labels, so there is no downstream segmenter"
            return
        segmenter = get_segmenter(context.task, context.train, context.preset, list(range(context.task.channels)),
                                  context.progress, context.validation)
        self.extractor = SegmenterFeatures(segmenter)

    def samples(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
                meta: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(target, pred)]
