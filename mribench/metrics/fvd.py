"""FVD: Fréchet distance of I3D (Kinetics-400) features with a volume's slices as the video's frames.

Videos: each missing modality's volume, D slices as frames (brain); the run of missing slices (cardiac). Frames
are resized to 224×224 and, when fewer than 16, resampled along the slice axis to 16 (see
:func:`mribench.metrics.features.frames_for_i3d`). Weight file: ``i3d_torchscript.pt``; absent → "not computed".
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from mribench.metrics.base import EvalContext
from mribench.metrics.elements import missing_elements
from mribench.metrics.features import I3D_FVD, I3DFeatures, require
from mribench.metrics.frechet import FrechetMetric


def missing_videos(pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
                   problem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The missing elements as videos: two (N, 1, T, H, W) batches (real, synthesised).

    Brain: one video per missing modality (T = D). Cardiac: one video of the missing slices (T = their count).
    """
    elements = missing_elements(availability_mask, problem)
    if problem == "missing-modality":
        channels = [channel for channel, _ in elements]
        return target[0, channels][:, None], pred[0, channels][:, None]
    slices = sorted({index for _, index in elements})
    return target[:, :, slices], pred[:, :, slices]


class FVD(FrechetMetric):
    """FVD with the slice axis as time: each missing modality (brain) or the run of missing slices (cardiac) is one
    video (N, 1, T, H, W), features of the I3D network whose weights file ``prepare`` requires (absent: "not
    computed"). With a stand-in extractor, over two cardiac subjects (one video each):

    >>> class MeanStd:  # stand-in extractor: (N, ...) -> (N, 2) features
    ...     info = {"name": "mean-std", "sha256": "0" * 64}
    ...     def __call__(self, batch):
    ...         return torch.stack([batch.flatten(1).mean(1), batch.flatten(1).std(1)], dim=1)
    >>> metric = FVD()
    >>> metric.extractor = MeanStd()
    >>> availability = torch.tensor([[[True, False, False, False, True, True]]])  # (1, 1, D=6): slices 1-3 missing
    >>> for seed in (0, 1):
    ...     target = torch.rand(1, 1, 6, 8, 8, generator=torch.Generator().manual_seed(seed))
    ...     metric.update(target.flip(-1), target, availability, {"subject_id": f"s{seed}", "problem": "missing-slice"})
    >>> result = metric.compute()  # flipped images: the same mean and std, so the same stand-in features
    >>> abs(result.aggregate["mean"]) < 1e-6, result.aggregate["n"], result.per_subject
    (True, 2, {})
    """

    name: ClassVar[str] = "fvd"
    display_name: ClassVar[str] = "FVD"
    higher_is_better: ClassVar[bool] = False
    description: ClassVar[str] = "FVD (I3D Kinetics-400) with the slices of the missing elements as frames"

    def prepare(self, context: EvalContext) -> None:
        status = require(I3D_FVD)
        if not status.present:
            self.unavailable = status.absent_reason()
            return
        self.extractor = I3DFeatures(status)

    def samples(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
                meta: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        real, synthesised = missing_videos(pred, target, availability_mask, meta["problem"])
        return [(real, synthesised)] if real.numel() else []
