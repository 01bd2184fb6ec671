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
