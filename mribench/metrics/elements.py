"""Scoring the missing elements of one subject, the protocol shared by PSNR, MAE and SSIM.

Brain (missing-modality): each missing modality is one element, scored as a 3D volume (D, H, W).
Cardiac (missing-slice): each missing slice is one element, scored as a 2D image (H, W).
A subject's value is the mean over its missing elements; the aggregate holds mean, std, n, the bootstrap 95 % CI
(``ci95``) and per-element means (``per_element``: per modality for brain, per slice index for cardiac).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from mribench.errors import MribenchError
from mribench.metrics.aggregate import summarize
from mribench.metrics.base import Metric, MetricResult


def missing_elements(availability_mask: torch.Tensor, problem: str) -> list[tuple[int, int | None]]:
    """The missing elements of one subject as (channel, slice) pairs; slice is None for a whole modality.

    availability_mask: (1, C, D) or (C, D) bool, True = observed.
    """
    mask = availability_mask.reshape(availability_mask.shape[-2:]).bool().cpu()
    if problem == "missing-modality":
        return [(int(c), None) for c in torch.nonzero(~mask.all(dim=1)).flatten()]
    return [(int(c), int(d)) for c, d in torch.nonzero(~mask)]


def element_arrays(pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor, problem: str,
                   ) -> list[tuple[tuple[int, int | None], torch.Tensor, torch.Tensor]]:
    """(element, pred, target) for every missing element: (D, H, W) volumes (brain) or (H, W) slices (cardiac).

    pred, target: (1, C, D, H, W) in [0, 1].
    """
    if pred.shape != target.shape or pred.ndim != 5 or pred.shape[0] != 1:
        raise MribenchError(f"metric inputs must be two (1, C, D, H, W) tensors, got {tuple(pred.shape)} and "
                            f"{tuple(target.shape)}")
    out = []
    for channel, index in missing_elements(availability_mask, problem):
        if index is None:
            out.append(((channel, None), pred[0, channel], target[0, channel]))
        else:
            out.append(((channel, index), pred[0, channel, index], target[0, channel, index]))
    return out


def element_name(element: tuple[int, int | None], element_names: list[str]) -> str:
    channel, index = element
    return element_names[channel] if index is None else element_names[index]


class ElementMetric(Metric):
    """A metric computed per missing element and averaged per subject (subclasses implement ``score``)."""

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.per_subject: dict[str, float] = {}
        self.per_element: dict[str, list[float]] = defaultdict(list)

    def score(self, pred: torch.Tensor, target: torch.Tensor, meta: dict[str, Any],
              element: tuple[int, int | None]) -> float | None:
        """The value of one element (pred/target (D, H, W) or (H, W)); None when the element has no value."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
               meta: dict[str, Any]) -> None:
        names = list(meta["element_names"])
        values = []
        for element, pred_element, target_element in element_arrays(pred.float(), target.float(), availability_mask,
                                                                    meta["problem"]):
            value = self.score(pred_element, target_element, meta, element)
            if value is None:
                continue
            values.append(value)
            self.per_element[element_name(element, names)].append(value)
        if values:
            self.per_subject[str(meta["subject_id"])] = float(np.mean(values))

    def compute(self) -> MetricResult:
        if not self.per_subject:
            return MetricResult.not_computed(self.empty_reason())
        per_element = {name: float(np.mean(v)) for name, v in sorted(self.per_element.items())}
        return MetricResult(per_subject=dict(self.per_subject),
                            aggregate={**summarize(self.per_subject), "per_element": per_element})

    def empty_reason(self) -> str:
        return "no missing element was scored"
