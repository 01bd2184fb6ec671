"""Entry point of the mribench-baselines distribution: registers its methods through mribench's hooks."""
from __future__ import annotations

from mribench.plugins import hookimpl


@hookimpl
def mribench_register_methods() -> list[type]:
    from mribench_baselines.floors import FLOORS
    from mribench_baselines.hypergae import HyperGAE, HyperGAEPrompts
    from mribench_baselines.m2dn import M2DN, M2DNPrompts
    from mribench_baselines.mmgan import MMGAN
    from mribench_baselines.mmt import MMT, MMTPrompts

    return [*FLOORS, MMGAN, MMT, M2DN, HyperGAE, MMTPrompts, M2DNPrompts, HyperGAEPrompts]
