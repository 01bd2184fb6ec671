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
from rich.console import Console
from rich.table import Table as RichTable

from mribench.errors import MribenchError

app = typer.Typer(name="mribench", help="Benchmark for missing-MRI synthesis (missing modalities, missing slices).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
tasks_app = typer.Typer(help="List task specs, or show one.", invoke_without_command=True)
methods_app = typer.Typer(help="List synthesis methods, or show one.", invoke_without_command=True)
data_app = typer.Typer(help="Datasets: look at, prepare and verify them.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(methods_app, name="methods")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)
_state = {"debug": False}


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
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing half-written was kept; rerun the same command to resume", soft_wrap=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001
            if _state["debug"]:
                raise
            err.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                      soft_wrap=True, markup=False)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _state["debug"] = debug


class Overwrite(str, Enum):
    never = "never"
    missing = "missing"
    always = "always"


class Format(str, Enum):
    md = "md"
    csv = "csv"
    latex = "latex"
    html = "html"


class Layout(str, Enum):
    plain = "plain"
    paper = "paper"


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
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Fit (or reuse) a method, synthesize the test split, score it and write result.json."""
    from mribench.runner import RunRequest
    from mribench.runner import run as run_task

    _state["debug"] = _state["debug"] or debug
    outcome = run_task(RunRequest(method=method, task=task, preset=preset, seed=seed, data_root=data_root,
                                  out=out_dir, overwrite=overwrite.value, skip_bad=skip_bad), console=err)
    if outcome.status == "complete":
        out.print(f"complete: {outcome.folder / 'result.json'} exists (use --overwrite always to redo)")
    elif outcome.status == "done":
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
    from mribench.data.base import data_available
    from mribench.plugins import registry
    from mribench.tasks import task_registry

    reg, tasks = registry(), task_registry()
    table = RichTable("task", "problem", "dataset", "missing", "version", "data")
    table.columns[0].no_wrap = True
    for name in tasks.names():
        spec = tasks.get(name)
        if spec.dataset in reg.names("dataset"):
            available = "yes" if data_available(reg.dataset(spec.dataset), spec.dataset_options) else "absent"
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
    out.print(f"[bold]{spec.name}[/] v{spec.version} — {spec.description}")
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
        reason = item.cls.unavailable_reason()
        table.add_row(item.name, item.plugin, ", ".join(sorted(item.cls.problems)), ", ".join(item.cls.presets),
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
    out.print(f"[bold]{item.name}[/] (plugin {item.plugin}, version {item.cls.version}) — {item.cls.summary}")
    for preset, config in item.cls.presets.items():
        out.print(f"[bold]{preset}[/]")
        for field, value in dataclasses.asdict(config).items():
            out.print(f"  {field}: {json.dumps(value, default=str)}", soft_wrap=True, highlight=False)
        for key, value in item.cls.describe(preset, spec).items():
            if isinstance(value, dict):
                out.print(f"  [bold]{key}[/]")
                for inner, number in value.items():
                    shown = f"{number:,}" if isinstance(number, int) and not isinstance(number, bool) else number
                    out.print(f"    {inner}: {shown}", soft_wrap=True, highlight=False)
            else:
                out.print(f"  [bold]{key}[/]: {value}", soft_wrap=True, highlight=False)


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
    from mribench.training import make_progress

    with make_progress() as progress:
        path = show_subject(dataset, subject, output, data_root=data_root, progress=progress)
    out.print(f"wrote {path}")


@data_app.command("verify")
@handle_errors
def data_verify(
    dataset: Annotated[str, typer.Option(help="Registered dataset name, e.g. brats2021, ixi, acdc, nifti-folder.")],
    root: Annotated[Path, typer.Option(help="Folder holding the dataset in its official layout.")],
) -> None:
    """Check every subject (contrasts present, readable, 3D, one grid, finite, foreground, labels); exit 1 on errors."""
    from mribench.data.verify import open_dataset, problems_table, summary, verify_dataset
    from mribench.training import make_progress

    opened = open_dataset(dataset, root)
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
    from mribench.tasks import get_task
    from mribench.training import make_progress

    spec = get_task(task)
    with make_progress() as progress:
        data = load_task_data(spec, data_root, progress=progress, skip_bad=True)
    if data.skipped:
        out.print(problems_table([Problem(s, "", r) for s, r in zip(data.skipped, data.skip_reasons)]))
    out.print(f"{spec.name}: {len(data.train)} train + {len(data.validation)} validation + {len(data.test)} test "
              f"subjects of {data.root} preprocessed "
              f"and cached, {len(data.skipped)} skipped")
    if data.skipped:
        raise typer.Exit(1)


# -- plugins -------------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def plugins() -> None:
    """List loaded plugins, what they provide, and the error of any that failed."""
    from mribench.plugins import registry

    table = RichTable("plugin", "source", "module", "status", "provides")
    table.columns[0].no_wrap = True
    plugins_found = registry().plugins.values()
    for info in plugins_found:
        provides = "; ".join(f"{k}s: {', '.join(v)}" for k, v in info.provides.items())
        table.add_row(info.name, info.source, info.module, "ok" if info.ok else "[red]failed[/]", provides)
    out.print(table)
    for info in plugins_found:
        if not info.ok:
            out.print(f"[red]plugin {info.name!r} ({info.module}) failed:[/] {info.error}", soft_wrap=True)


# -- weights and scoring -------------------------------------------------------------------------------------
weights_app = typer.Typer(help="Pretrained weight files of the FID/FVD extractors (never downloaded).",
                          invoke_without_command=True)
app.add_typer(weights_app, name="weights")


def _print_weights() -> None:
    from mribench.metrics.features import list_weights

    for status in list_weights():
        out.print(f"[bold]{status.spec.key}[/] ({status.spec.metric}): {status.spec.filename} — {status.describe()}"
                  f"{' sha256 ' + status.sha256 if status.sha256 else ''}; looked in {'; '.join(status.looked)}",
                  soft_wrap=True)


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
    predictions: Annotated[Path, typer.Option(help="Folder <subject>/<element>.nii.gz as 'run' writes it.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the dataset (phantoms: generated).")] = None,
    preset: Annotated[str, typer.Option(help="Downstream segmenter preset for dice / fd-seg.")] = "cpu",
) -> None:
    """Score NIfTI predictions made outside mribench with the task's evaluators; prints JSON."""
    from dataclasses import asdict

    from mribench.metrics.score import score_predictions
    from mribench.tasks import get_task
    from mribench.training import make_progress

    with make_progress(err) as progress:
        outcome = score_predictions(get_task(task), predictions, data_root, preset, progress)
    sys.stdout.write(json.dumps({"metrics": {name: asdict(r) for name, r in outcome.results.items()},
                                 "clipped_voxels": outcome.clipped_voxels}, indent=2, default=str) + "\n")


# -- leaderboard ---------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def leaderboard(
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task(s) to tabulate (repeatable).")],
    runs: Annotated[Path, typer.Option(help="Folder of runs.")] = Path("runs"),
    fmt: Annotated[Format, typer.Option("--format", help="md, csv, latex or html (one self-contained page).")]
    = Format.md,
    output: Annotated[Optional[Path], typer.Option(help="Write to this file instead of stdout.")] = None,
    layout: Annotated[Layout, typer.Option(help="plain: methods × (task, metric); paper: the paper's tables.")]
    = Layout.plain,
    reference: Annotated[bool, typer.Option("--reference", help="Paper layout: add the paper's reported numbers.")]
    = False,
) -> None:
    """Methods as rows, tasks × metrics as columns, mean ± std, best bold, second underlined (or the paper's tables)."""
    from mribench.leaderboard import build_table, render
    from mribench.paper_layouts import build_paper_tables
    from mribench.results import atomic_write_text

    if reference and layout is not Layout.paper:
        raise MribenchError("--reference needs --layout paper")
    grids = build_paper_tables(task, runs, reference) if layout is Layout.paper else build_table(task, runs)
    text = render(grids, fmt.value)
    if output:
        atomic_write_text(output, text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


# -- benchmarks ----------------------------------------------------------------------------------------------
BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


@app.command()
@handle_errors
def bench(name: Annotated[Optional[str], typer.Argument(help="Benchmark name (e.g. ssim); none lists them.")]
          = None) -> None:
    """List the speed benchmarks, or run one (each prints ratios measured side by side in one run)."""
    import ast
    import subprocess

    from mribench.errors import UnknownNameError

    scripts = {p.stem.removeprefix("bench_"): p for p in sorted(BENCHMARKS_DIR.glob("bench_*.py"))}
    if name is None:
        for key, path in scripts.items():
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            out.print(f"[bold]{key}[/]  {doc.splitlines()[0] if doc else ''}", soft_wrap=True)
        return
    if name not in scripts:
        raise UnknownNameError("benchmark", name, scripts)
    raise typer.Exit(subprocess.call([sys.executable, str(scripts[name])]))


# -- report --------------------------------------------------------------------------------------------------
@app.command()
@handle_errors
def report(
    task: Annotated[list[str], typer.Option("--task", "-t", help="Task(s) to show (repeatable).")],
    runs: Annotated[Path, typer.Option(help="Folder of runs.")] = Path("runs"),
    output: Annotated[Path, typer.Option(help="report.html (one self-contained page) or a folder for PNGs.")]
    = Path("report.html"),
    data_root: Annotated[Optional[Path], typer.Option(help="Folder of the tasks' dataset (phantoms: generated).")]
    = None,
    subjects: Annotated[int, typer.Option(help="Test subjects in each qualitative grid.")] = 3,
) -> None:
    """Qualitative grids, per-subject PSNR box plots and PSNR against missing count, with the paper tables."""
    from mribench.report import write_report

    for path in write_report(task, runs, output, data_root=data_root, subjects=subjects):
        err.print(f"wrote {path}")


# -- reproduce (make leaderboard) ----------------------------------------------------------------------------
@app.command()
@handle_errors
def reproduce(
    runs: Annotated[Path, typer.Option(help="Where the runs are kept (resumable).")] = Path("runs/leaderboard"),
    output: Annotated[Path, typer.Option(help="The leaderboard folder to regenerate.")] = Path("leaderboard"),
    method: Annotated[Optional[list[str]], typer.Option("--method", "-m", help="Only these methods.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="Only these tasks.")] = None,
    preset: Annotated[str, typer.Option(help="Preset of every run.")] = "cpu",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and the estimate only.")] = False,
) -> None:
    """Run every registered method on every phantom task (3 seeds on the BraTS twin for CoPeDiT and its compared
    baselines) and regenerate the leaderboard folder. Interrupted? Run it again: finished runs are skipped."""
    from mribench.reproduce import PHANTOM_TASKS, ReproducePlan
    from mribench.reproduce import reproduce as reproduce_all

    reproduce_all(ReproducePlan(tasks=task or list(PHANTOM_TASKS), preset=preset, runs=runs, out=output,
                                methods=method or None), console=err, dry_run=dry_run)
