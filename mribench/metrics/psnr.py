"""PSNR (data range 1) and MAE on the missing elements: 3D per missing modality (brain), 2D per missing slice
(cardiac), averaged per subject.

PSNR = 10 log10(data_range² / MSE). An element reproduced exactly (MSE = 0) would give +inf, which cannot be
averaged nor stored in JSON: the MSE is floored at ``MSE_FLOOR`` (1e-10), i.e. PSNR is capped at 100 dB.
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from mribench.metrics.elements import ElementMetric

MSE_FLOOR = 1e-10


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of two arrays of one shape (any dimensionality), in float64."""
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return 10.0 * math.log10(data_range ** 2 / max(mse, MSE_FLOOR))


def mae(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error of two arrays of one shape, in float64."""
    return torch.mean(torch.abs(pred.double() - target.double())).item()


class PSNR(ElementMetric):
    """Peak signal-to-noise ratio in dB (option ``data_range``, default 1 for [0, 1] images)."""

    name: ClassVar[str] = "psnr"
    unit: ClassVar[str] = "dB"
    display_name: ClassVar[str] = "PSNR"
    higher_is_better: ClassVar[bool] = True
    option_types: ClassVar[dict[str, type]] = {"data_range": float}
    description: ClassVar[str] = "PSNR (dB, data range 1) of each missing element: 3D per modality / 2D per slice"

    def score(self, pred: torch.Tensor, target: torch.Tensor, meta: dict[str, Any],
              element: tuple[int, int | None]) -> float:
        return psnr(pred, target, float(self.options.get("data_range", 1.0)))


class MAE(ElementMetric):
    """Mean absolute error on [0, 1] intensities."""

    name: ClassVar[str] = "mae"
    display_name: ClassVar[str] = "MAE"
    higher_is_better: ClassVar[bool] = False
    description: ClassVar[str] = "mean absolute error of each missing element: 3D per modality / 2D per slice"

    def score(self, pred: torch.Tensor, target: torch.Tensor, meta: dict[str, Any],
              element: tuple[int, int | None]) -> float:
        return mae(pred, target)
