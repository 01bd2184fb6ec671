"""The ablation variants of ``variants.VARIANTS`` as method classes: CoPeDiT with its presets' stage II switched.

Each class is CoPeDiT itself (no copied code) with ``name``, ``family = "ablation"``, presets built by
``CoPeDiTConfig.with_diffusion(**switches)`` and the one row it fills in the paper's ablation tables. The tokenizer config is untouched, so ``fit`` finds the shared stage-I
tokenizer of CoPeDiT (same dataset, preset and seed) and reads it.
"""
from __future__ import annotations

from typing import Any

from mribench_copedit.method import CoPeDiT, paper_row
from mribench_copedit.presets import PRESETS
from mribench_copedit.variants import VARIANTS, Variant, class_name


def variant_class(variant: Variant) -> type[CoPeDiT]:
    presets = {preset: config.with_diffusion(**variant.switches) for preset, config in PRESETS.items()}
    return type(class_name(variant.name), (CoPeDiT,), {
        "name": variant.name, "family": "ablation", "reuses_models_of": ("copedit",), "presets": presets, "summary": variant.summary,
        "switches": dict(variant.switches), "__module__": __name__,
        "ablation_rows": (paper_row(variant.table, variant.row, variant.place, variant.reported_psnr),),
        "__doc__": f"{variant.summary}. Stage II switches: {dict(variant.switches)}; stage I shared with copedit."})


VARIANT_CLASSES: dict[str, type[CoPeDiT]] = {class_name(v.name): variant_class(v) for v in VARIANTS}


def __getattr__(attribute: str) -> Any:
    """``mribench_copedit.ablations:CopeditNoCount`` (how the plugin registers each variant lazily)."""
    try:
        return VARIANT_CLASSES[attribute]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}") from None
