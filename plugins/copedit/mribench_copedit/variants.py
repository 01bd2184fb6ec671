"""The paper's CoPeDiT ablations as data: each variant is a name and the stage II switches it changes.

This module imports no torch (the plugin lists the variants without importing them); ``ablations.py`` builds one
registered method class per entry. Every switch is a field of ``DiffusionStageConfig`` (stage II only), so every
variant reads the stage-I tokenizer CoPeDiT trained for the same dataset, preset and seed and never retrains it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mribench_copedit.presets import PROMPT_NAMES


@dataclass(frozen=True)
class Variant:
    """One ablation: registry ``name``, the ``switches`` (``DiffusionStageConfig`` field → value) and what it tests."""

    name: str
    switches: Mapping[str, Any]
    summary: str


def _without(prompt: str) -> tuple[str, ...]:
    return tuple(name for name in PROMPT_NAMES if name != prompt)


VARIANTS: tuple[Variant, ...] = (
    Variant("copedit-no-prompts", {"condition": "none"}, "CoPeDiT without prompts (the diffuser sees no condition)"),
    *(Variant(f"copedit-no-{prompt}", {"prompts_used": _without(prompt)},
              f"CoPeDiT with the {prompt} prompt zeroed (the other two prompts unchanged)") for prompt in PROMPT_NAMES),
    Variant("copedit-maskcode", {"condition": "mask"},
            "CoPeDiT conditioned on binary mask codes (from the zero-filled input) instead of prompts"),
    Variant("copedit-inject-secondary", {"inject": "secondary"},
            "CoPeDiT with the prompts injected into the secondary (Spatial / Planar) blocks"),
    Variant("copedit-inject-both", {"inject": "both"}, "CoPeDiT with the prompts injected into every block"),
    Variant("copedit-unet", {"diffuser": "unet"}, "CoPeDiT with a 3D U-Net diffuser instead of MDiT3D"),
    Variant("copedit-dit", {"diffuser": "dit"}, "CoPeDiT with a plain (2D-patch) DiT diffuser instead of MDiT3D"),
    Variant("copedit-dit3d", {"diffuser": "dit3d"}, "CoPeDiT with a DiT-3D diffuser instead of MDiT3D"),
    Variant("copedit-no-joint-loss", {"joint_loss": False},
            "CoPeDiT regressing the missing latents only (no joint reconstruction + synthesis loss)"),
)


def class_name(variant_name: str) -> str:
    """The Python name of a variant's class: ``copedit-no-count`` → ``CopeditNoCount``."""
    return "".join(part.capitalize() for part in variant_name.split("-"))
