"""fit → synthesize → evaluate → result, with checkpoints and resume.

One trained model serves every missing count of a dataset: it lives in
``<out>/_models/<dataset>-<model key>/<method>/<preset>-seed<k>/model.pt``. Predictions are saved per subject as
they are made, so a run killed in any phase continues where it stopped and gives the same numbers.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console

from mribench.atomic import atomic_path
from mribench.data import load_task_data
from mribench.data.nifti import write_volume
from mribench.errors import MribenchError, UnknownNameError
from mribench.method import Method, config_hash, config_json
from mribench.metrics.aggregate import write_per_subject_csv
from mribench.metrics.base import MetricResult
from mribench.metrics.evaluate import evaluate
from mribench.plugins import registry
from mribench.protocol import Batch, derive_seed, evaluation_pattern
from mribench.results import RESULT_FILE, Result, provenance, run_dir, write_result
from mribench.tasks import TaskSpec, get_task
from mribench.training import barrier, dist_info, init_distributed, make_progress, progress_task, seed_everything

Overwrite = Literal["never", "missing", "always"]


@dataclass
class RunRequest:
    method: str
    task: str
    preset: str = "cpu"
    seed: int = 0
    data_root: Path | None = None
    out: Path = Path("runs")
    overwrite: Overwrite = "missing"
    skip_bad: bool = False


@dataclass
class RunOutcome:
    status: Literal["complete", "done", "worker"]  # "complete": nothing to do; "worker": a non-zero DDP rank
    folder: Path
    result: Result | None = None


@dataclass(frozen=True)
class Plan:
    """Everything resolved and validated before any work starts."""

    task: TaskSpec
    method_cls: type[Method]
    plugin: str
    config: Any
    folder: Path
    model_dir: Path
    shared_dir: Path


def plan(request: RunRequest) -> Plan:
    """Resolve names, check compatibility and the metrics, so that bad input fails before anything runs."""
    reg = registry()
    task = get_task(request.task)
    registered = reg.get("method", request.method)
    method_cls = registered.cls
    reason = method_cls.unavailable_reason()
    if reason:
        raise MribenchError(f"method {request.method!r} (plugin {registered.plugin!r}) is unavailable: {reason}")
    if task.problem not in method_cls.problems:
        raise MribenchError(f"method {request.method!r} does not support {task.problem} tasks such as {task.name!r} "
                            f"(it supports: {', '.join(sorted(method_cls.problems))})")
    if request.preset not in method_cls.presets:
        raise UnknownNameError(f"preset of {request.method}", request.preset, method_cls.presets)
    for spec in task.metrics:
        reg.get("metric", spec.name)
    models = Path(request.out) / "_models" / f"{task.dataset}-{task.model_key}"
    return Plan(task=task, method_cls=method_cls, plugin=registered.plugin, config=method_cls.presets[request.preset],
                folder=run_dir(request.out, task.name, request.method, request.preset, request.seed),
                model_dir=models / request.method / f"{request.preset}-seed{request.seed}", shared_dir=models / "shared")


def run(request: RunRequest, console: Console | None = None) -> RunOutcome:
    console = console or Console(stderr=True)
    the_plan = plan(request)
    task, folder = the_plan.task, the_plan.folder
    result_path = folder / RESULT_FILE
    if request.overwrite == "always":
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(the_plan.model_dir, ignore_errors=True)
    elif result_path.exists():
        return RunOutcome("complete", folder)
    elif request.overwrite == "never" and (folder.exists() or the_plan.model_dir.exists()):
        raise MribenchError(f"{folder}: a partial run exists and --overwrite never forbids touching it; "
                            "use --overwrite missing to resume it")
    dist = init_distributed()
    timings: dict[str, float] = {}
    with make_progress(console) as progress:
        started = time.perf_counter()
        data = load_task_data(task, request.data_root, progress=progress, skip_bad=request.skip_bad)
        timings["data_s"] = time.perf_counter() - started

        started = time.perf_counter()
        method = _fit_or_load(the_plan, request, data.train, progress)
        timings["fit_or_load_s"] = time.perf_counter() - started
        if not dist.is_main:
            return RunOutcome("worker", folder)

        started = time.perf_counter()
        predictions = _synthesize_all(method, task, data.test, folder / "work" / "pred", request.seed, progress)
        timings["synthesize_s"] = time.perf_counter() - started

        started = time.perf_counter()
        metrics, observed_changed = _evaluate(task, data, predictions, request, progress)
        timings["evaluate_s"] = time.perf_counter() - started
        _write_predictions(task, data.test, predictions, folder / "predictions", progress)

    result = Result(
        task={"name": task.name, "version": task.version, "hash": task.hash, "split_hash": data.split.hash,
              "validation_hash": data.split.validation_hash, "dataset": task.dataset, "problem": task.problem,
              "missing": task.missing, "elements": task.element_names, "n_train": len(data.train),
              "n_validation": len(data.validation), "n_test": len(data.test)},
        method={"name": request.method, "version": the_plan.method_cls.version, "plugin": the_plan.plugin,
                "preset": request.preset, "config": config_json(the_plan.config),
                "config_hash": config_hash(the_plan.config), "reads_mask": the_plan.method_cls.reads_mask,
                "training": _training_facts(the_plan, method)},
        seed=request.seed,
        metrics={name: vars(metric) for name, metric in metrics.items()},
        subjects=list(data.test.subject_ids),
        skipped=[{"subject": s, "reason": reason} for s, reason in zip(data.skipped, data.skip_reasons)],
        observed_changed=observed_changed,
        method_report=method.report(),
        timings={k: round(v, 3) for k, v in timings.items()},
        provenance={**provenance(), "data_root": str(data.root)},
    )
    write_per_subject_csv(metrics, folder / "per_subject.csv")
    write_result(result, folder)
    shutil.rmtree(folder / "work", ignore_errors=True)
    return RunOutcome("done", folder, result)


# -- phases --------------------------------------------------------------------------------------------------
def _fit_or_load(the_plan: Plan, request: RunRequest, train, progress) -> Method:
    checkpoint = the_plan.model_dir / "model.pt"
    if checkpoint.exists():
        method = the_plan.method_cls.load(checkpoint, the_plan.config, request.seed, the_plan.task)
        method.shared_dir = the_plan.shared_dir
        return method
    seed_everything(derive_seed("fit", request.seed))
    method = the_plan.method_cls(the_plan.config, seed=request.seed)
    method.shared_dir = the_plan.shared_dir
    started = time.perf_counter()
    method.fit(train, the_plan.task, the_plan.model_dir / "work", progress)
    method.fit_seconds = round(time.perf_counter() - started, 3)  # a resumed fit counts this process's part only
    if dist_info().is_main:
        method.save(checkpoint)
    barrier()
    return method


def _training_facts(the_plan: Plan, method: Method) -> dict[str, Any]:
    """Steps, fit minutes and trained parameters of the model (the leaderboard footnote shows them)."""
    return {"steps": the_plan.method_cls.training_steps(the_plan.config),
            "fit_minutes": None if method.fit_seconds is None else round(method.fit_seconds / 60, 2),
            "parameters": method.parameter_count(),
            "budget_capped": the_plan.method_cls.budget_capped(the_plan.config)}


def _synthesize_all(method: Method, task: TaskSpec, test, pred_dir: Path, seed: int, progress) -> dict[str, Path]:
    """Synthesize each test subject once (saved as .npy as it goes; existing ones are reused on resume)."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    for leftover in pred_dir.glob(".*"):  # temp files of a run that was killed mid-write
        leftover.unlink()
    paths = {sid: pred_dir / f"{sid}.npy" for sid in test.subject_ids}
    todo = [i for i, sid in enumerate(test.subject_ids) if not paths[sid].exists()]
    with progress_task(progress, f"synthesize {task.name}", len(paths), len(paths) - len(todo)) as advance, \
            torch.inference_mode():
        for index in todo:
            subject = test[index]
            batch = evaluation_batch(task, subject)
            torch.manual_seed(derive_seed("synthesize", seed, task.name, subject.subject_id))
            output = method.synthesize(batch)
            expected = tuple(batch.image.shape)
            if tuple(output.shape) != expected:
                raise MribenchError(f"method {method.name} returned shape {tuple(output.shape)} for subject "
                                    f"{subject.subject_id}, expected {expected}")
            if not torch.isfinite(output).all():
                raise MribenchError(f"method {method.name} returned NaN/Inf for subject {subject.subject_id}")
            with atomic_path(paths[subject.subject_id], suffix=".npy") as temporary:
                np.save(temporary, output[0].float().cpu().numpy())
            advance()
    return paths


def evaluation_batch(task: TaskSpec, subject) -> Batch:
    """One subject's batch with the protocol's evaluation pattern (test and validation subjects alike)."""
    complete = torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]  # a copy: cache arrays are read-only
    mask = torch.from_numpy(evaluation_pattern(task, subject.subject_id))[None]
    meta: dict[str, Any] = {"affine": torch.from_numpy(np.asarray(subject.affine, dtype=np.float64))[None]}
    if subject.label is not None:
        meta["label"] = torch.from_numpy(np.asarray(subject.label, dtype=np.int64))[None]
    return Batch.from_complete(complete, mask, [subject.subject_id], meta)


def _evaluate(task: TaskSpec, data, predictions: dict[str, Path], request: RunRequest,
              progress) -> tuple[dict[str, MetricResult], dict[str, Any]]:
    """Clip, write the observed elements back, record whether the method had changed them, and score."""
    changed_subjects: list[str] = []
    clipped = {"voxels": 0}

    def completed_prediction(subject, availability: np.ndarray) -> np.ndarray:
        raw = np.load(predictions[subject.subject_id])
        clipped["voxels"] += int(((raw < 0) | (raw > 1)).sum())
        observed = np.broadcast_to(availability[:, :, None, None], raw.shape)
        if observed.any() and np.abs(raw - subject.image)[observed].max() > 1e-4:
            changed_subjects.append(subject.subject_id)
        return np.where(observed, subject.image, np.clip(raw, 0, 1)).astype(np.float32)

    results = evaluate(task, data.train, data.test, completed_prediction, request.preset, request.seed, progress)
    return results, {"subjects": changed_subjects, "count": len(changed_subjects),
                     "clipped_voxels": clipped["voxels"],
                     "note": "observed elements are written back before scoring"}


def _write_predictions(task: TaskSpec, test, predictions: dict[str, Path], out: Path, progress) -> None:
    """One 3D NIfTI per missing element: <out>/<subject>/<element>.nii.gz, axes (D, H, W), the subject's affine."""
    with progress_task(progress, "write predictions", len(test)) as advance:
        for subject in test:
            pred = np.clip(np.load(predictions[subject.subject_id]), 0, 1)
            mask = evaluation_pattern(task, subject.subject_id)
            folder = out / subject.subject_id
            folder.mkdir(parents=True, exist_ok=True)
            if task.problem == "missing-modality":
                volumes = {task.element_names[c]: pred[c] for c in range(task.channels) if not mask[c].any()}
            else:
                volumes = {"sax": np.where(mask[0][:, None, None], subject.image[0], pred[0])}
            for element, volume in volumes.items():
                write_volume(folder / f"{element}.nii.gz", volume.astype(np.float32), subject.affine)
            advance()


__all__ = ["RunRequest", "RunOutcome", "run", "plan", "evaluation_batch"]
