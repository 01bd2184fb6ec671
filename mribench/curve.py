"""``mribench curve``: validation PSNR against training steps and wall time, and the plateau verdict.

A method is trained twice at its preset through its step hook (see :mod:`mribench.method`): once exactly as the
preset says (N steps of the hooked stage, the model ``mribench run`` would train) and once with ``scale`` × N steps,
everything else alike (its learning-rate schedule stretched over the longer run). Two runs, because step N of the
longer run is not the preset's model: its learning rate has not decayed yet. Both are scored on the same grid of
``points`` evenly spaced steps per N, on the protocol's **validation** subjects (never test), with the task's PSNR
(missing elements, observed ones written back, as ``mribench run`` scores).

Verdict: ``plateau`` when the longer run gains < 0.5 dB validation PSNR over the preset (with the default scale 2,
"twice the steps gains < 0.5 dB"), else ``not converged``.

Files, next to the model the runner trains (``<out>/_models/<dataset>-<key>/<method>/<preset>-seed<k>/``):
``curve.csv`` (one row per scored step), ``curve.json`` (the verdict, its numbers and provenance), ``curve.png``.
Work goes to ``curve-work/<run>-<config hash>/`` there: a killed curve resumes from the runs' checkpoints and its
scored points; a changed preset starts afresh.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console

from mribench.atomic import atomic_write_bytes, atomic_write_text
from mribench.data import load_task_data
from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.method import Method, StepHook, config_hash
from mribench.plugins import registry
from mribench.protocol import derive_seed, evaluation_availability
from mribench.results import provenance
from mribench.runner import Plan, RunRequest, evaluation_batch, plan
from mribench.tasks import TaskSpec
from mribench.training import make_progress, seed_everything

PLATEAU_GAIN_DB = 0.5  # the plateau rule: scale × the steps gains less than this validation PSNR
CURVE_CSV, CURVE_JSON, CURVE_PNG, CURVE_WORK = "curve.csv", "curve.json", "curve.png", "curve-work"


@dataclass(frozen=True)
class CurveRequest:
    method: str
    task: str
    preset: str = "cpu"
    seed: int = 0
    points: int = 8  # scored steps per preset length N (the longer run is scored on the same grid)
    scale: int = 2  # the longer run has scale × N steps
    data_root: Path | None = None
    out: Path = Path("runs")
    overwrite: Literal["never", "missing", "always"] = "missing"
    skip_bad: bool = False


@dataclass
class CurvePoint:
    schedule_steps: int  # the run's length: N (the preset) or scale × N
    step: int
    training_seconds: float
    validation_psnr: float


@dataclass
class CurveOutcome:
    status: Literal["complete", "done"]
    folder: Path
    summary: dict[str, Any] = field(default_factory=dict)


def score_steps(preset_steps: int, points: int, schedule_steps: int) -> list[int]:
    """The grid: ``points`` evenly spaced steps per ``preset_steps``, up to ``schedule_steps`` (always included)."""
    grid = {max(1, round(preset_steps * i / points)) for i in range(1, points * schedule_steps // preset_steps + 1)}
    return sorted(s for s in grid | {schedule_steps} if s <= schedule_steps)


def validation_psnr(method: Method, task: TaskSpec, validation: SubjectSet, seed: int) -> float:
    """Mean per-subject PSNR of the missing elements over the validation subjects (observed ones written back)."""
    options = next((spec.options for spec in task.metrics if spec.name == "psnr"), {})
    metric = registry().metric("psnr")(**options)
    for subject in validation:
        batch = evaluation_batch(task, subject)
        torch.manual_seed(derive_seed("synthesize", seed, task.name, subject.subject_id))
        output = method.synthesize(batch)[0].float().cpu().numpy()
        if output.shape != subject.image.shape or not np.isfinite(output).all():
            raise MribenchError(f"method {method.name} returned shape {output.shape} or NaN/Inf for validation "
                                f"subject {subject.subject_id}")
        availability = evaluation_availability(task, subject.subject_id)
        observed = np.broadcast_to(availability[:, :, None, None], output.shape)
        completed = np.where(observed, subject.image, np.clip(output, 0, 1)).astype(np.float32)
        metric.update(torch.from_numpy(completed)[None], torch.from_numpy(np.array(subject.image, np.float32))[None],
                      torch.from_numpy(availability)[None],
                      {"subject_id": subject.subject_id, "element_names": task.element_names, "problem": task.problem})
    return float(metric.compute().aggregate["mean"])


def verdict(gain_db: float) -> str:
    """The plateau rule on the validation PSNR the longer run gains over the preset."""
    return "plateau" if gain_db < PLATEAU_GAIN_DB else "not converged"


def _read_points(path: Path) -> dict[int, CurvePoint]:
    if not path.exists():
        return {}
    return {int(step): CurvePoint(**point) for step, point in json.loads(path.read_text()).items()}


def _train_and_score(the_plan: Plan, request: CurveRequest, config: Any, steps: list[int], data, workdir: Path,
                     shared_dir: Path, progress) -> list[CurvePoint]:
    """Fit ``config`` in ``workdir`` (resuming there), scoring validation at ``steps``; returns the points."""
    points_path = workdir / "points.json"
    points = _read_points(points_path)
    schedule_steps = the_plan.method_cls.hooked_steps(config)
    if any(step not in points for step in steps):
        method = the_plan.method_cls(config, seed=request.seed)
        method.shared_dir = shared_dir
        method.validation = data.validation

        def score(step: int, training_seconds: float) -> None:
            points[step] = CurvePoint(schedule_steps, step, round(training_seconds, 3),
                                      validation_psnr(method, the_plan.task, data.validation, request.seed))
            atomic_write_text(points_path, json.dumps({s: vars(p) for s, p in sorted(points.items())}, indent=1))

        method.step_hook = StepHook(frozenset(steps), score)
        seed_everything(derive_seed("fit", request.seed))
        method.fit(data.train, the_plan.task, workdir / "work", progress)
        unscored = [step for step in steps if step not in points]
        if unscored:
            raise MribenchError(f"{workdir}: training finished without scoring steps {unscored} (a run from another "
                                "curve?); rerun with --overwrite always")
    return [points[step] for step in steps]


def curve(request: CurveRequest, console: Console | None = None) -> CurveOutcome:
    """Train, score validation along the way, write curve.csv / curve.json / curve.png (see the module docs)."""
    console = console or Console(stderr=True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise MribenchError("mribench curve runs in one process; start it without torchrun")
    if request.points < 1:
        raise MribenchError(f"--points must be at least 1, got {request.points}")
    if request.scale < 2:
        raise MribenchError(f"--scale must be at least 2 (the longer run has scale × the preset's steps), "
                            f"got {request.scale}")
    the_plan = plan(RunRequest(method=request.method, task=request.task, preset=request.preset, seed=request.seed,
                               data_root=request.data_root, out=request.out, skip_bad=request.skip_bad))
    if not the_plan.method_cls.calls_step_hook:
        raise MribenchError(f"method {request.method!r} does not call the step hook during training, so it has no "
                            "curve (learning-free methods have nothing to converge)")
    cls, config = the_plan.method_cls, the_plan.config
    preset_steps = cls.hooked_steps(config)
    if request.points > preset_steps:
        raise MribenchError(f"--points {request.points} is more than the preset's {preset_steps} steps")
    long_config = cls.with_hooked_steps(config, request.scale * preset_steps)
    load_before = os.getloadavg()
    started = time.perf_counter()
    with make_progress(console) as progress:
        data = load_task_data(the_plan.task, the_plan.dataset_cls, request.data_root, progress=progress,
                              skip_bad=request.skip_bad)
        if len(data.validation) == 0:
            raise MribenchError(f"task {the_plan.task.name}: no validation subjects to score the curve on")
        model_root = the_plan.model_root(data)  # the run's model folder: it depends on the data
        folder = model_root / the_plan.method / f"{the_plan.preset}-seed{the_plan.seed}"
        work = folder / CURVE_WORK
        if request.overwrite == "always":
            shutil.rmtree(work, ignore_errors=True)
            for name in (CURVE_CSV, CURVE_JSON, CURVE_PNG):
                (folder / name).unlink(missing_ok=True)
        elif (folder / CURVE_JSON).exists():
            summary = json.loads((folder / CURVE_JSON).read_text())
            if summary["method"]["config_hash"] != config_hash(config) or summary["scale"] != request.scale \
                    or summary["points"] != request.points:
                raise MribenchError(f"{folder / CURVE_JSON} was made with another config, --scale or --points; "
                                    "use --overwrite always to redo it")
            return CurveOutcome("complete", folder, summary)
        elif request.overwrite == "never" and work.exists():
            raise MribenchError(f"{work}: a partial curve exists and --overwrite never forbids touching it; "
                                "use --overwrite missing to resume it")
        runs = {}
        for run_config in (config, long_config):
            steps = cls.hooked_steps(run_config)
            runs[steps] = _train_and_score(the_plan, request, run_config,
                                           score_steps(preset_steps, request.points, steps), data,
                                           work / f"steps{steps}-{config_hash(run_config)[:12]}",
                                           model_root / "shared", progress)
    summary = _summary(the_plan, request, data, runs, preset_steps, load_before, time.perf_counter() - started)
    _write_csv(folder / CURVE_CSV, runs)
    atomic_write_bytes(folder / CURVE_PNG, _plot(runs, summary))
    atomic_write_text(folder / CURVE_JSON, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return CurveOutcome("done", folder, summary)


def _summary(the_plan: Plan, request: CurveRequest, data, runs: dict[int, list[CurvePoint]], preset_steps: int,
             load_before: tuple[float, float, float], elapsed_seconds: float) -> dict[str, Any]:
    long_steps = request.scale * preset_steps
    at_preset, at_long = runs[preset_steps][-1], runs[long_steps][-1]
    gain = at_long.validation_psnr - at_preset.validation_psnr
    task = the_plan.task
    return {
        "task": {"name": task.name, "version": task.version, "hash": task.hash,
                 "validation_hash": data.split.validation_hash, "validation_subjects": list(data.validation.subject_ids),
                 "n_train": len(data.train)},
        "method": {"name": request.method, "version": the_plan.method_cls.version, "preset": request.preset,
                   "config_hash": config_hash(the_plan.config)},
        "seed": request.seed,
        "metric": "validation PSNR (dB), mean over validation subjects",
        "preset_steps": preset_steps,
        "scale": request.scale,
        "points": request.points,
        "scaled_steps": long_steps,
        "psnr_at_preset_steps": round(at_preset.validation_psnr, 4),
        "psnr_at_scaled_steps": round(at_long.validation_psnr, 4),
        "gain_db": round(gain, 4),
        "rule": f"plateau when {request.scale}x the steps gains < {PLATEAU_GAIN_DB} dB validation PSNR",
        "verdict": verdict(gain),
        "training_minutes": {"preset": round(at_preset.training_seconds / 60, 2),
                             "scaled": round(at_long.training_seconds / 60, 2)},
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "elapsed_minutes": round(elapsed_seconds / 60, 2),
        "provenance": provenance(),
    }


def _write_csv(path: Path, runs: dict[int, list[CurvePoint]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["schedule_steps", "step", "training_minutes", "validation_psnr"])
    for points in runs.values():
        for point in points:
            writer.writerow([point.schedule_steps, point.step, f"{point.training_seconds / 60:.3f}",
                             f"{point.validation_psnr:.4f}"])
    atomic_write_text(path, buffer.getvalue())


def _plot(runs: dict[int, list[CurvePoint]], summary: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
    for steps, points in runs.items():
        label = f"{steps} steps" + (" (preset)" if steps == summary["preset_steps"] else "")
        psnr = [p.validation_psnr for p in points]
        by_step.plot([p.step for p in points], psnr, marker="o", markersize=3, label=label)
        by_time.plot([p.training_seconds / 60 for p in points], psnr, marker="o", markersize=3, label=label)
    by_step.set_xlabel("training step")
    by_time.set_xlabel("training minutes")
    by_step.set_ylabel("validation PSNR (dB)")
    by_step.legend(fontsize=8)
    for axis in (by_step, by_time):
        axis.grid(alpha=0.3)
    figure.suptitle(f"{summary['method']['name']} ({summary['method']['preset']}) on {summary['task']['name']}: "
                    f"{summary['verdict']}, {summary['gain_db']:+.2f} dB at {summary['scaled_steps']} steps",
                    fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


__all__ = ["CurveRequest", "CurveOutcome", "CurvePoint", "curve", "score_steps", "validation_psnr", "verdict",
           "PLATEAU_GAIN_DB"]
