"""Entry point of the mribench-copedit distribution: registers CoPeDiT and its ablation variants through mribench's
hooks.

Registered lazily (by import path), so listing methods imports neither torch nor MONAI.
"""
from __future__ import annotations

from mribench.plugins import LazyClass, always_available, hookimpl
from mribench_copedit.variants import VARIANTS, class_name

PRESET_NAMES = ("smoke", "cpu", "paper")
_FACTS = {"problems": frozenset({"missing-modality", "missing-slice"}), "presets": PRESET_NAMES,
          "unavailable_reason": always_available}


@hookimpl
def mribench_register_methods() -> list[LazyClass]:
    return [LazyClass("mribench_copedit.method:CoPeDiT", "copedit", _FACTS),
            *(LazyClass(f"mribench_copedit.ablations:{class_name(v.name)}", v.name, {**_FACTS, "family": "ablation"})
              for v in VARIANTS)]


@hookimpl
def mribench_register_analyses() -> list[LazyClass]:
    return [LazyClass("mribench_copedit.analysis:PromptAnalysis", "prompts"),
            LazyClass("mribench_copedit.analysis:TokenizerAnalysis", "tokenizer")]
