"""The paper's reported numbers beside ours: a task's ``reference`` (its YAML), or a phantom task's real twin's."""
from __future__ import annotations

from dataclasses import dataclass

from mribench.errors import MribenchError
from mribench.leaderboard.cells import Cell
from mribench.tasks import get_task

# A phantom task borrows the reference numbers of the real task with the same missing count.
REAL_TWIN_PREFIX = {"phantom-brats": "brats", "phantom-ixi": "ixi", "phantom-cardiac": "ukbb"}
REPORTED = "reported (paper)"


@dataclass
class Reported:
    """The paper's numbers for a task: ``values`` metric → paper method name → mean or (mean, std)."""

    task: str
    source: str
    values: dict[str, dict[str, float | tuple[float, float]]]
    borrowed: bool

    def cell(self, metric: str, method: str) -> Cell | None:
        value = self.values.get(metric, {}).get(method)
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return Cell(mean=float(value[0]), std=float(value[1]))
        return Cell(mean=float(value))

    def methods(self) -> list[str]:
        return list(dict.fromkeys(name for values in self.values.values() for name in values))


def real_twin(task: str) -> str | None:
    """The real task a phantom task stands in for (phantom-brats-missing2 → brats-missing2), else None."""
    try:
        spec = get_task(task)
    except MribenchError:
        return None
    prefix = REAL_TWIN_PREFIX.get(spec.dataset)
    return f"{prefix}-missing{spec.missing}" if prefix else None


def reported_for(task: str) -> Reported | None:
    """The task's own reference, else its real twin's (phantom-brats-missing2 → brats-missing2), else None."""
    try:
        spec = get_task(task)
    except MribenchError:
        return None
    if spec.reference:
        return Reported(spec.name, spec.reference.source, dict(spec.reference.values), borrowed=False)
    twin_name = real_twin(task)
    if twin_name is None:
        return None
    try:
        twin = get_task(twin_name)
    except MribenchError:
        return None
    if not twin.reference:
        return None
    return Reported(twin.name, twin.reference.source, dict(twin.reference.values), borrowed=True)
