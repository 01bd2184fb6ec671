"""``mribench reproduce``: run a suite (:mod:`mribench.leaderboard.suite`, ``suites/<name>.yaml``), then regenerate its
leaderboard folder (and the README's generated results block) from the results.

``make leaderboard`` runs the ``phantom`` suite: every registered method (but those whose class sets
``in_default_plan = False``, which run only when named with ``--method``, and the ablation variants) on every phantom
task at the ``cpu`` preset. ``make ablations`` runs the ``ablations`` suite: CoPeDiT and every variant on the BraTS
twin, missing 1, three seeds each, in the same runs folder (so the variants read CoPeDiT's stage-I tokenizers),
written to ``leaderboard/ablations``.

Runs go through the ordinary runner, so an interrupted reproduction continues where it stopped and finished runs
are skipped; the suite's analyses then run on their runs (an analysis already stored is skipped). With ``jobs`` above
1 (``--jobs``), the plan's models (:class:`ModelUnit`: one method, dataset and seed, with its tasks) are trained in
that many worker processes side by side, each at :data:`REPRODUCE_THREADS` threads, so the numbers do not change.
Before starting, the plan and an estimate of the remaining wall time on those workers are printed. :func:`refresh`
(``make readme``) rebuilds the folder's tables, report and the README block from the folder's own result copies,
running nothing.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from rich.console import Console
from rich.text import Text

from mribench.analyze import ANALYSIS_RECORD, AnalyzeRequest, analysis_folder, analyze
from mribench.analyze import check as check_analysis
from mribench.errors import MribenchError
from mribench.leaderboard.readme import check_readme, write_readme_block
from mribench.leaderboard.report import write_leaderboard_folder
from mribench.leaderboard.suite import DEFAULT_SUITE, Suite, load_suite
from mribench.plugins import registry
from mribench.progress import heading
from mribench.method import config_hash
from mribench.results import RESULT_FILE, DamagedResultError, find_results, stored_config_hash
from mribench.runner import RunRequest, plan, run
from mribench.tasks import get_task
from mribench.threads import torch_threads

# Torch threads of every reproduction run: CPU float results depend on the thread count, so it is fixed for a fresh
# clone to reproduce the committed numbers on any machine. One thread: the cpu presets' small models gain about 1.2x
# from a second thread (measured on CoPeDiT's stage I), while two plans side by side (split with --task) use both
# cores fully, and a single-threaded run does not stall when another process takes a core.
REPRODUCE_THREADS = 1
# Minutes per stage at the cpu preset, measured on this project's 2-core machine; used only for the estimate
# when the runs folder holds no timing of the method yet.
DEFAULT_FIT_MINUTES = 3.0
DEFAULT_RUN_MINUTES = 0.5
# Side by side (--jobs): the runs folder's subfolder of the workers' logs, and the longest silence between status lines.
LOG_FOLDER = "_logs"
STATUS_SECONDS = 120.0
REPLY_CHARACTERS = 2000  # a worker's failure line, well under a pipe's buffer


@dataclass
class ReproducePlan:
    suite: Suite = field(default_factory=lambda: load_suite(DEFAULT_SUITE))
    tasks: list[str] | None = None  # None: the suite's
    preset: str = "cpu"
    runs: Path = Path("runs/leaderboard")
    out: Path | None = None  # None: the suite's output folder
    methods: list[str] | None = None  # None: the suite's methods
    readme: Path | None = None  # a README whose generated results block is rewritten too
    jobs: int = 1  # models trained side by side, one worker process each (see :func:`reproduce`)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks or self.suite.tasks)

    @property
    def folder(self) -> Path:
        return Path(self.out or self.suite.output)

    @property
    def timings_reference(self) -> Path:
        """Results whose recorded timings estimate the runs the runs folder has not timed yet: the suite's
        ``timings_from``, else the copies in its own leaderboard folder."""
        return Path(self.suite.timings_from) if self.suite.timings_from else self.folder / "results"

    def suite_methods(self) -> list[str]:
        """The suite's methods: those it names, every available method of its families and, with ``default_plan``,
        every available ``in_default_plan`` method outside its excluded families (in registry order)."""
        reg = registry()
        available = [n for n in reg.names("method") if reg.method(n).unavailable_reason() is None]
        chosen = [*self.suite.methods, *(n for n in available if reg.method(n).family in self.suite.families)]
        if self.suite.default_plan:
            chosen += [n for n in available if reg.method(n).in_default_plan
                       and reg.method(n).family not in self.suite.excluded_families]
        return list(dict.fromkeys(chosen))

    def requests(self) -> list[RunRequest]:
        """The runs, seed by seed: every task and method at seed 0 first, so an interrupted plan leaves whole
        single-seed tables, and the extra seeds come last."""
        names = reuse_order(self.methods or self.suite_methods())
        reg = registry()
        requests = []
        for task_name in self.task_names:
            task = get_task(task_name)
            for name in names:
                cls = reg.method(name)
                if task.problem not in cls.problems or self.preset not in cls.presets:
                    continue
                for seed in range(self.suite.seed_count(name, task.dataset)):
                    requests.append(RunRequest(method=name, task=task_name, preset=self.preset, seed=seed,
                                               out=self.runs))
        return sorted(requests, key=lambda request: request.seed)  # stable: task and method order kept per seed

    def analysis_requests(self) -> list[AnalyzeRequest]:
        """The suite's analyses on every task, seed by seed (those of methods left out by ``methods`` skipped)."""
        return [AnalyzeRequest(analysis=item.name, task=task, method=item.method, preset=self.preset, seed=seed,
                               runs=self.runs)
                for item in self.suite.analyses if self.methods is None or item.method in self.methods
                for task in self.task_names for seed in range(item.seeds)]


def reuse_order(names: list[str]) -> list[str]:
    """``names`` with every method after the planned methods whose models it reuses (``reuses_models_of``), the
    order otherwise kept: ``controlnet`` then finds the ``ldm`` model published by the ``ldm`` run."""
    reg = registry()
    planned, ordered = set(names), []

    def place(name: str, visiting: tuple[str, ...] = ()) -> None:
        if name in ordered or name in visiting:
            return
        for needed in reg.method(name).reuses_models_of:
            if needed in planned:
                place(needed, (*visiting, name))
        ordered.append(name)

    for name in names:
        place(name)
    return ordered


def estimate_minutes(requests: list[RunRequest], reference: Path | None = None) -> tuple[float, int]:
    """Remaining minutes of the runs one after another (and the pending run count); see :func:`request_minutes`."""
    minutes, _ = request_minutes(requests, reference)
    return sum(m for m in minutes if m is not None), sum(m is not None for m in minutes)


def request_minutes(requests: list[RunRequest],
                    reference: Path | None = None) -> tuple[list[float | None], list[str]]:
    """Estimated minutes of each request (None for a finished one), and the pending methods estimated from the
    defaults because nothing records their timings. A method's fit and run minutes come from its finished runs in the
    runs folder, else from its results in ``reference`` (the committed leaderboard's copies, so that a fresh clone's
    plan is estimated from measured runs), else from the defaults; each the mean over those results of the request's
    dataset when there are any (fits differ several-fold between datasets), else over all of them. The fit is the
    recorded training time of the model (a run that reused a model records the fit that made it, not its loading),
    counted on the first pending run of that model."""
    fit: dict[str, list[tuple[str, float]]] = {}  # method -> (dataset, minutes) per result
    evaluate: dict[str, list[tuple[str, float]]] = {}
    if requests:
        folders = [requests[0].out] + ([reference] if reference is not None and reference.is_dir() else [])
        for folder in folders:
            folder_fit: dict[str, list[tuple[str, float]]] = {}
            folder_evaluate: dict[str, list[tuple[str, float]]] = {}
            for _, result in find_results(folder):
                name, dataset = result.method["name"], result.task.get("dataset", "")
                training = result.method.get("training") or {}
                minutes = training.get("fit_minutes")
                folder_fit.setdefault(name, []).append(
                    (dataset, minutes if minutes is not None else result.timings.get("fit_or_load_s", 0) / 60))
                folder_evaluate.setdefault(name, []).append(
                    (dataset, sum(v for k, v in result.timings.items() if k != "fit_or_load_s") / 60))
            for name in folder_fit.keys() - fit.keys():  # the runs folder first, the reference for the others
                fit[name], evaluate[name] = folder_fit[name], folder_evaluate[name]
    estimates: list[float | None] = []
    trained, untimed = set(), []
    for request in requests:
        the_plan = plan(request)
        try:
            stored = stored_config_hash(the_plan.folder / RESULT_FILE)
        except DamagedResultError:  # the runner redoes it
            stored = None
        if stored == config_hash(the_plan.config):
            estimates.append(None)
            continue
        dataset = the_plan.task.dataset
        if request.method not in fit and request.method not in untimed:
            untimed.append(request.method)
        minutes = _mean_for(evaluate.get(request.method), dataset, DEFAULT_RUN_MINUTES)
        model = (the_plan.model_family(), request.method, request.preset, request.seed)
        checkpoints = the_plan.models.glob(f"{model[0]}-*/{model[1]}/{model[2]}-seed{model[3]}/model.pt")
        # a result of another config means its model is of that config too: the runner trains it again
        stale = stored is not None
        if (stale or next(checkpoints, None) is None) and model not in trained:  # data key: known once data loads
            trained.add(model)
            minutes += _mean_for(fit.get(request.method), dataset, DEFAULT_FIT_MINUTES)
        estimates.append(minutes)
    return estimates, untimed


def _mean_for(timings: list[tuple[str, float]] | None, dataset: str, default: float) -> float:
    """Mean minutes of ``timings`` on ``dataset``, else over every dataset, else ``default``."""
    if not timings:
        return default
    values = [m for d, m in timings if d == dataset] or [m for _, m in timings]
    return sum(values) / len(values)


@dataclass
class ModelUnit:
    """The plan's runs of one model (one method, dataset and seed), in plan order. A worker runs them together, so the
    model is trained once and the other tasks load it. ``needs``: the units whose published models its fit reads
    (``reuses_models_of``, same dataset and seed); they finish first."""

    requests: list[RunRequest]
    dataset: str
    needs: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        first = self.requests[0]
        return f"{first.method}, seed {first.seed}, on {', '.join(request.task for request in self.requests)}"

    @property
    def log_name(self) -> str:
        first = self.requests[0]
        return f"{self.dataset}-{first.method}-{first.preset}-seed{first.seed}.log"


def model_units(requests: list[RunRequest]) -> list[ModelUnit]:
    """``requests`` grouped by model, in order of first appearance (after :func:`reuse_order`, a unit's needs come
    before it)."""
    reg = registry()
    index: dict[tuple[str, str, int], int] = {}
    units: list[ModelUnit] = []
    for request in requests:
        key = (request.method, get_task(request.task).dataset, request.seed)
        if key not in index:
            index[key] = len(units)
            units.append(ModelUnit([], key[1]))
        units[index[key]].requests.append(request)
    for (method, dataset, seed), position in index.items():
        needed_units = (index.get((needed, dataset, seed)) for needed in reg.method(method).reuses_models_of)
        units[position].needs = [unit for unit in needed_units if unit is not None and unit < position]
    return units


def schedule_minutes(durations: list[float], needs: list[list[int]], jobs: int,
                     running: dict[int, float] | None = None) -> float:
    """Wall minutes of units taking ``durations`` on ``jobs`` workers, scheduled as :func:`reproduce` does: whenever a
    worker is free it takes the first unit whose needs have finished, else idles until one has. ``running``: units
    already started (index → minutes left), each holding a worker. A unit's needs come before it."""
    running = running or {}
    finish = dict(running)  # unit -> when it finishes
    free = sorted([*running.values(), *[0.0] * max(jobs - len(running), 0)])
    waiting = [unit for unit in range(len(durations)) if unit not in running]
    while waiting:
        worker = min(range(len(free)), key=free.__getitem__)
        now = free[worker]
        ready = [unit for unit in waiting
                 if all(needed in finish and finish[needed] <= now for needed in needs[unit])]
        if not ready:  # the first waiting unit's needs are all started: idle until the next of them finishes
            free[worker] = min(finish[needed] for unit in waiting for needed in needs[unit]
                               if needed in finish and finish[needed] > now)
            continue
        waiting.remove(ready[0])
        finish[ready[0]] = free[worker] = now + durations[ready[0]]
    return max(finish.values(), default=0.0)


def reproduce(the_plan: ReproducePlan, console: Console | None = None, dry_run: bool = False) -> None:
    """Print the plan and its estimate, run what is left (``the_plan.jobs`` models side by side when above 1), then
    the suite's analyses, then write the folder (and the README block)."""
    console = console or Console(stderr=True)
    if the_plan.readme:
        check_readme(the_plan.readme, the_plan.suite.make_target)
    requests = the_plan.requests()
    analyses = [(request, check_analysis(request)[1].folder)  # bad names fail before any run
                for request in the_plan.analysis_requests()]
    units = model_units(requests)
    estimates, untimed = request_minutes(requests, the_plan.timings_reference)
    per_request = dict(zip(map(id, requests), estimates))
    pending = sum(minutes is not None for minutes in per_request.values())
    unit_minutes = [sum(per_request[id(request)] or 0.0 for request in unit.requests) for unit in units]
    minutes = schedule_minutes(unit_minutes, [unit.needs for unit in units], the_plan.jobs)
    side_by_side = f" with {the_plan.jobs} jobs side by side" if the_plan.jobs > 1 else ""
    console.print(Text.assemble((f"make {the_plan.suite.make_target}", "bold"), f": {len(requests)} runs ({pending} "
                                f"to do) over {len(the_plan.task_names)} tasks at the {the_plan.preset} preset; "
                                f"estimated {minutes:.0f} min remaining{side_by_side}" +
                                (f", plus {len(analyses)} analyses (not estimated)" if analyses else "")),
                  markup=False, highlight=False)
    if untimed:
        console.print(f"never timed, so estimated at {DEFAULT_FIT_MINUTES:g} min a fit and {DEFAULT_RUN_MINUTES:g} "
                      f"min a run (likely far too little): {', '.join(untimed)}", markup=False, highlight=False)
    if the_plan.suite.notice:
        console.print(the_plan.suite.notice, markup=False, highlight=False)
    if dry_run:
        for request in requests:
            console.print(f"  {request.task}  {request.method}  seed {request.seed}")
        for request, _ in analyses:
            console.print(f"  {request.task}  {request.method}  seed {request.seed}  analysis {request.analysis}")
        return
    if the_plan.jobs > 1:
        complete = {index for index, unit in enumerate(units)
                    if all(per_request[id(request)] is None for request in unit.requests)}
        _run_side_by_side(units, unit_minutes, complete, the_plan, console)
    with torch_threads(REPRODUCE_THREADS):
        if the_plan.jobs == 1:
            for index, request in enumerate(requests, 1):
                _run_with_heading(request, console, f"[{index}/{len(requests)}] ")
        for index, (request, run_folder) in enumerate(analyses, 1):
            heading(console, f"[analysis {index}/{len(analyses)}] {request.analysis} of {request.method} on "
                             f"{request.task}, seed {request.seed}")
            if (analysis_folder(run_folder, request.analysis) / ANALYSIS_RECORD).is_file():
                console.print("complete (skipped)")
                continue
            analyze(request, console=console)
    _write_outputs(the_plan, the_plan.runs, console)


def _run_side_by_side(units: list[ModelUnit], minutes: list[float], complete: set[int], the_plan: ReproducePlan,
                      console: Console) -> None:
    """Every unit but the ``complete`` ones in its own worker process, ``the_plan.jobs`` at a time: whenever a worker
    is free, the first unit whose needs have finished starts. Each unit's output is appended to
    ``<runs>/_logs/<unit>.log``; here, a line per start and finish and a status line (what runs, how long is left) at
    least every :data:`STATUS_SECONDS`. A failed unit stops new starts; the running ones finish, then one error names
    every failure. Interrupted (Ctrl-C, SIGTERM), the workers are stopped; their runs resume on the next call."""
    logs = the_plan.runs / LOG_FOLDER
    logs.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    waiting, finished, failures = [unit for unit in range(len(units)) if unit not in complete], set(complete), []
    running: dict[int, tuple[BaseProcess, Connection, float]] = {}  # unit -> (worker, its reply, monotonic start)
    with _interrupted_by_sigterm():
        try:
            while True:
                ready = [unit for unit in waiting if all(needed in finished for needed in units[unit].needs)]
                for unit in ready[:0 if failures else the_plan.jobs - len(running)]:
                    waiting.remove(unit)
                    reply, sender = context.Pipe(duplex=False)
                    worker = context.Process(target=_unit_worker, args=(units[unit].requests,
                                                                        logs / units[unit].log_name, sender))
                    worker.start()
                    sender.close()
                    running[unit] = (worker, reply, time.monotonic())
                    say(f"started {units[unit].label} (log: {logs / units[unit].log_name})")
                if not running:
                    break
                ended = multiprocessing.connection.wait([worker.sentinel for worker, _, _ in running.values()],
                                                        timeout=STATUS_SECONDS)
                for unit in [unit for unit, (worker, _, _) in running.items() if worker.sentinel in ended]:
                    worker, reply, started = running.pop(unit)
                    failure = reply.recv() if reply.poll() else \
                        f"{units[unit].label}: its worker process died (exit code {worker.exitcode})"
                    worker.join()
                    reply.close()
                    if failure:
                        failures.append(f"{failure} (log: {logs / units[unit].log_name})")
                        say(f"FAILED {failures[-1]}")
                    else:
                        finished.add(unit)
                        say(f"finished {units[unit].label} in {(time.monotonic() - started) / 60:.1f} min")
                now = time.monotonic()
                left = schedule_minutes([0.0 if unit in finished else minutes[unit] for unit in range(len(units))],
                                        [unit.needs for unit in units], the_plan.jobs,
                                        {unit: max(minutes[unit] - (now - started) / 60, 0.0)
                                         for unit, (_, _, started) in running.items()})
                busy = ", ".join(f"{units[unit].requests[0].method} seed {units[unit].requests[0].seed} "
                                 f"({(now - started) / 60:.0f} min)" for unit, (_, _, started) in running.items())
                say(f"{len(finished)} of {len(units)} models done" + (f", running: {busy}" if busy else "") + "; " +
                    (f"about {left:.0f} min left" if not failures else "no new starts after the failure"))
        finally:  # interrupted: stop the workers (each run resumes where it stopped on the next call)
            for worker, _, _ in running.values():
                worker.terminate()
            for worker, _, _ in running.values():
                worker.join()
    if failures or waiting:
        blocked = f"; {len(waiting)} not started" if waiting else ""
        raise MribenchError(f"{len(failures)} of the plan's {len(units)} models failed: {'; '.join(failures)}"
                            f"{blocked}; finished runs are kept, so fix it and run the plan again")


@contextmanager
def _interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the block (so its clean-up runs), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _unit_worker(requests: list[RunRequest], log: Path, reply: Connection) -> None:
    """A worker process: the unit's runs (:func:`_run_unit`), the outcome sent back. Ctrl-C is left to the parent,
    which stops its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    failure = _run_unit(requests, log)
    if failure and len(failure) > REPLY_CHARACTERS:  # the parent reads the reply once the worker has exited
        failure = failure[:REPLY_CHARACTERS] + " … (cut; the whole message is in its log)"
    reply.send(failure)
    reply.close()


def _run_unit(requests: list[RunRequest], log: Path) -> str | None:
    """The runs of one unit in order at :data:`REPRODUCE_THREADS` threads, their output appended to ``log``. Returns
    the failure in one line, else None."""
    with open(log, "a", encoding="utf-8") as stream, torch_threads(REPRODUCE_THREADS):
        console = Console(file=stream, width=120)
        for request in requests:
            try:
                _run_with_heading(request, console)
            except MribenchError as exc:
                console.print(str(exc), markup=False, highlight=False)
                return f"{_run_name(request)}: {exc}"
            except Exception:
                console.print(traceback.format_exc(), markup=False, highlight=False)
                return f"{_run_name(request)} crashed (the traceback is in its log)"
    return None


def _run_with_heading(request: RunRequest, console: Console, prefix: str = "") -> None:
    """One run of the plan under a heading naming it (``prefix`` first, e.g. its place in the plan)."""
    heading(console, prefix + _run_name(request))
    if run(request, console=console).status == "complete":
        console.print("complete (skipped)")


def _run_name(request: RunRequest) -> str:
    return f"{request.method} on {request.task}, seed {request.seed}"


def refresh(the_plan: ReproducePlan, console: Console | None = None) -> None:
    """Rebuild the plan's folder (tables, report, quantitative figures; qualitative figures kept) and the README block
    from ``<folder>/results``, running nothing."""
    if the_plan.readme:
        check_readme(the_plan.readme, the_plan.suite.make_target)
    _write_outputs(the_plan, the_plan.folder / "results", console or Console(stderr=True))


def _write_outputs(the_plan: ReproducePlan, runs: Path, console: Console) -> None:
    """The folder and the README block; results that predate self-description are described by the installed
    plugins."""
    written = write_leaderboard_folder(runs, the_plan.folder, the_plan.task_names, fallback=registry(),
                                       dataset_classes=registry().dataset,
                                       analyses={analysis.name for analysis in the_plan.suite.analyses})
    console.print(f"wrote {len(written)} files under {the_plan.folder}", markup=False, highlight=False)
    if the_plan.readme:
        write_readme_block(the_plan.readme, the_plan.task_names, the_plan.folder / "results", fallback=registry(),
                           block=the_plan.suite.make_target)
        console.print(f"rewrote the generated {the_plan.suite.make_target} block of {the_plan.readme}", markup=False,
                      highlight=False)
