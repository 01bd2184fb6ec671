"""The committed convergence curves (benchmarks/curves/<task>/<method>-cpu.json) agree with the `cpu` presets they
judge: every learned method of the leaderboard has one, at its preset's step count, and a preset whose curve is not
on a plateau is marked budget-capped (the leaderboard footnote says so)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mribench.plugins import registry
from mribench.tasks import get_task

CURVES = Path(__file__).resolve().parent.parent / "benchmarks" / "curves"
LEARNED_FAMILIES = ("gan", "diffusion", "proposed")  # not the floors, not the ablation variants
# Curves showing a preset off its plateau on one twin although its doubled run there fits the 15-minute cap, on a method
# that is on its plateau elsewhere: the preset's budget flag speaks for every dataset and cannot say this, so each such
# curve is listed here, and in the curves' README, as an open finding. The entry must stay true (the curve off its
# plateau, the preset unflagged): a fixed finding fails the test until its entry is removed.
OPEN_FINDINGS = {
    ("m2dn", "phantom-cardiac-missing16"): "+0.60 dB at 4,800 steps (a 10-min run); on its plateau on the BraTS twin",
}


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
        if curve["verdict"] != "plateau" and (method, curve["task"]["name"]) not in OPEN_FINDINGS:
            assert getattr(preset, "budget_capped", False), (f"{method}: its curve on {curve['task']['name']} is not "
                                                             "on a plateau, yet the preset is not budget-capped")


@pytest.mark.parametrize("method, task", sorted(OPEN_FINDINGS))
def test_each_open_finding_is_still_true_and_documented(method, task):
    curve = json.loads((CURVES / task / f"{method}-cpu.json").read_text())
    assert curve["verdict"] != "plateau", (f"{method} on {task} is on its plateau now ({OPEN_FINDINGS[method, task]} "
                                           "was the finding): remove its OPEN_FINDINGS entry")
    assert not getattr(registry().method(method).presets["cpu"], "budget_capped", False), \
        f"{method}'s preset is budget-capped now: remove its OPEN_FINDINGS entry"
    assert curve["training_minutes"]["scaled"] <= 15, "a doubled run past the cap is what the budget flag is for"
    notes = (CURVES / "README.md").read_text()
    assert f"**Open finding: {curve['method']['name']}** (`{task}`" in notes, "the curves' README explains it"
