"""The evaluation loop shared by ``mribench run`` and ``mribench score``: every task metric over the test split."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from mribench.data.base import Subject, SubjectSet
from mribench.metrics.base import EvalContext, Metric, MetricResult
from mribench.progress import progress_task
from mribench.protocol import evaluation_availability
from mribench.tasks import TaskSpec


def evaluate(task: TaskSpec, metric_classes: Mapping[str, type[Metric]], train: SubjectSet, test: SubjectSet,
             completed_prediction: Callable[[Subject, np.ndarray], np.ndarray], preset: str, seed: int = 0,
             progress=None, validation: SubjectSet | None = None) -> dict[str, MetricResult]:
    """Score each test subject with the task's metrics (``metric_classes``: each metric of the task by name, resolved
    by the caller's planning step; ``validation``: the protocol's validation subjects, which score the downstream
    segmenter when a metric trains it).

    completed_prediction(subject, availability (C, D) bool) → (C, D, H, W) float32 in [0, 1] with the observed
    elements equal to the subject's image (the caller clips and writes them back).
    """
    metrics = {spec.name: metric_classes[spec.name](**spec.options) for spec in task.metrics}
    context = EvalContext(task=task, train=train, preset=preset, seed=seed, progress=progress,
                          validation=validation)
    for metric in metrics.values():
        metric.prepare(context)
    with progress_task(progress, f"evaluate {task.name}", len(test)) as advance:
        for subject in test:
            availability = evaluation_availability(task, subject.subject_id)
            pred = torch.from_numpy(completed_prediction(subject, availability))[None].float()
            target = torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]  # cache arrays are read-only
            label = None if subject.label is None else np.array(subject.label)
            meta = {"subject_id": subject.subject_id, "label": label, "element_names": task.element_names,
                    "problem": task.problem}
            for metric in metrics.values():
                metric.update(pred, target, torch.from_numpy(availability)[None], meta)
            advance()
    return {name: metric.compute() for name, metric in metrics.items()}
