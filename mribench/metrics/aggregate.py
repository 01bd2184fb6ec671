"""Aggregation of metric results: per-subject CSV (with the availability each subject was scored on), mean ± std with a bootstrap 95 % CI, and a paired Wilcoxon
signed-rank test between two methods on their common subjects (used by the leaderboard to mark significance).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from mribench.atomic import atomic_write_text
from mribench.errors import MribenchError
from mribench.metrics.base import MetricResult

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_ci(values: list[float] | np.ndarray, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded, so the same values give the same CI)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def summarize(per_subject: dict[str, float]) -> dict[str, Any]:
    """mean, std (population), n and the bootstrap 95 % CI of the mean (``ci95`` = [low, high])."""
    values = np.asarray(list(per_subject.values()), dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "ci95": [float("nan"), float("nan")]}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=0)), "n": int(values.size),
            "ci95": list(bootstrap_ci(values))}


def paired_wilcoxon(a: dict[str, float], b: dict[str, float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of a vs b on the subjects both have.

    Returns 1.0 when every paired difference is zero (no evidence of a difference). Raises MribenchError when
    the two share no subject.
    """
    common = sorted(set(a) & set(b))
    if not common:
        raise MribenchError("paired Wilcoxon test: the two results share no subject")
    differences = np.asarray([a[s] - b[s] for s in common], dtype=np.float64)
    if not np.any(differences):
        return 1.0
    magnitudes = np.abs(differences[differences != 0])
    # exact distribution only without ties or zeros (scipy would fall back to a slow permutation test)
    exact = magnitudes.size == differences.size and np.unique(magnitudes).size == magnitudes.size \
        and differences.size <= 50
    return float(stats.wilcoxon(differences, zero_method="wilcox", alternative="two-sided",
                                method="exact" if exact else "asymptotic").pvalue)


def availability_code(problem: str, availability: np.ndarray) -> str:
    """A subject's availability (C, D) bool as one character per element, in the task's element order: ``1``
    observed, ``0`` missing (modalities of a missing-modality task, slices of a missing-slice task).

    >>> import numpy as np
    >>> availability_code("missing-modality", np.array([[True] * 3, [False] * 3, [True] * 3]))
    '101'
    >>> availability_code("missing-slice", np.array([[True, False, False, True]]))
    '1001'
    """
    per_element = availability.all(axis=1) if problem == "missing-modality" else availability[0]
    return "".join("1" if observed else "0" for observed in per_element)


def write_per_subject_csv(results: dict[str, MetricResult], path: Path, availability: dict[str, str]) -> None:
    """One row per subject: its ``availability`` code (:func:`availability_code`, the pattern it was scored on), then
    one column per metric with per-subject values (blank where a metric has none); written atomically."""
    columns = {name: result.per_subject for name, result in results.items()
               if result.status == "ok" and result.per_subject}
    subjects = sorted(set(availability) | {s for values in columns.values() for s in values})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["subject_id", "availability", *columns])
    for subject in subjects:
        writer.writerow([subject, availability.get(subject, ""),
                         *(repr(values[subject]) if subject in values else "" for values in columns.values())])
    atomic_write_text(Path(path), buffer.getvalue())
