"""``make leaderboard``: every registered method (but those whose class sets ``in_default_plan = False``, which run
only when named with ``--method``) on every phantom task at the ``cpu`` preset, then the committed
``leaderboard/`` folder and the README's generated results block regenerated from the results.

Ablation variants (methods of family ``ablation``, e.g. ``copedit-no-count``) are not part of that plan: they run
only in their own suite (``--suite ablations``, ``make ablations``): CoPeDiT and every variant on the BraTS twin,
missing 1, three seeds each, in the same runs folder (so the variants read CoPeDiT's stage-I tokenizers), written to
``leaderboard/ablations``.

Runs go through the ordinary runner, so an interrupted reproduction continues where it stopped and finished runs
are skipped. Before starting, the plan and an estimate of the remaining time are printed. :func:`refresh`
(``make readme``) rebuilds the folder's tables, report and the README block from the folder's own result copies,
running nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.text import Text

from mribench.plugins import registry
from mribench.results import RESULT_FILE, find_results
from mribench.runner import RunRequest, plan, run
from mribench.tasks import get_task

PHANTOM_TASKS = [*(f"phantom-brats-missing{k}" for k in (1, 2, 3)), *(f"phantom-ixi-missing{k}" for k in (1, 2)),
                 *(f"phantom-cardiac-missing{k}" for k in (8, 16, 24))]
# Every learned method (CoPeDiT, the baselines and their +Prompts variants) gets three seeds on the BraTS twin, the
# dataset of the paper's main and +Prompts tables; every other run has one seed (the plan's 2.5-hour budget).
THREE_SEEDS = ("copedit", "mmgan", "mmt", "m2dn", "hypergae", "mmt+prompts", "m2dn+prompts", "hypergae+prompts")
THREE_SEED_DATASETS = ("phantom-brats",)
# Torch threads of every reproduction run: CPU float results depend on the thread count, so it is fixed for a fresh
# clone to reproduce the committed numbers on any machine. One thread: the cpu presets' small models gain about 1.2x
# from a second thread (measured on CoPeDiT's stage I), while two plans side by side (split with --task) use both
# cores fully, and a single-threaded run does not stall when another process takes a core.
REPRODUCE_THREADS = 1
# Minutes per stage at the cpu preset, measured on this project's 2-core machine; used only for the estimate
# when the runs folder holds no timing of the method yet.
DEFAULT_FIT_MINUTES = 3.0
DEFAULT_RUN_MINUTES = 0.5
SUITES = ("leaderboard", "ablations")
ABLATION_TASKS = ["phantom-brats-missing1"]
ABLATION_BASE = "copedit"  # the full model every ablation variant is compared with
ABLATION_FAMILY = "ablation"


@dataclass
class ReproducePlan:
    tasks: list[str] = field(default_factory=lambda: list(PHANTOM_TASKS))
    preset: str = "cpu"
    runs: Path = Path("runs/leaderboard")
    out: Path = Path("leaderboard")
    methods: list[str] | None = None  # None: every registered, available method whose class is ``in_default_plan``
    three_seed_datasets: tuple[str, ...] = THREE_SEED_DATASETS
    readme: Path | None = None  # a README whose generated results block is rewritten too
    suite: str = "leaderboard"  # one of SUITES: which methods run when ``methods`` is None, and their seeds

    def seeds(self, method: str, dataset: str) -> range:
        if self.suite == "ablations":
            return range(3)
        return range(3 if method in THREE_SEEDS and dataset in self.three_seed_datasets else 1)

    def suite_methods(self) -> list[str]:
        """The leaderboard suite: every available method that is ``in_default_plan``, but the ablation variants; the
        ablations suite: CoPeDiT and its available ablation variants."""
        reg = registry()
        available = [n for n in reg.names("method") if reg.method(n).unavailable_reason() is None]
        variants = [n for n in available if reg.method(n).family == ABLATION_FAMILY]
        if self.suite == "ablations":
            return [ABLATION_BASE, *variants]
        return [n for n in available if n not in variants and reg.method(n).in_default_plan]

    def requests(self) -> list[RunRequest]:
        """The runs, seed by seed: every task and method at seed 0 first, so an interrupted plan leaves whole
        single-seed tables, and the extra seeds come last."""
        names = self.methods or self.suite_methods()
        reg = registry()
        requests = []
        for task_name in self.tasks:
            task = get_task(task_name)
            for name in names:
                cls = reg.method(name)
                if task.problem not in cls.problems or self.preset not in cls.presets:
                    continue
                for seed in self.seeds(name, task.dataset):
                    requests.append(RunRequest(method=name, task=task_name, preset=self.preset, seed=seed,
                                               out=self.runs))
        return sorted(requests, key=lambda request: request.seed)  # stable: task and method order kept per seed


def estimate_minutes(requests: list[RunRequest]) -> tuple[float, int]:
    """Remaining minutes (and pending run count), from timings of finished runs of the same method if any."""
    fit: dict[str, list[float]] = {}
    evaluate: dict[str, list[float]] = {}
    if requests:
        for _, result in find_results(requests[0].out):
            name = result.method["name"]
            fit.setdefault(name, []).append(result.timings.get("fit_or_load_s", 0) / 60)
            evaluate.setdefault(name, []).append(sum(v for k, v in result.timings.items()
                                                     if k != "fit_or_load_s") / 60)
    minutes, pending, trained = 0.0, 0, set()
    for request in requests:
        the_plan = plan(request)
        if (the_plan.folder / RESULT_FILE).exists():
            continue
        pending += 1
        minutes += max(evaluate.get(request.method, [DEFAULT_RUN_MINUTES]))
        model = (the_plan.model_family(), request.method, request.preset, request.seed)
        checkpoints = the_plan.models.glob(f"{model[0]}-*/{model[1]}/{model[2]}-seed{model[3]}/model.pt")
        if next(checkpoints, None) is None and model not in trained:  # the data key is known only once data is loaded
            trained.add(model)
            minutes += max(fit.get(request.method, [DEFAULT_FIT_MINUTES]))
    return minutes, pending


def reproduce(the_plan: ReproducePlan, console: Console | None = None, dry_run: bool = False) -> None:
    from mribench.report import check_readme

    console = console or Console(stderr=True)
    if the_plan.readme:
        check_readme(the_plan.readme)
    requests = the_plan.requests()
    minutes, pending = estimate_minutes(requests)
    console.print(Text.assemble((f"make {the_plan.suite}", "bold"), f": {len(requests)} runs ({pending} to do) over "
                                f"{len(the_plan.tasks)} tasks at the {the_plan.preset} preset; estimated "
                                f"{minutes:.0f} min remaining"), markup=False, highlight=False)
    if dry_run:
        for request in requests:
            console.print(f"  {request.task}  {request.method}  seed {request.seed}")
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(REPRODUCE_THREADS)
    try:
        for index, request in enumerate(requests, 1):
            console.rule(f"[{index}/{len(requests)}] {request.method} on {request.task}, seed {request.seed}")
            outcome = run(request, console=console)
            if outcome.status == "complete":
                console.print("complete (skipped)")
    finally:
        torch.set_num_threads(threads)
    _write_outputs(the_plan, the_plan.runs, console)


def refresh(the_plan: ReproducePlan, console: Console | None = None) -> None:
    """Rebuild ``the_plan.out`` (tables, report, quantitative figures; qualitative figures kept) and the README block
    from ``the_plan.out / "results"``, running nothing."""
    from mribench.report import check_readme

    if the_plan.readme:
        check_readme(the_plan.readme)
    _write_outputs(the_plan, the_plan.out / "results", console or Console(stderr=True))


def _write_outputs(the_plan: ReproducePlan, runs: Path, console: Console) -> None:
    from mribench.report import write_leaderboard_folder, write_readme_block

    written = write_leaderboard_folder(runs, the_plan.out, the_plan.tasks)
    console.print(f"wrote {len(written)} files under {the_plan.out}", markup=False, highlight=False)
    if the_plan.readme:
        write_readme_block(the_plan.readme, the_plan.tasks, the_plan.out / "results")
        console.print(f"rewrote the generated results block of {the_plan.readme}", markup=False, highlight=False)
