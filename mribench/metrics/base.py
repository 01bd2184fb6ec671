"""The metric contract: accumulate (pred, target, availability mask, meta) per subject, then compute.

Every metric scores the missing elements only. ``compute`` returns per-subject values and an aggregate, or a
"not computed" status with the reason (e.g. absent pretrained weights) — never a substitute number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch


@dataclass
class MetricResult:
    """Outcome of one metric over one run.

    status: "ok" or "not computed" (then ``reason`` says why and the numbers are empty).
    per_subject: subject ID → value (empty for distribution metrics such as FID).
    aggregate: ``mean``, ``std``, ``n`` and metric-specific entries (e.g. per-modality means).
    extractor: name + SHA-256 of pretrained weights the metric depends on, if any.
    """

    status: str = "ok"
    reason: str | None = None
    per_subject: dict[str, float] = field(default_factory=dict)
    aggregate: dict[str, Any] = field(default_factory=dict)
    extractor: dict[str, str] | None = None

    @classmethod
    def not_computed(cls, reason: str, extractor: dict[str, str] | None = None) -> "MetricResult":
        return cls(status="not computed", reason=reason, extractor=extractor)

    @classmethod
    def from_per_subject(cls, per_subject: dict[str, float], **extra: Any) -> "MetricResult":
        values = np.asarray(list(per_subject.values()), dtype=np.float64)
        aggregate = {"mean": float(values.mean()) if values.size else float("nan"),
                     "std": float(values.std(ddof=0)) if values.size else float("nan"),
                     "n": int(values.size), **extra}
        return cls(per_subject=dict(per_subject), aggregate=aggregate)


@dataclass(frozen=True)
class MetricDescription:
    """How a metric's numbers read, written beside them in every result (``result.json``'s metric entries) so a
    table can be drawn from results alone: the direction of "better", the unit ("" when unitless) and the name shown
    in tables."""

    higher_is_better: bool
    unit: str
    display_name: str


@dataclass
class EvalContext:
    """What a metric may need besides the predictions, handed to :meth:`Metric.prepare` once per run.

    task: the TaskSpec; train: the training SubjectSet (e.g. to train a downstream segmenter once and cache it);
    preset: the method's preset name (segmenters follow it); seed; progress: a rich Progress or None;
    validation: the protocol's validation SubjectSet (scores the downstream segmenter when it is trained), or None.
    """

    task: Any
    train: Any
    preset: str
    seed: int = 0
    progress: Any = None
    validation: Any = None


class Metric:
    """Base class of an evaluator, registered through ``mribench_register_metrics``.

    ``update`` is called once per subject with pred and target (1, C, D, H, W) in [0, 1], the availability
    mask (1, C, D) (True = observed, so scored elements are the False ones) and meta (``subject_id``,
    ``label`` (D, H, W) when labels exist, ``element_names``, ``problem``).
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    description: ClassVar[str] = ""
    unit: ClassVar[str] = ""  # of the stored values ("" when unitless)
    display_name: ClassVar[str] = ""  # the name tables show; "" shows ``name``
    # The options a task spec may give this metric, with their types; any other option is refused before work.
    option_types: ClassVar[dict[str, type]] = {}

    def __init__(self, **options: Any):
        self.options = options

    @classmethod
    def result_description(cls) -> MetricDescription:
        """What a result records about this metric's numbers (see :class:`MetricDescription`)."""
        return MetricDescription(bool(cls.higher_is_better), cls.unit, cls.display_name or cls.name)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Raise ValueError naming an unknown option or a value of the wrong type."""
        for key, value in options.items():
            if key not in cls.option_types:
                accepted = ", ".join(sorted(cls.option_types)) or "none"
                raise ValueError(f"unknown option {key!r} (accepted: {accepted})")
            expected = cls.option_types[key]
            numeric = expected is float and isinstance(value, int)
            if isinstance(value, bool) or not (isinstance(value, expected) or numeric):
                raise ValueError(f"option {key!r} must be {expected.__name__}, got {value!r}")

    @classmethod
    def shape_problem(cls, problem: str, shape: tuple[int, int, int]) -> str | None:
        """Why volumes of ``shape`` (D, H, W) of a ``problem`` task cannot be scored (e.g. too small), else None."""
        return None

    def prepare(self, context: EvalContext) -> None:
        """Called once before the first ``update`` (load weights, train or load a cached segmenter ...)."""

    def update(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
               meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def compute(self) -> MetricResult:
        raise NotImplementedError
