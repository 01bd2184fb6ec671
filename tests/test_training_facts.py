"""Every result records its model's training steps, fit minutes and trained parameters; the footnote shows them."""
from __future__ import annotations

import dataclasses

import pytest

from mribench.leaderboard.collect import collect
from mribench.leaderboard.grid import footnote
from mribench.method import config_hash
from mribench.runner import RunRequest, run
from mribench.tasks import get_task
from mribench_baselines.mmgan import MMGAN


def test_results_record_training_facts_and_the_footnote_shows_them(tiny_registry, tmp_path):
    out = tmp_path / "runs"
    first = run(RunRequest(method="mmgan", task="tiny-brain-missing1", preset="smoke", out=out))
    second = run(RunRequest(method="mmgan", task="tiny-brain-missing2", preset="smoke", out=out))  # reuses the model
    floor = run(RunRequest(method="mean-available", task="tiny-brain-missing1", preset="smoke", out=out))

    facts = first.result.method["training"]
    described = MMGAN.describe("smoke", get_task("tiny-brain-missing1"))
    assert facts["parameters"] == described["params_generator"] + described["params_discriminator"]
    assert facts["steps"] == MMGAN.presets["smoke"].steps and facts["budget_capped"] is False
    assert facts["fit_minutes"] > 0  # minutes to 2 decimals; the fit is most of fit_or_load (the save is the rest)
    assert facts["fit_minutes"] == pytest.approx(first.result.timings["fit_or_load_s"] / 60, abs=0.01)
    assert second.result.method["training"] == facts  # a reused model keeps the facts of its fit
    assert second.result.timings["fit_or_load_s"] < first.result.timings["fit_or_load_s"]
    assert floor.result.method["training"]["steps"] is None
    assert floor.result.method["training"]["parameters"] is None

    collection = collect(["tiny-brain-missing1", "tiny-brain-missing2"], out)
    rows = {("mmgan", "smoke"): "MMGAN", ("mean-available", "smoke"): "mean"}
    runs_line = next(line for line in footnote(collection, collection.tasks, rows, "legend")
                     if line.startswith("runs — "))
    mmgan_part, mean_part = runs_line.removeprefix("runs — ").split("; ")
    parameters = f"{facts['parameters'] / 1e6:.2f} M parameters"
    assert mmgan_part == (f"MMGAN: smoke preset, seeds 0, {facts['steps']} steps, {facts['fit_minutes']:.1f} min fit, "
                          f"{parameters}")
    assert mean_part == "mean: smoke preset, seeds 0"


def test_a_budget_capped_preset_is_marked_in_the_footnote(tiny_registry, tmp_path, monkeypatch):
    capped = dataclasses.replace(MMGAN.presets["smoke"], budget_capped=True)
    monkeypatch.setitem(MMGAN.presets, "smoke", capped)
    outcome = run(RunRequest(method="mmgan", task="tiny-brain-missing1", preset="smoke", out=tmp_path))
    assert outcome.result.method["training"]["budget_capped"] is True
    collection = collect(["tiny-brain-missing1"], tmp_path)
    lines = footnote(collection, collection.tasks, {("mmgan", "smoke"): "MMGAN"}, "legend")
    assert "budget-capped" in next(line for line in lines if line.startswith("runs — "))


def test_rows_made_with_another_config_of_the_installed_preset_are_marked_outdated(tiny_registry, tmp_path,
                                                                                  monkeypatch):
    run(RunRequest(method="mmgan", task="tiny-brain-missing1", preset="smoke", out=tmp_path))

    def runs_line() -> str:
        collection = collect(["tiny-brain-missing1"], tmp_path, tiny_registry)
        lines = footnote(collection, collection.tasks, {("mmgan", "smoke"): "MMGAN"}, "legend")
        return next(line for line in lines if line.startswith("runs — "))

    assert "OUTDATED" not in runs_line()  # made with today's preset
    # the preset changes after the run (here only its budget flag): the result no longer describes today's MMGAN
    monkeypatch.setitem(MMGAN.presets, "smoke", dataclasses.replace(MMGAN.presets["smoke"], budget_capped=True))
    assert "OUTDATED: made with an earlier config of this preset" in runs_line()
    # without a registry to compare with (tables from results alone) nothing is claimed either way
    collection = collect(["tiny-brain-missing1"], tmp_path)
    assert "OUTDATED" not in "".join(footnote(collection, collection.tasks, {("mmgan", "smoke"): "MMGAN"}, "x"))


def test_a_problem_preset_replaces_the_config_on_that_problem_only(tiny_registry, tmp_path, monkeypatch):
    default = MMGAN.presets["smoke"]
    slice_preset = dataclasses.replace(default, steps=default.steps + 4)
    monkeypatch.setattr(MMGAN, "problem_presets", {"smoke": {"missing-slice": slice_preset}})
    brain = run(RunRequest(method="mmgan", task="tiny-brain-missing1", preset="smoke", out=tmp_path)).result
    cardiac = run(RunRequest(method="mmgan", task="tiny-cardiac-missing4", preset="smoke", out=tmp_path)).result
    assert brain.method["config_hash"] == config_hash(default) and brain.method["training"]["steps"] == default.steps
    assert cardiac.method["config_hash"] == config_hash(slice_preset)
    assert cardiac.method["training"]["steps"] == default.steps + 4

    def outdated() -> dict[str, bool]:
        collection = collect(["tiny-brain-missing1", "tiny-cardiac-missing4"], tmp_path, tiny_registry)
        return {task: collection.outdated(("mmgan", "smoke"), collection.get(task, ("mmgan", "smoke")))
                for task in collection.tasks}

    assert outdated() == {"tiny-brain-missing1": False, "tiny-cardiac-missing4": False}
    # the slice preset changes: only the cardiac result describes an earlier config
    monkeypatch.setattr(MMGAN, "problem_presets", {"smoke": {"missing-slice": dataclasses.replace(slice_preset,
                                                                                                   steps=1)}})
    assert outdated() == {"tiny-brain-missing1": False, "tiny-cardiac-missing4": True}
