"""Downstream Dice: segment each test subject with the benchmark's segmenter and score the regions with MONAI's
DiceMetric (brain WT/TC/ET, cardiac RV/MYO/LV), in three settings:

* ``full``: the Full segmenter on the all-real volume (upper reference);
* ``missing``: brain — the segmenter trained on the subject's available modalities only (the paper's
  "Missing" baseline); cardiac — the Full segmenter on the volume with the missing slices zero-filled;
* ``synthesis``: the Full segmenter on the volume completed by the method (the per-subject value of ``dice``).

Per-subject value: mean Dice over the regions with synthesis. The aggregate adds per-region means of the three
settings (``synthesis``, ``full``, ``missing``) and ``segmenter_validation``, the Full segmenter's own Dice on the
protocol's validation subjects (None when it was trained without them). Not computed when the dataset has no labels.
A region empty in both reference and prediction counts as Dice 1 (MONAI ``ignore_empty=False``).

The numbers are only as good as the segmenter: ``full`` is the ceiling a perfect synthesis reaches, and a ``full``
below ``missing`` means the segmenter has not learned (the paper-layout Dice table then refuses to render).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import torch

from mribench.metrics.aggregate import summarize
from mribench.metrics.base import EvalContext, Metric, MetricResult
from mribench.metrics.segmenter import get_segmenter, region_dice, region_targets

SETTINGS = ("synthesis", "full", "missing")
# aggregate key of the Full segmenter's own validation Dice (region → mean, plus "mean"; None when not measured)
SEGMENTER_VALIDATION = "segmenter_validation"


def has_labels(train: Any) -> bool:
    return len(train) > 0 and train[0].label is not None


class Dice(Metric):
    """Downstream Dice (see the module docs): ``update`` takes pred, target (1, C, D, H, W), availability_mask
    (1, C, D) and ``meta["label"]`` (D, H, W); segmenters come from :meth:`_segmenter` (trained once and cached by
    :func:`~mribench.metrics.segmenter.get_segmenter`). With a stand-in segmenter that thresholds the mean of its
    input channels (its regions: one, label 1):

    >>> class Threshold:
    ...     regions, info, validation_dice = {"bright": (1,)}, {"name": "threshold", "sha256": "0" * 64}, None
    ...     def predict(self, image):  # (C, D, H, W) -> (R=1, D, H, W) bool
    ...         return image.mean(0, keepdim=True) > 0.5
    >>> class StandInDice(Dice):
    ...     def _segmenter(self, channels):
    ...         return Threshold()
    >>> label = torch.zeros(4, 8, 8, dtype=torch.int64); label[:, 2:6, 2:6] = 1  # a bright square
    >>> target = label[None, None].float().repeat(1, 2, 1, 1, 1)  # (1, C=2, D, H, W): both channels show it
    >>> availability = torch.tensor([[[True] * 4, [False] * 4]])  # channel 1 missing
    >>> metric = StandInDice()
    >>> metric.update(target, target, availability, {"subject_id": "s1", "problem": "missing-modality",
    ...                                              "label": label})
    >>> result = metric.compute()  # a perfect synthesis: Dice 1 (full and missing both segment it too here)
    >>> result.per_subject, result.aggregate["synthesis"]["bright"], result.aggregate["full"]["mean"]
    ({'s1': 1.0}, 1.0, 1.0)
    """

    name: ClassVar[str] = "dice"
    display_name: ClassVar[str] = "Dice"  # stored as a fraction (unitless); tables show %
    higher_is_better: ClassVar[bool] = True
    description: ClassVar[str] = "downstream segmentation Dice (WT/TC/ET or RV/MYO/LV): full, missing, with synthesis"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.context: EvalContext | None = None
        self.unavailable: str | None = None
        self.extractor: dict[str, str] | None = None
        self.segmenter_validation: dict[str, float] | None = None
        self.per_subject: dict[str, float] = {}
        self.per_region: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SETTINGS}

    def prepare(self, context: EvalContext) -> None:
        self.context = context
        if not has_labels(context.train):
            self.unavailable = "the dataset has no segmentation labels"

    def _segmenter(self, channels: list[int]):
        ctx = self.context
        return get_segmenter(ctx.task, ctx.train, ctx.preset, channels, ctx.progress, ctx.validation)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
               meta: dict[str, Any]) -> None:
        if self.unavailable is not None:
            return
        if meta.get("label") is None:
            self.unavailable = f"subject {meta['subject_id']} has no label"
            return
        full = self._segmenter(list(range(target.shape[1])))
        reference = region_targets(torch.as_tensor(meta["label"]), full.regions).bool()
        mask = availability_mask.reshape(availability_mask.shape[-2:]).bool()
        if meta["problem"] == "missing-modality":
            available = [c for c in range(mask.shape[0]) if mask[c].all()]
            missing_prediction = self._segmenter(available).predict(target[0])
        else:
            missing_prediction = full.predict(target[0] * mask[:, :, None, None])
        scores = {"synthesis": region_dice(full.predict(pred[0]), reference),
                  "full": region_dice(full.predict(target[0]), reference),
                  "missing": region_dice(missing_prediction, reference)}
        for setting, values in scores.items():
            for region, value in zip(full.regions, values.tolist()):
                self.per_region[setting][region].append(value)
        self.per_subject[str(meta["subject_id"])] = float(scores["synthesis"].mean())
        self.extractor = full.info
        self.segmenter_validation = full.validation_dice

    def compute(self) -> MetricResult:
        if self.unavailable is not None:
            return MetricResult.not_computed(self.unavailable)
        if not self.per_subject:
            return MetricResult.not_computed("no subject was scored")
        breakdown = {setting: {region: float(np.mean(v)) for region, v in regions.items()}
                     for setting, regions in self.per_region.items()}
        for values in breakdown.values():
            values["mean"] = float(np.mean(list(values.values())))
        return MetricResult(per_subject=dict(self.per_subject),
                            aggregate={**summarize(self.per_subject), **breakdown,
                                       SEGMENTER_VALIDATION: self.segmenter_validation},
                            extractor=self.extractor)
