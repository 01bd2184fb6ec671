"""The ``mribench`` command line (typer). Commands parse arguments and call the library; errors the user can fix
are one line on stderr with exit code 2 (the traceback only with ``--debug``)."""
from __future__ import annotations

import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from mribench.allocator import retain_freed_memory
from mribench.errors import MribenchError


def _keep_argument_help() -> None:
    """typer 0.20 stores an argument's help before click's ``Parameter.__init__``, which in recent click (8.5 here)
    resets ``help`` to None, so positional arguments lose their help text; store it again after that ``__init__``."""
    original = typer.core.TyperArgument.__init__
    if getattr(original, "keeps_help", False):
        return

    @functools.wraps(original)
    def init(self, *args, help: str | None = None, **kwargs):  # noqa: A002 - click's keyword
        original(self, *args, help=help, **kwargs)
        self.help = help

    init.keeps_help = True
    typer.core.TyperArgument.__init__ = init


_keep_argument_help()

app = typer.Typer(name="mribench", help="Benchmark for missing-MRI synthesis (missing modalities, missing slices).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
tasks_app = typer.Typer(help="List task specs, or show one.", invoke_without_command=True)
methods_app = typer.Typer(help="List synthesis methods, or show one.", invoke_without_command=True)
data_app = typer.Typer(help="Datasets: look at, prepare and verify them.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(methods_app, name="methods")
app.add_typer(data_app, name="data")

PIPE_WIDTH = 100_000  # a pipe or file gets every character: paths and problem texts are never cut to 80 columns


def make_console(stderr: bool = False) -> Console:
    """A console for user-facing text: rich markup and highlighting off (paths contain '['); in a pipe or file, no
    width limit, so nothing is truncated or wrapped. Styles are given explicitly as ``Text`` or ``style=``."""
    console = Console(stderr=stderr, markup=False, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, markup=False, highlight=False, width=PIPE_WIDTH)
    return console


out = make_console()
err = make_console(stderr=True)
_state = {"debug": False}


def error_line(message: object) -> Text:
    """``error: <message>`` with the message taken literally (no markup, no highlighting) on one line."""
    return Text.assemble(("error:", "bold red"), " ", " ".join(str(message).split()))


def handle_errors(func):
    """Turn user errors into one line + exit 2, Ctrl-C into exit 130, bugs into one line + exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except MribenchError as exc:
            if _state["debug"]:
                raise
            err.print(error_line(exc), soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing half-written was kept; rerun the same command to resume", soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001
            if _state["debug"]:
                raise
            err.print(" ".join(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
                               .split()), soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        import importlib.metadata

        out.print(f"mribench {importlib.metadata.version('mribench')}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version,
                                          is_eager=True)] = False,
) -> None:
    global out, err
    out, err = make_console(), make_console(stderr=True)  # the streams may have changed since import (tests, pipes)
    retain_freed_memory()  # training steps reuse their freed activations instead of page-faulting them back in
    _state["debug"] = debug


class Overwrite(str, Enum):
    never = "never"
    missing = "missing"
    always = "always"


class PredictionGrids(str, Enum):
    native = "native"
    preprocessed = "preprocessed"
    both = "both"


class Format(str, Enum):
    md = "md"
    csv = "csv"
    latex = "latex"
    html = "html"


class Layout(str, Enum):
    plain = "plain"
    paper = "paper"


def task_names(tasks: list[str], runs: Path | None = None) -> list[str]:
    """Names of ``--task`` values given as registered names or YAML paths; with ``runs``, also the name of any task
    that has results there (a task run from a YAML file). Unknown names get "did you mean"."""
    from mribench.errors import UnknownNameError
    from mribench.tasks import get_task, task_registry

    names = []
    for task in tasks:
        if runs is not None and not task.endswith((".yaml", ".yml")) and (Path(runs) / task).is_dir():
            names.append(task)
            continue
        try:
            names.append(get_task(task).name)
        except UnknownNameError:
            with_results = [p.name for p in Path(runs).iterdir() if p.is_dir() and not p.name.startswith("_")] \
                if runs is not None and Path(runs).is_dir() else []
            raise UnknownNameError("task", task, set(task_registry().names()) | set(with_results)) from None
    return list(dict.fromkeys(names))


# -- run -----------------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method name (see 'mribench methods').")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see 'mribench tasks') or a YAML path.")],
    preset: Annotated[str, typer.Option(help="smoke (seconds), cpu (minutes), paper (GPU).")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of training and sampling.")] = 0,
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the task's dataset.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where runs are stored.")] = Path("runs"),
    overwrite: Annotated[Overwrite, typer.Option(help="never | missing (resume) | always (redo).")] = Overwrite.missing,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip bad subjects (recorded) instead of stopping.")]
    = False,
    predictions: Annotated[PredictionGrids, typer.Option(
        help="Grid of the NIfTI predictions: native (each subject's source volume, under predictions/), "
             "preprocessed (the task's grid, under predictions-preprocessed/) or both.")] = PredictionGrids.native,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Fit (or reuse) a method, synthesize the test split, score it and write result.json."""
    from mribench.runner import RunRequest
    from mribench.runner import run as run_task

    _state["debug"] = _state["debug"] or debug
    outcome = run_task(RunRequest(method=method, task=task, preset=preset, seed=seed, data_root=data_root,
                                  out=out_dir, overwrite=overwrite.value, skip_bad=skip_bad,
                                  predictions=predictions.value), console=err)
    if outcome.status == "complete":
        out.print(f"complete: {outcome.folder / 'result.json'} exists (use --overwrite always to redo)")
    elif outcome.status == "done":
        for skipped in outcome.result.skipped:
            err.print(f"skipped {skipped['subject']}: {skipped['reason']}", soft_wrap=True)
        if outcome.result.skipped:
            err.print(f"--skip-bad: {len(outcome.result.skipped)} bad subject(s) skipped (listed in result.json); "
                      "this result is not comparable with a run on every subject", soft_wrap=True)
        summary = ", ".join(f"{name} {m['aggregate']['mean']:.4g}" for name, m in outcome.result.metrics.items()
                            if m["status"] == "ok" and m["aggregate"])
        out.print(f"wrote {outcome.folder / 'result.json'}: {summary}")


@app.command()
@handle_errors
def curve(
    method: Annotated[str, typer.Option("--method", "-m", help="A learned method (see 'mribench methods').")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see 'mribench tasks') or a YAML path.")],
    preset: Annotated[str, typer.Option(help="smoke (seconds), cpu (minutes), paper (GPU).")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of training and sampling.")] = 0,
    points: Annotated[int, typer.Option(help="Validation scores per preset length of training.")] = 8,
    scale: Annotated[int, typer.Option(help="The longer run trains scale x the preset's steps.")] = 2,
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the task's dataset.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where runs (and their models) are stored.")] = Path("runs"),
    overwrite: Annotated[Overwrite, typer.Option(help="never | missing (resume) | always (redo).")] = Overwrite.missing,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip bad subjects (recorded) instead of stopping.")]
    = False,
) -> None:
    """Validation PSNR against training steps and time (preset vs scale x its steps) and the plateau verdict."""
    from mribench.curve import CurveRequest
    from mribench.curve import curve as make_curve

    outcome = make_curve(CurveRequest(method=method, task=task, preset=preset, seed=seed, points=points, scale=scale,
                                      data_root=data_root, out=out_dir, overwrite=overwrite.value, skip_bad=skip_bad),
                         console=err)
    summary = outcome.summary
    prefix = "complete: " if outcome.status == "complete" else "wrote "
    out.print(f"{prefix}{outcome.folder / 'curve.csv'}: validation PSNR {summary['psnr_at_preset_steps']:.2f} dB "
              f"at {summary['preset_steps']} steps, {summary['psnr_at_scaled_steps']:.2f} dB at "
              f"{summary['scaled_steps']} ({summary['gain_db']:+.2f} dB): {summary['verdict']}",
              markup=False, highlight=False, soft_wrap=True)


# -- tasks ---------------------------------------------------------------------------------------------------
@tasks_app.callback()
@handle_errors
def tasks_list(ctx: typer.Context) -> None:
    """List every registered task and whether its data is available."""
    if ctx.invoked_subcommand:
        return
    from mribench.locations import data_available
    from mribench.plugins import registry
    from mribench.tasks import task_registry

    reg, tasks = registry(), task_registry()
    table = RichTable("task", "problem", "dataset", "missing", "version", "data")
    table.columns[0].no_wrap = True
    for name in tasks.names():
        spec = tasks.get(name)
        if spec.dataset in reg.names("dataset"):
            generated = reg.get("dataset", spec.dataset).fact("generated")
            available = "yes" if data_available(spec.dataset, generated) else "absent"
        else:
            available = "no loader installed"
        table.add_row(name, spec.problem, spec.dataset, f"{spec.missing}/{spec.n_elements}", str(spec.version),
                      available)
    out.print(table)


@tasks_app.command("show")
@handle_errors
def tasks_show(name: Annotated[str, typer.Argument(help="Task name.")]) -> None:
    """Show a task's validated spec, its hash and the paper's reference numbers."""
    from mribench.tasks import get_task

    spec = get_task(name)
    out.print(Text.assemble((spec.name, "bold"), f" v{spec.version} — {spec.description}"), soft_wrap=True)
    out.print(f"task hash: {spec.hash}")
    out.print_json(json.dumps(spec.model_dump(mode="json", exclude={"reference"})))
    if spec.reference:
        table = RichTable("metric", "method", "reported", title=f"reported in {spec.reference.source}")
        for metric, values in spec.reference.values.items():
            for method, value in values.items():
                shown = f"{value[0]} ± {value[1]}" if isinstance(value, (list, tuple)) else str(value)
                table.add_row(metric, method, shown)
        out.print(table)


# -- methods -------------------------------------------------------------------------------------------------
@methods_app.callback()
@handle_errors
def methods_list(ctx: typer.Context) -> None:
    """List every registered method: plugin, problems, presets and availability."""
    if ctx.invoked_subcommand:
        return
    from mribench.plugins import registry

    table = RichTable("method", "plugin", "problems", "presets", "status")
    table.columns[0].no_wrap = True
    for item in registry().items("method"):
        reason = item.fact("unavailable_reason")()
        table.add_row(item.name, item.plugin, ", ".join(sorted(item.fact("problems"))), ", ".join(item.fact("presets")),
                      f"unavailable: {reason}" if reason else "ok")
    out.print(table)


@methods_app.command("show")
@handle_errors
def methods_show(
    name: Annotated[str, typer.Argument(help="Method name.")],
    task: Annotated[Optional[str], typer.Option(help="Task whose shapes size the networks.")] = None,
) -> None:
    """Show each preset's config and, where the networks can be built on the CPU, their parameter counts."""
    import dataclasses

    from mribench.plugins import registry
    from mribench.tasks import get_task

    item = registry().get("method", name)
    spec = get_task(task) if task else None
    out.print(Text.assemble((item.name, "bold"), f" (plugin {item.plugin}, version {item.cls.version}) — "
                            f"{item.cls.summary}"), soft_wrap=True)
    for preset, config in item.cls.presets.items():
        out.print(preset, style="bold")
        fields = dataclasses.asdict(config)
        for field, value in fields.items():
            out.print(f"  {field}: {json.dumps(value, default=str)}", soft_wrap=True, highlight=False)
        for key, value in item.cls.describe(preset, spec).items():
            if isinstance(value, dict):
                out.print(f"  {key}", style="bold")
                for inner, number in value.items():
                    shown = f"{number:,}" if isinstance(number, int) and not isinstance(number, bool) else number
                    out.print(f"    {inner}: {shown}", soft_wrap=True, highlight=False)
            else:
                out.print(Text.assemble("  ", (key, "bold"), f": {value}"), soft_wrap=True)
        for problem, replaced in item.cls.problem_presets.get(preset, {}).items():
            out.print(f"  on {problem} tasks, instead:", style="bold", highlight=False)
            for field, value in dataclasses.asdict(replaced).items():
                if fields.get(field) != value:
                    out.print(f"    {field}: {json.dumps(value, default=str)}", soft_wrap=True, highlight=False)


# -- data ----------------------------------------------------------------------------------------------------
@data_app.command("show")
@handle_errors
def data_show(
    dataset: Annotated[str, typer.Option(help="Registered dataset name, e.g. phantom-brats.")],
    subject: Annotated[str, typer.Option(help="Subject ID, e.g. BraTS2021_00000.")],
    output: Annotated[Path, typer.Option(help="PNG file to write.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the dataset (phantoms: generated).")] = None,
) -> None:
    """Draw every contrast of one subject in three planes, with its labels, into a PNG."""
    from mribench.data.show import show_subject
    from mribench.plugins import registry
    from mribench.preflight import check_output_file
    from mribench.progress import make_progress

    check_output_file(output, "--output", f"{subject}.png")
    dataset_cls = registry().dataset(dataset)
    with make_progress() as progress:
        path = show_subject(dataset_cls, subject, output, data_root=data_root, progress=progress)
    out.print(f"wrote {path}")


@data_app.command("verify")
@handle_errors
def data_verify(
    dataset: Annotated[str, typer.Option(help="Registered dataset name, e.g. brats2021, ixi, acdc, nifti-folder.")],
    data_root: Annotated[Path, typer.Option("--data-root", "--root",
                                            help="Folder holding the dataset in its official layout.")],
) -> None:
    """Check every subject (contrasts present, readable, 3D, one grid, finite, foreground, labels); exit 1 on errors."""
    from mribench.data.verify import open_dataset, problems_table, summary, verify_dataset
    from mribench.plugins import registry
    from mribench.progress import make_progress

    opened = open_dataset(registry().dataset(dataset), data_root)
    with make_progress() as progress:
        problems = verify_dataset(opened, progress)
    if problems:
        out.print(problems_table(problems))
    out.print(summary(opened, problems))
    if any(p.severity == "error" for p in problems):
        raise typer.Exit(1)


@data_app.command("prepare")
@handle_errors
def data_prepare(
    task: Annotated[str, typer.Option(help="Task name or YAML path, e.g. brats-missing1.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the task's dataset.")] = None,
) -> None:
    """Check and preprocess every subject of a task's split into the cache; bad subjects are listed (exit 1)."""
    from mribench.data import load_task_data
    from mribench.data.nifti import Problem
    from mribench.data.verify import problems_table
    from mribench.plugins import registry
    from mribench.progress import make_progress
    from mribench.tasks import get_task

    spec = get_task(task)
    dataset_cls = registry().dataset(spec.dataset)
    with make_progress() as progress:
        data = load_task_data(spec, dataset_cls, data_root, progress=progress, skip_bad=True)
    if data.skipped:
        out.print(problems_table([Problem(s, "", r) for s, r in zip(data.skipped, data.skip_reasons)]))
    out.print(f"{spec.name}: {len(data.train)} train + {len(data.validation)} validation + {len(data.test)} test "
              f"subjects of {data.root} preprocessed "
              f"and cached, {len(data.skipped)} skipped")
    if data.skipped:
        raise typer.Exit(1)


@data_app.command("calibrate")
@handle_errors
def data_calibrate(
    real_data: Annotated[Path, typer.Option(help="Folder of real cases laid out like ../shared/data (cardiac/, "
                                                 "brain/).")],
    twin: Annotated[Optional[list[str]], typer.Option(help="cardiac and/or brain (repeatable; default both).")]
    = None,
    subjects: Annotated[int, typer.Option(min=1, max=100, help="Phantom subjects scored per twin.")] = 20,
) -> None:
    """Score the floors on the phantom twins and on real scans, preprocessed alike, and print them side by side."""
    from mribench.calibrate import TWINS, calibrate_twin, check_request, render_markdown
    from mribench.progress import make_progress

    twins = twin or list(TWINS)
    check_request(real_data, twins)
    with make_progress(err) as progress:
        reports = [calibrate_twin(name, real_data, subjects, progress) for name in twins]
    sys.stdout.write(render_markdown(reports))


# -- plugins -------------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def plugins(
    check: Annotated[bool, typer.Option("--check", help="Also import every registered class (slow: loads torch) and "
                                                        "show the plugins whose classes fail to import.")] = False,
) -> None:
    """List loaded plugins, what they provide, and the error of any that failed."""
    from mribench.errors import PluginError
    from mribench.plugins import registry

    reg = registry()
    if check:
        for kind in ("method", "dataset", "metric", "analysis", "benchmark"):
            for item in reg.items(kind):
                try:
                    item.cls
                except PluginError:
                    pass  # recorded as the plugin's error, shown below
    table = RichTable("plugin", "source", "module", "status", "provides")
    table.columns[0].no_wrap = True
    plugins_found = reg.plugins.values()
    for info in plugins_found:
        provides = "; ".join(f"{'analyses' if k == 'analysis' else k + 's'}: {', '.join(v)}"
                             for k, v in info.provides.items())
        table.add_row(info.name, info.source, info.module, "ok" if info.ok else Text("failed", "red"), provides)
    out.print(table)
    for info in plugins_found:
        if not info.ok:
            out.print(Text.assemble((f"plugin {info.name!r} ({info.module}) failed:", "red"), f" {info.error}"),
                      soft_wrap=True)


# -- weights and scoring -------------------------------------------------------------------------------------
weights_app = typer.Typer(help="Pretrained weight files of the FID/FVD extractors (never downloaded).",
                          invoke_without_command=True)
app.add_typer(weights_app, name="weights")


def _print_weights() -> None:
    from mribench.metrics.features import list_weights

    for status in list_weights():
        out.print(Text.assemble((status.spec.key, "bold"), f" ({status.spec.metric}): {status.spec.filename} — "
                                f"{status.describe()}{' sha256 ' + status.sha256 if status.sha256 else ''}; "
                                f"looked in {'; '.join(status.looked)}"), soft_wrap=True)


@weights_app.callback()
@handle_errors
def weights_default(ctx: typer.Context) -> None:
    """List each extractor's weight file, where it was looked for, and whether it is present and verified."""
    if not ctx.invoked_subcommand:
        _print_weights()


@weights_app.command("list")
@handle_errors
def weights_list() -> None:
    """List each extractor's weight file, where it was looked for, and whether it is present and verified."""
    _print_weights()


@weights_app.command("add")
@handle_errors
def weights_add(file: Annotated[Path, typer.Argument(help="A weight file with its official name.")]) -> None:
    """Check a weight file's hash and copy it into the weights folder ($MRIBENCH_WEIGHTS or the cache)."""
    from mribench.metrics.features import add_weights

    err.print(f"added {add_weights(file)}")


@app.command()
@handle_errors
def score(
    task: Annotated[str, typer.Option(help="Task name or YAML file.")],
    predictions: Annotated[Path, typer.Option(help="Folder <subject>/<element>.nii.gz as 'run' writes it, on the "
                                                   "subjects' source grids or on the task's preprocessed grid.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the dataset (phantoms: generated).")] = None,
    preset: Annotated[str, typer.Option(help="Downstream segmenter preset for dice / fd-seg.")] = "cpu",
) -> None:
    """Score NIfTI predictions made outside mribench with the task's evaluators; prints JSON."""
    from dataclasses import asdict

    from mribench.metrics.score import score_predictions
    from mribench.plugins import registry
    from mribench.preflight import check_task
    from mribench.tasks import get_task
    from mribench.progress import make_progress

    spec = get_task(task)
    check_task(spec)
    metric_classes = registry().task_metrics(spec)
    with make_progress(err) as progress:
        outcome = score_predictions(spec, registry().dataset(spec.dataset), metric_classes, predictions, data_root,
                                    preset, progress)
    sys.stdout.write(json.dumps({"metrics": {name: asdict(r) for name, r in outcome.results.items()},
                                 "clipped_voxels": outcome.clipped_voxels}, indent=2, default=str) + "\n")


# -- leaderboard ---------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def leaderboard(
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task name(s) or YAML path(s) to tabulate "
                                                             "(repeatable).")],
    runs: Annotated[Path, typer.Option(help="Folder of runs.")] = Path("runs"),
    fmt: Annotated[Format, typer.Option("--format", help="md, csv, latex or html (one self-contained page).")]
    = Format.md,
    output: Annotated[Optional[Path], typer.Option(help="Write to this file instead of stdout.")] = None,
    layout: Annotated[Layout, typer.Option(help="plain: methods × (task, metric); paper: the paper's tables.")]
    = Layout.plain,
    reference: Annotated[bool, typer.Option("--reference", help="Paper layout: add the paper's reported numbers "
                                                           "(the ablation tables always show them).")]
    = False,
) -> None:
    """Methods as rows, tasks × metrics as columns, mean ± std, best bold, second underlined (or the paper's tables)."""
    from mribench.atomic import atomic_write_text
    from mribench.leaderboard.layouts.paper import build_paper_tables
    from mribench.leaderboard.layouts.plain import build_table
    from mribench.leaderboard.render import render
    from mribench.plugins import registry
    from mribench.preflight import check_output_file

    if reference and layout is not Layout.paper:
        raise MribenchError("--reference needs --layout paper")
    if output:
        extension = {"latex": "tex"}.get(fmt.value, fmt.value)
        check_output_file(output, "--output", f"leaderboard.{extension}")
    task = task_names(task, runs)
    # results that predate self-description are described by the installed plugins
    grids = build_paper_tables(task, runs, reference, fallback=registry()) if layout is Layout.paper \
        else build_table(task, runs, fallback=registry())
    text = render(grids, fmt.value)
    if output:
        atomic_write_text(output, text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


# -- benchmarks ----------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def bench(
    names: Annotated[Optional[list[str]], typer.Argument(help="Benchmarks to run (see --list); none: all.")] = None,
    repeats: Annotated[int, typer.Option(help="Samples per figure (min / median / max shown; goals judge the "
                                              "median).")] = 5,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Also write machine, torch, threads and every "
                                                                     "figure to this JSON file.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads (default: torch's).")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="Tiny problem sizes: checks the machinery in seconds; the "
                                                      "figures mean nothing.")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="List the benchmarks and run none.")] = False,
) -> None:
    """Run the speed benchmarks (all, or those named) and print each figure against its goal."""
    from mribench.bench import BenchSettings, bench_rows, resolve, run_benchmarks, write_json
    from mribench.plugins import registry

    if list_only:
        for item in registry().items("benchmark"):
            out.print(Text.assemble((item.name, "bold"), f"  {item.fact('summary')}"), soft_wrap=True)
        return
    settings = BenchSettings(repeats=repeats, tiny=tiny)
    chosen = resolve(names or [])
    if threads is not None:
        if threads < 1:
            raise MribenchError(f"--threads {threads}: give at least 1")
        import torch

        torch.set_num_threads(threads)
    if json_file is not None:
        from mribench.preflight import check_output_file

        check_output_file(json_file, "--json", "bench.json")
    err.print(f"running {', '.join(chosen)}: {repeats} repeat(s) each{', tiny sizes' if tiny else ''}",
              soft_wrap=True)
    outcome = run_benchmarks(chosen, settings,
                             on_done=lambda name, _: err.print(f"{name} done", soft_wrap=True))
    table = RichTable("benchmark", "figure", "median", "min", "max", "goal", "met")
    for row in bench_rows(outcome.figures):
        table.add_row(*row)
    machine = outcome.machine
    out.print(f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, {machine['threads']} threads; "
              f"load average {outcome.load_before[0]:.2f} before, {outcome.load_after[0]:.2f} after", soft_wrap=True)
    out.print(table)
    if json_file is not None:
        write_json(outcome, json_file)
        err.print(f"wrote {json_file}")


# -- report --------------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def report(
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task name(s) or YAML path(s) to show "
                                                             "(repeatable).")],
    runs: Annotated[Path, typer.Option(help="Folder of runs.")] = Path("runs"),
    output: Annotated[Path, typer.Option(help="report.html (one self-contained page) or a folder for PNGs.")]
    = Path("report.html"),
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the tasks' dataset (phantoms: generated).")]
    = None,
    subjects: Annotated[int, typer.Option(help="Test subjects in each qualitative grid.")] = 3,
) -> None:
    """Qualitative grids, per-subject PSNR box plots and PSNR against missing count, with the paper tables."""
    from mribench.leaderboard.report import write_report
    from mribench.plugins import registry
    from mribench.preflight import check_output_file, check_output_folder

    if output.suffix.lower() in (".html", ".htm"):
        check_output_file(output, "--output", "report.html")
    else:
        check_output_folder(output, "--output")
    for path in write_report(task_names(task, runs), runs, output, data_root=data_root, subjects=subjects,
                             fallback=registry(), dataset_classes=registry().dataset):
        err.print(f"wrote {path}")


# -- analyze -------------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def analyze(
    name: Annotated[str, typer.Argument(help="Analysis name: prompts (CoPeDiT's prompt analyses, test subjects) or "
                                             "tokenizer (CoPeVAE pretext-task ablation, validation subjects).")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name or YAML path.")],
    method: Annotated[str, typer.Option("--method", "-m", help="The trained method to analyse.")] = "copedit",
    preset: Annotated[str, typer.Option(help="Preset of the method's run.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the method's run (and of the analysis' random edits).")] = 0,
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the task's dataset.")] = None,
    runs: Annotated[Path, typer.Option(help="Folder of runs (as 'mribench run --out').")] = Path("runs"),
    subject: Annotated[Optional[str], typer.Option(help="prompts: the test subject whose attention maps are drawn "
                                                        "(default: the first test subject).")] = None,
    missing: Annotated[Optional[str], typer.Option(help="prompts: the missing configuration of the attention maps "
                                                        "(default: the subject's evaluation pattern). Brain: modality "
                                                        "names, comma-separated (T1ce,FLAIR); cardiac: the missing "
                                                        "run of slices FIRST-LAST, 0-based, inclusive (12-19). Its "
                                                        "count must lie in the task's train_missing range.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Run a registered analysis on a method's run (trained and evaluated first when absent); CSV, PNG and markdown
    go to <runs>/<task>/<method>/<preset>-seed<k>/analysis/<name>/, which 'mribench report' shows. --subject and
    --missing are checked before any model is trained or loaded."""
    from mribench.analyze import AnalyzeRequest
    from mribench.analyze import analyze as run_analysis

    _state["debug"] = _state["debug"] or debug
    for path in run_analysis(AnalyzeRequest(analysis=name, task=task, method=method, preset=preset, seed=seed,
                                            runs=runs, data_root=data_root, subject=subject, missing=missing),
                                 console=err):
        out.print(f"wrote {path}")


# -- reproduce (make leaderboard) ----------------------------------------------------------------------------
@app.command()
@handle_errors
def reproduce(
    runs: Annotated[Path, typer.Option(help="Where the runs are kept (resumable).")] = Path("runs/leaderboard"),
    output: Annotated[Optional[Path], typer.Option(help="The leaderboard folder to regenerate (default: the suite's "
                                                        "output: leaderboard, leaderboard/ablations or "
                                                        "runs/demo-leaderboard).")] = None,
    suite: Annotated[str, typer.Option(help="A suite of suites/: phantom (make leaderboard): every method but the "
                                            "ablation variants on every phantom task; ablations: CoPeDiT and its "
                                            "ablation variants on the BraTS twin, missing 1, 3 seeds; demo (make "
                                            "demo): three floors and CoPeDiT on one task.")] = "phantom",
    method: Annotated[Optional[list[str]], typer.Option("--method", "-m", help="Only these methods.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="Only these tasks (names or YAML "
                                                                         "paths).")] = None,
    preset: Annotated[str, typer.Option(help="Preset of every run.")] = "cpu",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and the estimate only.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Models trained side by side, one worker process "
                                      "with one torch thread each (at most one per core); each model's output goes "
                                      "to RUNS/_logs/. The results are those of one job.")] = 1,
    readme: Annotated[Optional[Path], typer.Option(help="Also rewrite this README's generated results block (between "
                                                        "its leaderboard:begin/end markers).")] = None,
    from_results: Annotated[bool, typer.Option("--from-results", help="Run nothing: rebuild the folder's tables, "
                                               "report and the README block from OUTPUT/results.")] = False,
) -> None:
    """Run every registered method of the default plan on every phantom task (3 seeds on the BraTS twin for every
    learned method, seed 0 of everything first) and regenerate the leaderboard folder. Interrupted? Run it again:
    finished runs are skipped. The ablation variants run only with --suite ablations."""
    from mribench.leaderboard.reproduce import ReproducePlan, refresh
    from mribench.leaderboard.reproduce import reproduce as reproduce_all
    from mribench.leaderboard.suite import load_suite

    the_plan = ReproducePlan(suite=load_suite(suite), tasks=task_names(task) if task else None, preset=preset,
                             runs=runs, out=output, methods=method or None, readme=readme, jobs=jobs)
    if from_results:
        refresh(the_plan, console=err)
    else:
        reproduce_all(the_plan, console=err, dry_run=dry_run)
