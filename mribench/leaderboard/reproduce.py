"""``mribench reproduce``: run a suite (:mod:`mribench.leaderboard.suite`, ``suites/<name>.yaml``), then regenerate its
leaderboard folder (and the README's generated results block) from the results.

``make leaderboard`` runs the ``phantom`` suite: every registered method (but those whose class sets
``in_default_plan = False``, which run only when named with ``--method``, and the ablation variants) on every phantom
task at the ``cpu`` preset. ``make ablations`` runs the ``ablations`` suite: CoPeDiT and every variant on the BraTS
twin, missing 1, three seeds each, in the same runs folder (so the variants read CoPeDiT's stage-I tokenizers),
written to ``leaderboard/ablations``.

Runs go through the ordinary runner, so an interrupted reproduction continues where it stopped and finished runs
are skipped; the suite's analyses then run on their runs (an analysis already stored is skipped). Before starting,
the plan and an estimate of the remaining time are printed. :func:`refresh` (``make readme``) rebuilds the folder's
tables, report and the README block from the folder's own result copies, running nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from mribench.analyze import ANALYSIS_RECORD, AnalyzeRequest, analysis_folder, analyze
from mribench.analyze import check as check_analysis
from mribench.leaderboard.readme import check_readme, write_readme_block
from mribench.leaderboard.report import write_leaderboard_folder
from mribench.leaderboard.suite import DEFAULT_SUITE, Suite, load_suite
from mribench.plugins import registry
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


@dataclass
class ReproducePlan:
    suite: Suite = field(default_factory=lambda: load_suite(DEFAULT_SUITE))
    tasks: list[str] | None = None  # None: the suite's
    preset: str = "cpu"
    runs: Path = Path("runs/leaderboard")
    out: Path | None = None  # None: the suite's output folder
    methods: list[str] | None = None  # None: the suite's methods
    readme: Path | None = None  # a README whose generated results block is rewritten too

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
    """Remaining minutes (and pending run count). A method's fit and run minutes come from its finished runs in the
    runs folder, else from its results in ``reference`` (the committed leaderboard's copies, so that a fresh clone's
    plan is estimated from measured runs), else from the defaults; each the mean over those results of the request's
    dataset when there are any (fits differ several-fold between datasets), else over all of them. The fit is the
    recorded training time of the model (a run that reused a model records the fit that made it, not its loading)."""
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
    minutes, pending, trained = 0.0, 0, set()
    for request in requests:
        the_plan = plan(request)
        try:
            stored = stored_config_hash(the_plan.folder / RESULT_FILE)
        except DamagedResultError:  # the runner redoes it
            stored = None
        if stored == config_hash(the_plan.config):
            continue
        pending += 1
        dataset = the_plan.task.dataset
        minutes += _mean_for(evaluate.get(request.method), dataset, DEFAULT_RUN_MINUTES)
        model = (the_plan.model_family(), request.method, request.preset, request.seed)
        checkpoints = the_plan.models.glob(f"{model[0]}-*/{model[1]}/{model[2]}-seed{model[3]}/model.pt")
        # a result of another config means its model is of that config too: the runner trains it again
        stale = stored is not None
        if (stale or next(checkpoints, None) is None) and model not in trained:  # data key: known once data loads
            trained.add(model)
            minutes += _mean_for(fit.get(request.method), dataset, DEFAULT_FIT_MINUTES)
    return minutes, pending


def _mean_for(timings: list[tuple[str, float]] | None, dataset: str, default: float) -> float:
    """Mean minutes of ``timings`` on ``dataset``, else over every dataset, else ``default``."""
    if not timings:
        return default
    values = [m for d, m in timings if d == dataset] or [m for _, m in timings]
    return sum(values) / len(values)


def reproduce(the_plan: ReproducePlan, console: Console | None = None, dry_run: bool = False) -> None:
    console = console or Console(stderr=True)
    if the_plan.readme:
        check_readme(the_plan.readme, the_plan.suite.make_target)
    requests = the_plan.requests()
    analyses = [(request, check_analysis(request)[1].folder)  # bad names fail before any run
                for request in the_plan.analysis_requests()]
    minutes, pending = estimate_minutes(requests, the_plan.timings_reference)
    console.print(Text.assemble((f"make {the_plan.suite.make_target}", "bold"), f": {len(requests)} runs ({pending} "
                                f"to do) over {len(the_plan.task_names)} tasks at the {the_plan.preset} preset; estimated "
                                f"{minutes:.0f} min remaining" + (f", plus {len(analyses)} analyses (not estimated)"
                                                                  if analyses else "")), markup=False, highlight=False)
    if the_plan.suite.notice:
        console.print(the_plan.suite.notice, markup=False, highlight=False)
    if dry_run:
        for request in requests:
            console.print(f"  {request.task}  {request.method}  seed {request.seed}")
        for request, _ in analyses:
            console.print(f"  {request.task}  {request.method}  seed {request.seed}  analysis {request.analysis}")
        return
    with torch_threads(REPRODUCE_THREADS):
        for index, request in enumerate(requests, 1):
            console.rule(f"[{index}/{len(requests)}] {request.method} on {request.task}, seed {request.seed}")
            outcome = run(request, console=console)
            if outcome.status == "complete":
                console.print("complete (skipped)")
        for index, (request, run_folder) in enumerate(analyses, 1):
            console.rule(Text(f"[analysis {index}/{len(analyses)}] {request.analysis} of {request.method} on "
                              f"{request.task}, seed {request.seed}"))
            if (analysis_folder(run_folder, request.analysis) / ANALYSIS_RECORD).is_file():
                console.print("complete (skipped)")
                continue
            analyze(request, console=console)
    _write_outputs(the_plan, the_plan.runs, console)


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
