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
    """PSNR in dB of two arrays of one shape (any dimensionality), in float64.

    >>> round(psnr(torch.zeros(4, 8, 8), torch.full((4, 8, 8), 0.1)), 6)  # MSE 0.01 -> 20 dB
    20.0
    >>> psnr(torch.ones(8, 8), torch.ones(8, 8))  # exact: capped by MSE_FLOOR
    100.0
    """
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return 10.0 * math.log10(data_range ** 2 / max(mse, MSE_FLOOR))


def mae(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error of two arrays of one shape, in float64.

    >>> round(mae(torch.zeros(2, 3), torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.6]])), 6)
    0.2
    """
    return torch.mean(torch.abs(pred.double() - target.double())).item()


class PSNR(ElementMetric):
    """Peak signal-to-noise ratio in dB (option ``data_range``, default 1 for [0, 1] images).

    ``update(pred, target, availability_mask, meta)`` per subject: pred and target (1, C, D, H, W) in [0, 1],
    availability_mask (1, C, D) (False = missing, the scored elements); ``compute()`` gives per-subject values
    (mean over the subject's missing elements) and the aggregate. Brain: one channel missing, scored in 3D:

    >>> target = torch.zeros(1, 2, 4, 8, 8)
    >>> pred = target.clone(); pred[0, 1] = 0.1  # channel 1 synthesised 0.1 off everywhere
    >>> availability = torch.tensor([[[True] * 4, [False] * 4]])  # (1, C=2, D=4): channel 1 missing
    >>> metric = PSNR()
    >>> metric.update(pred, target, availability, {"subject_id": "s1", "element_names": ["T1", "T2"],
    ...                                              "problem": "missing-modality"})
    >>> result = metric.compute()
    >>> round(result.per_subject["s1"], 6), result.aggregate["n"], round(result.aggregate["per_element"]["T2"], 6)
    (20.0, 1, 20.0)
    """

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
    """Mean absolute error on [0, 1] intensities (inputs as :class:`PSNR`). Cardiac: missing slices, each in 2D:

    >>> target = torch.zeros(1, 1, 6, 8, 8)
    >>> pred = torch.full((1, 1, 6, 8, 8), 0.5)
    >>> availability = torch.tensor([[[True, True, False, False, True, True]]])  # (1, 1, D=6): slices 2-3 missing
    >>> metric = MAE()
    >>> metric.update(pred, target, availability, {"subject_id": "s1", "element_names": [f"slice{i:02d}" for i in
    ...                                              range(6)], "problem": "missing-slice"})
    >>> metric.compute().per_subject
    {'s1': 0.5}
    """

    name: ClassVar[str] = "mae"
    display_name: ClassVar[str] = "MAE"
    higher_is_better: ClassVar[bool] = False
    description: ClassVar[str] = "mean absolute error of each missing element: 3D per modality / 2D per slice"

    def score(self, pred: torch.Tensor, target: torch.Tensor, meta: dict[str, Any],
              element: tuple[int, int | None]) -> float:
        return mae(pred, target)
