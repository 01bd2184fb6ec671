"""Entry point of the mribench-copedit distribution: registers CoPeDiT through mribench's hooks.

Registered lazily (by import path), so listing methods imports neither torch nor MONAI.
"""
from __future__ import annotations

from mribench.plugins import LazyClass, always_available, hookimpl

PRESET_NAMES = ("smoke", "cpu", "paper")


@hookimpl
def mribench_register_methods() -> list[LazyClass]:
    return [LazyClass("mribench_copedit.method:CoPeDiT", "copedit",
                      {"problems": frozenset({"missing-modality", "missing-slice"}), "presets": PRESET_NAMES,
                       "unavailable_reason": always_available})]
