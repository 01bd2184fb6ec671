"""Table cells: a metric aggregated over the seeds of one (method, preset), and the significance of a difference.

Cell rule: the results of several seeds of one (method, preset) are aggregated as the mean over seeds of the per-seed
means; ``std`` is the per-subject std averaged over seeds (the paper's "± std"), ``seed_std`` the sample std over
seeds of the per-seed means (shown in brackets when there are several seeds). In each column the best cell is bold and
the runner-up second; the best cell carries a dagger when a paired Wilcoxon test over subjects of best vs runner-up
gives p < 0.05, in the right direction, in every seed both share.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mribench.leaderboard.collect import RowKey
from mribench.metrics.aggregate import paired_wilcoxon
from mribench.results import Result

SIGNIFICANCE_LEVEL = 0.05


@dataclass
class Cell:
    """One (row, column) value aggregated over seeds. ``seed_means``: seed → that seed's value (``mean`` is their
    mean); ``per_seed``: seed → per-subject values (for the test)."""

    mean: float | None = None
    std: float | None = None
    seed_std: float | None = None
    n: int = 0
    seeds: int = 0
    status: str = "ok"
    reason: str | None = None
    seed_means: dict[int, float] = field(default_factory=dict)
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.mean is not None and not math.isnan(self.mean)

    def text(self, digits: int) -> str:
        if not self.ok:
            return "n/a"
        out = f"{self.mean:.{digits}f}"
        if self.std is not None:
            out += f" ± {self.std:.{digits}f}"
        if self.seed_std is not None:
            out += f" [{self.seed_std:.{digits}f}]"
        return out


def _finite(value) -> float | None:
    return float(value) if value is not None and not math.isnan(float(value)) else None


def metric_cell(results: list[Result], metric: str, part: str | None = None, scale: float = 1.0) -> Cell:
    """Aggregate ``metric`` over the seeds in ``results``.

    part: None for the metric's mean (with per-subject std and per-subject values), else a path into the aggregate
    such as ``"synthesis.WT"`` (Dice breakdowns; no std). scale multiplies values (Dice in %).
    """
    computed = [(r.seed, e) for r in results if (e := r.metrics.get(metric)) and e.get("status") == "ok"
                and e.get("aggregate")]
    if not computed:
        reasons = {e.get("reason") for r in results if (e := r.metrics.get(metric)) and e.get("reason")}
        return Cell(status="not computed", reason="; ".join(sorted(reasons)) or f"no {metric} in the results")
    values, stds = [], []
    for _, entry in computed:
        node = entry["aggregate"]
        for key in (part.split(".") if part else ["mean"]):
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, (int, float)):
            return Cell(status="not computed", reason=f"no {metric} {part} in the results")
        values.append(float(node) * scale)
        stds.append(_finite(entry["aggregate"].get("std")) if part is None else None)
    std = float(np.mean(stds)) * scale if all(s is not None for s in stds) else None
    per_seed = {seed: entry["per_subject"] for seed, entry in computed if part is None and entry.get("per_subject")}
    return Cell(mean=float(np.mean(values)), std=std,
                seed_std=float(np.std(values, ddof=1)) if len(values) > 1 else None,
                n=int(computed[0][1]["aggregate"].get("n", 0)), seeds=len(values),
                seed_means={seed: value for (seed, _), value in zip(computed, values)}, per_seed=per_seed)


def significant(better: Cell, worse: Cell, higher: bool) -> bool:
    """True when, in every seed both cells share, the paired Wilcoxon test over subjects gives p < 0.05 and the
    mean paired difference favours ``better``. False without shared seeds or per-subject values."""
    seeds = sorted(set(better.per_seed) & set(worse.per_seed))
    if not seeds:
        return False
    for seed in seeds:
        a, b = better.per_seed[seed], worse.per_seed[seed]
        common = sorted(set(a) & set(b))
        if not common:
            return False
        difference = float(np.mean([a[s] - b[s] for s in common]))
        if (difference <= 0 if higher else difference >= 0) or paired_wilcoxon(a, b) >= SIGNIFICANCE_LEVEL:
            return False
    return True


def rank(cells: dict[RowKey, Cell], higher: bool | None) -> tuple[dict[RowKey, str], bool]:
    """Marks {row: "best" | "second"} of a column and whether the best is significantly better than the second."""
    if higher is None:
        return {}, False
    scored = sorted(((cell.mean, row) for row, cell in cells.items() if cell.ok), reverse=higher)
    if len(scored) < 2:
        return {}, False
    best, second = scored[0][1], scored[1][1]
    return {best: "best", second: "second"}, significant(cells[best], cells[second], higher)
