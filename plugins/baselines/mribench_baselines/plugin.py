"""Entry point of the mribench-baselines distribution: registers its methods through mribench's hooks."""
from __future__ import annotations

from mribench.plugins import hookimpl


@hookimpl
def mribench_register_methods() -> list[type]:
    from mribench_baselines.floors import FLOORS
    from mribench_baselines.mmgan import MMGAN

    return [*FLOORS, MMGAN]
