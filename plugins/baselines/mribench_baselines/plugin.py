"""Entry point of the mribench-baselines distribution: registers its methods through mribench's hooks.

Registered lazily (by import path, with the facts ``mribench methods`` shows), so listing methods imports neither
torch nor MONAI; a method's module is imported when it is first used.
"""
from __future__ import annotations

from mribench.plugins import LazyClass, always_available, hookimpl

BOTH = frozenset({"missing-modality", "missing-slice"})
PRESET_NAMES = ("smoke", "cpu", "paper")


PROMPT_PROVIDER = "copedit"  # the prompt provider of the +Prompts variants: CoPeDiT's frozen CoPeVAE


def prompt_provider_missing_reason() -> str | None:
    """Why the +Prompts variants cannot run here (no plugin registers their prompt provider), else None."""
    from mribench.plugins import registry

    if PROMPT_PROVIDER in registry().names("prompt provider"):
        return None
    return "needs the copedit plugin (mribench-copedit), which is not installed"


def _method(target: str, name: str, problems: frozenset[str] = BOTH, prompts: bool = False) -> LazyClass:
    facts = {"problems": problems, "presets": PRESET_NAMES,
             "unavailable_reason": prompt_provider_missing_reason if prompts else always_available}
    return LazyClass(f"mribench_baselines.{target}", name, facts)


@hookimpl
def mribench_register_methods() -> list[LazyClass]:
    return [
        _method("floors:ZeroFill", "zero-fill"),
        _method("floors:MeanAvailable", "mean-available"),
        _method("floors:NearestContrast", "nearest-contrast", frozenset({"missing-modality"})),
        _method("floors:SliceInterp", "slice-interp", frozenset({"missing-slice"})),
        _method("mmgan:MMGAN", "mmgan"),
        _method("mmt:MMT", "mmt"),
        _method("m2dn:M2DN", "m2dn"),
        _method("hypergae:HyperGAE", "hypergae"),
        _method("ldm:LDM", "ldm"),
        _method("controlnet:ControlNet", "controlnet"),
        _method("diffm4ri:DiffM4RI", "diffm4ri"),
        _method("mmt:MMTPrompts", "mmt+prompts", prompts=True),
        _method("m2dn:M2DNPrompts", "m2dn+prompts", prompts=True),
        _method("hypergae:HyperGAEPrompts", "hypergae+prompts", prompts=True),
    ]
