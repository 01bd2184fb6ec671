"""FID: Fréchet distance of pytorch-fid InceptionV3 pool3 features (2048-d) between the real and synthesised 2D
slices of the missing elements over the whole test split.

Slices: every axial slice (D of them) of each missing modality (brain); each missing slice (cardiac). Grey →
3 channels, resized to 299×299 as pytorch-fid does. The weight file is pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (see :mod:`mribench.metrics.features`); absent → "not computed".
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from mribench.metrics.base import EvalContext
from mribench.metrics.elements import element_arrays
from mribench.metrics.features import INCEPTION_FID, InceptionFeatures, require
from mribench.metrics.frechet import FrechetMetric


def missing_slices(pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
                   problem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2D slices of the missing elements as two (N, 1, H, W) batches (real, synthesised)."""
    pairs = element_arrays(pred, target, availability_mask, problem)
    if not pairs:
        empty = torch.empty(0, 1, *pred.shape[-2:])
        return empty, empty
    real = torch.cat([t.reshape(-1, 1, *t.shape[-2:]) for _, _, t in pairs])
    synthesised = torch.cat([p.reshape(-1, 1, *p.shape[-2:]) for _, p, _ in pairs])
    return real, synthesised


class FID(FrechetMetric):
    """FID over the 2D slices (N, 1, H, W) of the missing elements, features of pytorch-fid's InceptionV3 (pool3,
    2048-d), whose weights file ``prepare`` requires (absent: "not computed"). With a stand-in extractor:

    >>> class MeanStd:  # stand-in extractor: (N, ...) -> (N, 2) features
    ...     info = {"name": "mean-std", "sha256": "0" * 64}
    ...     def __call__(self, batch):
    ...         return torch.stack([batch.flatten(1).mean(1), batch.flatten(1).std(1)], dim=1)
    >>> target = torch.rand(1, 2, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> availability = torch.tensor([[[True] * 6, [False] * 6]])  # channel 1 missing: its 6 slices are samples
    >>> meta = {"subject_id": "s1", "element_names": ["T1", "T2"], "problem": "missing-modality"}
    >>> exact, blurred = FID(), FID()
    >>> for metric, pred in ((exact, target), (blurred, target * 0.5 + 0.25)):
    ...     metric.extractor = MeanStd()
    ...     metric.update(pred, target, availability, meta)
    >>> result = exact.compute()
    >>> abs(result.aggregate["mean"]) < 1e-6, result.aggregate["n"], result.extractor["name"]
    (True, 6, 'mean-std')
    >>> blurred.compute().aggregate["mean"] > 0.01
    True
    """

    name: ClassVar[str] = "fid"
    display_name: ClassVar[str] = "FID"
    higher_is_better: ClassVar[bool] = False
    option_types: ClassVar[dict[str, type]] = {"batch_size": int}
    description: ClassVar[str] = "FID (pytorch-fid InceptionV3 pool3) over 2D slices of the missing elements"

    def prepare(self, context: EvalContext) -> None:
        status = require(INCEPTION_FID)
        if not status.present:
            self.unavailable = status.absent_reason()
            return
        self.extractor = InceptionFeatures(status, batch_size=int(self.options.get("batch_size", 32)))

    def samples(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
                meta: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        real, synthesised = missing_slices(pred, target, availability_mask, meta["problem"])
        return [(real, synthesised)] if len(real) else []
