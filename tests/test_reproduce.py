"""``mribench reproduce`` (= ``make leaderboard``): the plan, the seed policy, the estimate, resuming, the folder."""
import io
import json
import os
import shutil
import time

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mribench.cli import PIPE_WIDTH, app
from mribench.errors import MribenchError
from mribench.leaderboard.reproduce import (DEFAULT_FIT_MINUTES, DEFAULT_RUN_MINUTES, REPRODUCE_THREADS, ReproducePlan,
                                            estimate_minutes, model_units, reproduce, schedule_minutes)
from mribench.leaderboard.suite import SeedRule, SuiteAnalysis, load_suite
from mribench.runner import RunOutcome

TASKS = ["tiny-brain-missing1", "tiny-brain-missing2", "tiny-cardiac-missing4"]


def _plan(tmp_path, methods):
    """The phantom suite's seed policy, with the three seeds on the tiny brain dataset instead of the BraTS twin."""
    suite = load_suite("phantom")
    rules = [SeedRule(methods=rule.methods, datasets=["tiny-brain"], seeds=rule.seeds) for rule in suite.more_seeds]
    return ReproducePlan(suite=suite.model_copy(update={"more_seeds": rules}), tasks=TASKS, preset="smoke",
                         runs=tmp_path / "runs", out=tmp_path / "leaderboard", methods=methods)


def test_three_seeds_only_for_compared_methods_on_the_chosen_dataset(tiny_registry, tmp_path):
    requests = _plan(tmp_path, ["mean-available", "copedit", "slice-interp", "controlnet"]).requests()
    planned = {(r.task, r.method, r.seed) for r in requests}
    assert {("tiny-brain-missing1", m, s) for m in ("copedit", "controlnet") for s in range(3)} <= planned, \
        "every learned method gets three seeds on the chosen dataset"
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
    printed = io.StringIO()
    reproduce(the_plan, console=Console(file=printed, width=PIPE_WIDTH))  # a pipe's console, as the CLI makes it
    assert torch.get_num_threads() == before, "the pinned thread count is restored"
    headings = [line for line in printed.getvalue().splitlines() if line.startswith("== [")]
    assert len(headings) == 6 + 3 and headings[0].startswith("== [1/6] "), "a plain heading per run and analysis"
    assert max(map(len, printed.getvalue().splitlines())) < 300, "no rule drawn across the pipe's width"
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
    assert "never timed, so estimated at 3 min a fit and 0.5 min a run (likely far too little): mean-available, " \
           "zero-fill" in result.output, "an estimate from the defaults says so"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()
    refused = CliRunner().invoke(app, ["reproduce", "--dry-run", "--jobs", "0", "--runs", str(tmp_path / "runs")])
    assert refused.exit_code == 2 and "--jobs" in refused.output and "Traceback" not in refused.output, \
        "fewer than one job is refused before anything runs"


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
    assert "never timed" not in result.output, "the committed results time every method of the demo"
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


# -- side by side (--jobs) ---------------------------------------------------------------------------------------
def _one_seed_plan(tmp_path, methods, tasks, jobs):
    the_plan = _plan(tmp_path, methods)
    the_plan.suite = the_plan.suite.model_copy(update={"more_seeds": []})
    the_plan.tasks, the_plan.jobs = tasks, jobs
    return the_plan


def test_units_group_each_models_runs_and_need_the_models_they_read(tiny_registry, tmp_path):
    requests = _plan(tmp_path, ["mmt+prompts", "controlnet", "zero-fill", "copedit", "ldm"]).requests()
    units = model_units(requests)
    assert sum(len(unit.requests) for unit in units) == len(requests)
    key = {(u.requests[0].method, u.dataset, u.requests[0].seed): i for i, u in enumerate(units)}
    assert len(key) == len(units), "one unit per model"
    ldm = units[key[("ldm", "tiny-brain", 0)]]
    assert [r.task for r in ldm.requests] == ["tiny-brain-missing1", "tiny-brain-missing2"], \
        "the brain tasks share one model, so one worker runs both"
    assert units[key[("controlnet", "tiny-brain", 0)]].needs == [key[("ldm", "tiny-brain", 0)]]
    assert units[key[("mmt+prompts", "tiny-cardiac", 0)]].needs == [key[("copedit", "tiny-cardiac", 0)]], \
        "a +Prompts variant waits for CoPeDiT's tokenizer of its dataset and seed"
    assert units[key[("zero-fill", "tiny-brain", 0)]].needs == []
    assert all(needed < index for index, unit in enumerate(units) for needed in unit.needs)


def test_schedule_minutes_packs_units_on_the_workers_after_what_they_need():
    assert schedule_minutes([10, 5, 5], [[], [0], []], jobs=1) == 20
    assert schedule_minutes([10, 5, 5], [[], [0], []], jobs=2) == 15, "unit 1 waits for unit 0, unit 2 runs beside"
    assert schedule_minutes([10, 5, 5], [[], [], []], jobs=3) == 10
    assert schedule_minutes([10, 5, 5, 5], [[], [0], [], []], jobs=2) == 15, \
        "a free worker takes a later unit that is ready rather than idle before one that is not"
    assert schedule_minutes([10, 5, 5], [[], [0], []], jobs=2, running={0: 2.0}) == 7, \
        "a running unit holds a worker for the minutes it has left"
    assert schedule_minutes([], [], jobs=2) == 0


def test_side_by_side_overlaps_keeps_dependencies_and_reports_failures(tiny_registry, tmp_path, monkeypatch):
    """The workers are forked, so they run this test's stand-in for the runner: each run appends its interval."""
    import mribench.leaderboard.reproduce as module

    journal = tmp_path / "journal.jsonl"

    def fake_run(request, console):
        started = time.time()
        time.sleep(0.4)
        if request.method == "mean-available" and request.task == "tiny-cardiac-missing4":
            raise MribenchError("the stand-in refuses this one")
        with open(journal, "a") as stream:
            stream.write(json.dumps([request.method, request.task, os.getpid(), started, time.time()]) + "\n")
        console.print("ran")
        return RunOutcome("done", tmp_path)

    monkeypatch.setattr(module, "run", fake_run)
    monkeypatch.setattr(module, "_write_outputs", lambda *args: None)
    the_plan = _one_seed_plan(tmp_path, ["ldm", "controlnet", "zero-fill"], TASKS, jobs=2)
    log = io.StringIO()
    reproduce(the_plan, console=Console(file=log, width=200))
    assert "estimated" in log.getvalue() and "with 2 jobs side by side" in log.getvalue()
    runs = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted((m, t) for m, t, *_ in runs) == sorted((r.method, r.task) for r in the_plan.requests())
    assert len({pid for _, _, pid, _, _ in runs}) == 6 and os.getpid() not in {pid for _, _, pid, _, _ in runs}, \
        "a worker process per model (3 methods × 2 datasets)"
    assert any(a[3] < b[4] and b[3] < a[4] for a in runs for b in runs if a[2] != b[2]), "two runs overlapped"
    assert max(sum(start <= a[3] < end for _, _, _, start, end in runs) for a in runs) <= 2, "never above 2 jobs"
    for dataset_tasks in (["tiny-brain-missing1", "tiny-brain-missing2"], ["tiny-cardiac-missing4"]):
        ldm_end = max(end for m, t, _, _, end in runs if m == "ldm" and t in dataset_tasks)
        assert all(start >= ldm_end for m, t, _, start, _ in runs if m == "controlnet" and t in dataset_tasks), \
            "controlnet starts once the ldm of its dataset has finished"
    assert "tiny-brain-ldm-smoke-seed0.log" in {p.name for p in (tmp_path / "runs" / "_logs").iterdir()}
    assert "about" in log.getvalue() and "min left" in log.getvalue()
    assert "running: controlnet seed 0 (0 min)" in log.getvalue(), "the status line names what runs"

    journal.unlink()
    failing = _one_seed_plan(tmp_path, ["mean-available", "zero-fill"], ["tiny-cardiac-missing4"], jobs=2)
    with pytest.raises(MribenchError) as caught:
        reproduce(failing, console=Console(file=io.StringIO(), width=200))
    message = str(caught.value)
    assert message.startswith("1 of the plan's 2 models failed: mean-available on tiny-cardiac-missing4, seed 0: "
                               "the stand-in refuses this one")
    assert "tiny-cardiac-mean-available-smoke-seed0.log" in message and "\n" not in message
    assert "the stand-in refuses this one" in (tmp_path / "runs" / "_logs" /
                                               "tiny-cardiac-mean-available-smoke-seed0.log").read_text()
    assert [m for m, *_ in map(json.loads, journal.read_text().splitlines())] == ["zero-fill"], \
        "the other model still ran"


def test_side_by_side_gives_the_results_of_one_job(tiny_registry, tmp_path):
    methods, tasks = ["zero-fill", "mmgan", "ldm", "controlnet"], ["tiny-brain-missing1", "tiny-brain-missing2"]
    metrics = {}
    for jobs in (1, 2):
        the_plan = _one_seed_plan(tmp_path / f"jobs{jobs}", methods, tasks, jobs)
        reproduce(the_plan, console=Console(file=io.StringIO()))
        metrics[jobs] = {path.relative_to(the_plan.runs).as_posix(): json.loads(path.read_text())["metrics"]
                         for path in the_plan.runs.glob("*/*/*/result.json")}
    assert len(metrics[2]) == len(methods) * len(tasks)
    assert metrics[2] == metrics[1], "bit-identical numbers whatever the number of jobs"
    assert (tmp_path / "jobs2" / "leaderboard" / "leaderboard.md").is_file()


def test_an_interrupted_side_by_side_plan_stops_its_workers(tiny_registry, tmp_path, monkeypatch):
    import mribench.leaderboard.reproduce as module

    started = tmp_path / "started"

    def slow_run(request, console):
        with open(started, "a") as stream:
            stream.write(f"{os.getpid()}\n")
        time.sleep(60)

    class InterruptOnStatus(io.StringIO):
        def write(self, text):
            if "min left" in text and started.exists() and len(started.read_text().split()) == 2:
                raise KeyboardInterrupt  # once both workers are inside their runs
            return super().write(text)

    monkeypatch.setattr(module, "run", slow_run)
    monkeypatch.setattr(module, "STATUS_SECONDS", 1.0)
    the_plan = _one_seed_plan(tmp_path, ["zero-fill", "mean-available"], ["tiny-brain-missing1"], jobs=2)
    begun = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        reproduce(the_plan, console=Console(file=InterruptOnStatus(), width=200))
    assert time.monotonic() - begun < 30, "the workers were stopped, not waited for"
    pids = [int(line) for line in started.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
