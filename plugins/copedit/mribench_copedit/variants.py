"""The paper's CoPeDiT ablations as data: each variant is a name and the stage II switches it changes.

This module imports no torch (the plugin lists the variants without importing them); ``ablations.py`` builds one
registered method class per entry, with the row it fills in the paper's ablation tables (``TABLES``; the paper's
numbers are those of its BraTS missing-1 ablations). Every switch is a field of ``DiffusionStageConfig`` (stage II
only), so every variant reads the stage-I tokenizer CoPeDiT trained for the same dataset, preset and seed and never
retrains it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mribench_copedit.presets import DIFFUSER_NAMES, PROMPT_NAMES


# The paper's ablation tables (BraTS, missing 1, PSNR), in order: table title → the row label of the full CoPeDiT,
# which every table compares against (the paper's 28.26 dB). A row's order is (table index + 1) × 10 + its place.
REPORTED_TASK = "brats-missing1"
FULL_PSNR = 28.26
TABLES: dict[str, str] = {
    "Prompts": "full (count + position + assessment prompts)",
    "Injection position": "primary blocks (Modal / Spatial)",
    "Diffuser": DIFFUSER_NAMES["mdit3d"],
    "Joint loss": "joint reconstruction + synthesis loss",
}


@dataclass(frozen=True)
class Variant:
    """One ablation: registry ``name``, the ``switches`` (``DiffusionStageConfig`` field → value), what it tests,
    and its row in the paper's ablation table ``table`` (``row`` label, ``place`` in it, the paper's PSNR on BraTS
    missing 1 or None when the paper gives none)."""

    name: str
    switches: Mapping[str, Any]
    summary: str
    table: str
    row: str
    place: int
    reported_psnr: float | None


def _without(prompt: str) -> tuple[str, ...]:
    return tuple(name for name in PROMPT_NAMES if name != prompt)


WITHOUT_PROMPT_PSNR = {"count": 27.35, "position": 26.92, "assessment": 27.56}

VARIANTS: tuple[Variant, ...] = (
    Variant("copedit-no-prompts", {"condition": "none"}, "CoPeDiT without prompts (the diffuser sees no condition)",
            "Prompts", "w/o prompts", 1, 25.92),
    *(Variant(f"copedit-no-{prompt}", {"prompts_used": _without(prompt)},
              f"CoPeDiT with the {prompt} prompt zeroed (the other two prompts unchanged)",
              "Prompts", f"w/o {prompt} prompt", 2 + index, WITHOUT_PROMPT_PSNR[prompt])
      for index, prompt in enumerate(PROMPT_NAMES)),
    Variant("copedit-maskcode", {"condition": "mask"},
            "CoPeDiT conditioned on binary mask codes (from the zero-filled input) instead of prompts",
            "Prompts", "binary mask codes instead of prompts", 5, 27.18),
    Variant("copedit-inject-secondary", {"inject": "secondary"},
            "CoPeDiT with the prompts injected into the secondary (Spatial / Planar) blocks",
            "Injection position", "secondary blocks (Spatial / Planar)", 1, 27.47),
    Variant("copedit-inject-both", {"inject": "both"}, "CoPeDiT with the prompts injected into every block",
            "Injection position", "both", 2, 27.76),
    Variant("copedit-unet", {"diffuser": "unet3d"},
            "CoPeDiT with a 3D U-Net diffuser (sized to MDiT3D's parameter count) instead of MDiT3D",
            "Diffuser", DIFFUSER_NAMES["unet3d"], 1, 25.61),
    Variant("copedit-dit", {"diffuser": "dit"}, "CoPeDiT with a plain (2D-patch) DiT diffuser instead of MDiT3D",
            "Diffuser", DIFFUSER_NAMES["dit"], 2, 26.78),
    Variant("copedit-dit3d", {"diffuser": "dit3d"}, "CoPeDiT with a DiT-3D diffuser instead of MDiT3D",
            "Diffuser", DIFFUSER_NAMES["dit3d"], 3, 26.84),
    Variant("copedit-no-joint-loss", {"joint_loss": False},
            "CoPeDiT regressing the missing latents only (no joint reconstruction + synthesis loss)",
            "Joint loss", "missing latents only", 1, None),
)


def table_order(table: str, place: int) -> int:
    """The order of a row: its table's index in ``TABLES`` × 10 + its place (0: the full CoPeDiT)."""
    return (list(TABLES).index(table) + 1) * 10 + place


def class_name(variant_name: str) -> str:
    """The Python name of a variant's class: ``copedit-no-count`` → ``CopeditNoCount``."""
    return "".join(part.capitalize() for part in variant_name.split("-"))
