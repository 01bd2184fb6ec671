"""The committed convergence curves (benchmarks/curves/<task>/<method>-cpu.json) agree with the `cpu` presets they
judge: every learned method of the leaderboard has one, at the step count its preset trains on the curve's problem
(`problem_presets` included), and a preset whose curve is not on a plateau is marked budget-capped there (the
leaderboard footnote says so)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mribench.plugins import registry
from mribench.tasks import get_task

CURVES = Path(__file__).resolve().parent.parent / "benchmarks" / "curves"
LEARNED_FAMILIES = ("gan", "diffusion", "proposed")  # not the floors, not the ablation variants


def _curves() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted(CURVES.glob("*/*-cpu.json")):
        curve = json.loads(path.read_text())
        found.setdefault(curve["method"]["name"], []).append(curve)
    return found


def _learned_methods() -> list[str]:
    return [name for name in registry().names("method")
            if getattr(registry().method(name), "family", None) in LEARNED_FAMILIES]


def test_the_registry_has_learned_methods_to_check():
    assert {"copedit", "m2dn", "m2dn+prompts", "mmgan"} <= set(_learned_methods())


@pytest.mark.parametrize("method", _learned_methods())
def test_each_learned_cpu_preset_has_a_committed_curve_that_its_budget_flag_agrees_with(method):
    curves = _curves().get(method)
    assert curves, f"{method}: no committed curve under benchmarks/curves/ (run `mribench curve --method {method}`)"
    cls = registry().method(method)
    for curve in curves:
        assert curve["method"]["preset"] == "cpu"
        preset = cls.preset_config("cpu", get_task(curve["task"]["name"]).problem)  # what the curve's task trains
        if hasattr(preset, "steps"):
            assert curve["preset_steps"] == preset.steps, f"{method}: the curve judged another step count"
        if curve["verdict"] != "plateau":
            assert getattr(preset, "budget_capped", False), (f"{method}: its curve on {curve['task']['name']} is not "
                                                             "on a plateau, yet the preset is not budget-capped")
