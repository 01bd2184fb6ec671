"""Entry point of the mribench-copedit distribution: registers CoPeDiT through mribench's hooks."""
from __future__ import annotations

from mribench.plugins import hookimpl


@hookimpl
def mribench_register_methods() -> list[type]:
    from mribench_copedit.method import CoPeDiT

    return [CoPeDiT]
