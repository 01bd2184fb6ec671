"""Entry point of the mribench-copedit distribution: registers CoPeDiT, its ablation variants, its analyses, its
speed benchmarks and its frozen CoPeVAE as a prompt provider (for other plugins' methods) through mribench's hooks.

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
def mribench_register_prompt_providers() -> list[LazyClass]:
    return [LazyClass("mribench_copedit.api:CoPeVAEPrompts", "copedit")]


@hookimpl
def mribench_register_analyses() -> list[LazyClass]:
    return [LazyClass("mribench_copedit.analysis:PromptAnalysis", "prompts"),
            LazyClass("mribench_copedit.analysis:TokenizerAnalysis", "tokenizer")]


@hookimpl
def mribench_register_benchmarks() -> list[LazyClass]:
    return [LazyClass(f"mribench_copedit.bench:{cls}", name, {"summary": summary}) for cls, name, summary in (
        ("MDiT3DBStepBenchmark", "mdit3d-b", "MDiT3D-B training step at the brain latents over the same-run GEMM "
                                             "rate (goal >= 0.80)"),
        ("MDiT3DCStepBenchmark", "mdit3d-c", "MDiT3D-C training step at the cardiac latents over the same-run GEMM "
                                             "rate (goal >= 0.80)"),
        ("AttentionBenchmark", "attention", "factorised (Spatial + Modal) / full 3D attention, fwd+bwd at 2,304 / "
                                            "4,608 / 9,216 tokens"),
        ("Stage2Benchmark", "stage2", "stage-II step re-encoding 7x per sample (the authors' code) / on cached "
                                      "latents, paper brain (>= 20x)"),
        ("DDIMBenchmark", "ddim", "CoPeDiT synthesis latency per volume (batch 1, fp32) of the cpu and paper "
                                  "presets, both problems"))]
