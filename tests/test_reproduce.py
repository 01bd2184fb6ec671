"""``mribench reproduce`` (= ``make leaderboard``): the plan, the seed policy, the estimate, resuming, the folder."""
import io
import json
import shutil

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mribench.cli import app
from mribench.leaderboard.reproduce import (DEFAULT_FIT_MINUTES, DEFAULT_RUN_MINUTES, REPRODUCE_THREADS, ReproducePlan,
                                            estimate_minutes, reproduce)
from mribench.leaderboard.suite import SeedRule, SuiteAnalysis, load_suite

TASKS = ["tiny-brain-missing1", "tiny-brain-missing2", "tiny-cardiac-missing4"]


def _plan(tmp_path, methods):
    """The phantom suite's seed policy, with the three seeds on the tiny brain dataset instead of the BraTS twin."""
    suite = load_suite("phantom")
    rules = [SeedRule(methods=rule.methods, datasets=["tiny-brain"], seeds=rule.seeds) for rule in suite.more_seeds]
    return ReproducePlan(suite=suite.model_copy(update={"more_seeds": rules}), tasks=TASKS, preset="smoke",
                         runs=tmp_path / "runs", out=tmp_path / "leaderboard", methods=methods)


def test_three_seeds_only_for_compared_methods_on_the_chosen_dataset(tiny_registry, tmp_path):
    requests = _plan(tmp_path, ["mean-available", "copedit", "slice-interp"]).requests()
    planned = {(r.task, r.method, r.seed) for r in requests}
    assert {("tiny-brain-missing1", "copedit", s) for s in range(3)} <= planned
    assert ("tiny-cardiac-missing4", "copedit", 1) not in planned, "one seed outside the three-seed datasets"
    assert ("tiny-brain-missing1", "mean-available", 1) not in planned, "floors run one seed"
    assert not any(r.method == "slice-interp" and r.task.startswith("tiny-brain") for r in requests), \
        "methods run only on the problems they declare"
    assert all(r.preset == "smoke" and r.out == tmp_path / "runs" for r in requests)
    seeds = [r.seed for r in requests]
    assert seeds == sorted(seeds) and seeds[-1] == 2, "every seed-0 run comes before any extra seed"


def test_reproduce_runs_resumes_and_regenerates_the_folder(tiny_registry, tmp_path):
    the_plan = _plan(tmp_path, ["zero-fill", "mean-available"])
    the_plan.suite = the_plan.suite.model_copy(update={"analyses": [SuiteAnalysis(name="probe",
                                                                                  method="mean-available")]})
    probe = tiny_registry.get("analysis", "probe").cls
    probe.calls = 0
    minutes, pending = estimate_minutes(the_plan.requests())
    assert pending == 6 and minutes > 0
    before = torch.get_num_threads()
    reproduce(the_plan, console=Console(file=io.StringIO()))
    assert torch.get_num_threads() == before, "the pinned thread count is restored"
    results = sorted((tmp_path / "runs").glob("*/*/*/result.json"))
    assert len(results) == 6
    assert all(f'"torch_threads": {REPRODUCE_THREADS}' in path.read_text() for path in results)
    table = (tmp_path / "leaderboard" / "leaderboard.md").read_text()
    assert "mean-available" in table and "zero-fill" in table
    assert probe.calls == 3 and table.count("### Probe: mean test intensity — ") == 3, \
        "the suite's analysis ran on each task after the runs, and the folder shows its table"
    assert estimate_minutes(the_plan.requests()) == (0.0, 0), "nothing left to do"
    stale = results[0]
    saved = stale.read_text()
    stale.write_text(saved.replace(json.loads(saved)["method"]["config_hash"], "0" * 16))
    assert estimate_minutes(the_plan.requests())[1] == 1, "a result of another config is planned again"
    stale.write_text(saved)

    bare = _plan(tmp_path, ["zero-fill", "mean-available"])  # the same runs, written by a suite without the analysis
    bare.out = tmp_path / "bare"
    reproduce(bare, console=Console(file=io.StringIO()))
    assert "mean-available" in (tmp_path / "bare" / "leaderboard.md").read_text()
    assert "Probe" not in (tmp_path / "bare" / "leaderboard.md").read_text() + \
        (tmp_path / "bare" / "report.html").read_text(), "another suite's analyses stay out of this suite's folder"
    assert list((tmp_path / "leaderboard" / "results").glob("*/*/*/analysis/probe")) and \
        not list((tmp_path / "bare" / "results").glob("*/*/*/analysis"))

    fresh = _plan(tmp_path / "fresh-clone", ["zero-fill", "mean-available"])
    fits = 4  # two methods, two datasets: the brain tasks share a model
    assert estimate_minutes(fresh.requests()) == (pytest.approx(6 * DEFAULT_RUN_MINUTES + fits * DEFAULT_FIT_MINUTES),
                                                  6), "without timings, the defaults"
    minutes, pending = estimate_minutes(fresh.requests(), reference=tmp_path / "leaderboard" / "results")
    assert pending == 6 and 0 < minutes < DEFAULT_RUN_MINUTES, \
        "a fresh runs folder is estimated from the committed results' recorded timings, not the defaults"
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "leaderboard" / "results", reference)
    for path in reference.glob("*/*/*/result.json"):
        record = json.loads(path.read_text())
        record["method"]["training"] = {**(record["method"].get("training") or {}),
                                        "fit_minutes": 10.0 if record["task"]["dataset"] == "tiny-brain" else 1.0}
        record["timings"] = {key: 0.0 for key in record["timings"]}
        path.write_text(json.dumps(record))
    assert estimate_minutes(fresh.requests(), reference=reference)[0] == pytest.approx(2 * 10.0 + 2 * 1.0), \
        "each fit is estimated from the fits on its own dataset, not the mean over datasets"

    stamps = {path: path.stat().st_mtime_ns for path in results}
    log = io.StringIO()
    reproduce(the_plan, console=Console(file=log, width=200))
    assert "0 to do" in log.getvalue() and log.getvalue().count("complete (skipped)") == 6 + 3
    assert probe.calls == 3, "stored analyses are not redone"
    assert {path: path.stat().st_mtime_ns for path in results} == stamps, "finished runs are not redone"


def test_dry_run_prints_the_plan_and_runs_nothing(tiny_registry, tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--dry-run", "--preset", "smoke", "--runs", str(tmp_path / "runs"),
                                      "--output", str(tmp_path / "lb"), "-t", "tiny-brain-missing1",
                                      "-m", "mean-available", "-m", "zero-fill"])
    assert result.exit_code == 0, result.output
    assert "2 runs (2 to do)" in result.output and "tiny-brain-missing1  mean-available  seed 0" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_leaderboard_plan_runs_the_latent_diffusion_baselines_on_every_task(tiny_registry, tmp_path):
    planned = [(r.task, r.method) for r in
               ReproducePlan(tasks=TASKS, preset="smoke", runs=tmp_path / "runs", out=tmp_path / "lb").requests()]
    for task in TASKS:
        methods = [m for t, m in planned if t == task]
        assert {"ldm", "controlnet", "diffm4ri"} <= set(methods), task
        assert methods.index("ldm") < methods.index("controlnet"), "controlnet reuses the ldm model trained first"


def test_demo_prints_its_plan_estimate_and_notice_before_running(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--suite", "demo", "--task", "phantom-brats-missing2", "--runs",
                                      str(tmp_path / "runs"), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("make demo: 4 runs (4 to do) over 1 tasks at the cpu preset; estimated ")
    assert "min remaining" in lines[0] and not lines[0].endswith("estimated 0 min remaining")
    assert "Over the 15-minute quick-start target" in result.output, "the demo says it runs over, and why"
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"


def test_ablation_variants_run_only_in_their_own_suite(tiny_registry, tmp_path):
    variants = {n for n in tiny_registry.names("method") if tiny_registry.method(n).family == "ablation"}
    assert "copedit-no-count" in variants and "copedit-unet" in variants
    leaderboard = ReproducePlan(tasks=TASKS, preset="smoke", runs=tmp_path / "runs", out=tmp_path / "lb").requests()
    assert "copedit" in {r.method for r in leaderboard}
    assert not {r.method for r in leaderboard} & variants, "make leaderboard never runs an ablation variant"
    ablations = ReproducePlan(suite=load_suite("ablations"), tasks=["tiny-brain-missing1"], preset="smoke",
                              runs=tmp_path / "runs", out=tmp_path / "lb").requests()
    assert {(r.method, r.seed) for r in ablations} == {(m, s) for m in variants | {"copedit"} for s in range(3)}
    analyses = ReproducePlan(suite=load_suite("ablations"), tasks=["tiny-brain-missing1"], preset="smoke",
                             runs=tmp_path / "runs").analysis_requests()
    assert [(r.analysis, r.method, r.seed) for r in analyses] == [("tokenizer", "copedit", 0),
                                                                  ("prompts", "copedit", 0)]
    result = CliRunner().invoke(app, ["reproduce", "--suite", "everything", "--dry-run"])
    assert result.exit_code == 2 and "unknown suite 'everything'" in result.output
