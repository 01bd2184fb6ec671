"""fit → synthesize → evaluate → result, with checkpoints and resume.

One trained model serves every missing count of a dataset: it lives in
``<out>/_models/<dataset>-<model key>/<method>/<preset>-seed<k>/model.pt``. Predictions are saved per subject as
they are made, so a run killed in any phase continues where it stopped and gives the same numbers.

The run folder keeps the predictions as NIfTI, one file per missing element: on each subject's source grid under
``predictions/`` (``--predictions native``, the default) and/or on the task's preprocessed grid under
``predictions-preprocessed/``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console

from mribench.atomic import atomic_path, file_lock, sweep_temporaries, wait_notice
from mribench.data import TaskData, load_task_data
from mribench.data.base import Dataset, cache_dir
from mribench.data.nifti import write_volume
from mribench.data.preprocess import NativeGrid, to_native
from mribench.errors import CheckpointMismatchError, MribenchError, UnknownNameError
from mribench.method import Method, config_hash, config_json
from mribench.metrics.aggregate import availability_code, write_per_subject_csv
from mribench.metrics.base import Metric, MetricResult
from mribench.metrics.evaluate import evaluate
from mribench.metrics.features import weights_dir
from mribench.plugins import registry
from mribench.preflight import check_output_folder, check_task
from mribench.protocol import Batch, derive_seed, evaluation_availability
from mribench.results import (RESULT_FILE, DamagedResultError, Result, provenance, run_dir, stored_config_hash,
                              write_result)
from mribench.tasks import TaskSpec, get_task
from mribench.training import (UnreadableCheckpointError, barrier, dist_info, init_distributed, make_progress,
                               progress_task, seed_everything)

Overwrite = Literal["never", "missing", "always"]
PredictionGrids = Literal["native", "preprocessed", "both"]
# where the predictions on each grid go in a run folder
PREDICTION_FOLDERS = {"native": "predictions", "preprocessed": "predictions-preprocessed"}


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
    predictions: PredictionGrids = "native"


@dataclass
class RunOutcome:
    status: Literal["complete", "done", "worker"]  # "complete": nothing to do; "worker": a non-zero DDP rank
    folder: Path
    result: Result | None = None


@dataclass(frozen=True)
class Plan:
    """Everything resolved and validated before any work starts.

    models: ``<out>/_models``; the model of a run lives under :meth:`model_root` (``<method>/<preset>-seed<k>``), which
    also depends on the data (known once it is loaded).
    """

    task: TaskSpec
    method_cls: type[Method]
    dataset_cls: type[Dataset]  # the task's dataset, resolved from the registry
    metric_classes: dict[str, type[Metric]]  # the task's metrics by name, resolved from the registry
    plugin: str
    config: Any
    folder: Path
    models: Path
    method: str
    preset: str
    seed: int

    @property
    def lock_path(self) -> Path:
        """The lock of the run folder (beside it: ``--overwrite always`` deletes the folder itself)."""
        return self.folder.with_name(f".{self.folder.name}.lock")

    def model_family(self) -> str:
        """Folder-name prefix of this task's models, whatever data they were trained on."""
        return f"{self.task.dataset}-{self.task.model_key}"

    def model_root(self, data: TaskData) -> Path:
        """``<models>/<dataset>-<model key>-<data key>``: the task's model key (dataset options, split rule,
        preprocessing) plus the data fingerprint and the test and validation split hashes, so a run on other data
        (another ``--data-root``, other subjects, ``--skip-bad``) never reuses a model trained on different data."""
        data_key = hashlib.sha256("\n".join([data.fingerprint, data.split.hash, data.split.validation_hash])
                                  .encode()).hexdigest()[:12]
        return self.models / f"{self.model_family()}-{data_key}"


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
    check_task(task)
    check_output_folder(request.out, "--out")
    return Plan(task=task, method_cls=method_cls, dataset_cls=reg.dataset(task.dataset),
                metric_classes=reg.task_metrics(task), plugin=registered.plugin,
                config=method_cls.preset_config(request.preset, task.problem),
                folder=run_dir(request.out, task.name, request.method, request.preset, request.seed),
                models=Path(request.out) / "_models", method=request.method, preset=request.preset,
                seed=request.seed)


def run(request: RunRequest, console: Console | None = None) -> RunOutcome:
    console = console or Console(stderr=True)
    the_plan = plan(request)
    say = wait_notice(console)
    with _exclusive(the_plan.lock_path, say):
        return _run_locked(the_plan, request, console, say)


def _exclusive(lock: Path, say: Callable[[str], None] | None):
    """A lock held by the main process only: torchrun's other ranks follow rank 0 and must not wait for it."""
    return file_lock(lock, on_wait=say) if int(os.environ.get("RANK", "0")) == 0 else nullcontext()


def _run_locked(the_plan: Plan, request: RunRequest, console: Console, say: Callable[[str], None]) -> RunOutcome:
    task, folder = the_plan.task, the_plan.folder
    result_path = folder / RESULT_FILE
    sweep_temporaries(folder)
    if request.overwrite == "always":
        shutil.rmtree(folder, ignore_errors=True)
    elif result_path.exists():
        try:
            stored = stored_config_hash(result_path)
        except DamagedResultError as exc:
            if request.overwrite == "never":
                raise MribenchError(f"{exc}; --overwrite never forbids redoing it; use --overwrite missing") from None
            say(f"{exc}; redoing its evaluation (a valid trained model is kept)")
            result_path.unlink()
        else:
            wanted = config_hash(the_plan.config)
            if stored == wanted:
                return RunOutcome("complete", folder)
            stale = (f"{result_path}: made with another {the_plan.preset} config of {the_plan.method} (config hash "
                     f"{stored}; the preset is now {wanted})")
            if request.overwrite == "never":
                raise MribenchError(f"{stale}; --overwrite never forbids redoing it; use --overwrite missing")
            say(f"{stale}; redoing the run with today's preset")
            shutil.rmtree(folder)
    elif request.overwrite == "never" and folder.exists():
        raise MribenchError(f"{folder}: a partial run exists and --overwrite never forbids touching it; "
                            "use --overwrite missing to resume it")
    dist = init_distributed()
    timings: dict[str, float] = {}
    with make_progress(console) as progress:
        started = time.perf_counter()
        data = load_task_data(task, the_plan.dataset_cls, request.data_root, progress=progress,
                              skip_bad=request.skip_bad)
        timings["data_s"] = time.perf_counter() - started

        started = time.perf_counter()
        model_root = the_plan.model_root(data)
        model_dir = model_root / the_plan.method / f"{the_plan.preset}-seed{the_plan.seed}"
        with _exclusive(model_dir.with_name(f".{model_dir.name}.lock"), say):
            if request.overwrite == "always":
                shutil.rmtree(model_dir, ignore_errors=True)
            elif request.overwrite == "never" and model_dir.exists() and not (model_dir / "model.pt").exists():
                raise MribenchError(f"{model_dir}: a partial training exists and --overwrite never forbids touching "
                                    "it; use --overwrite missing to resume it")
            sweep_temporaries(model_dir)
            method = _fit_or_load(the_plan, model_dir, model_root / "shared", data.train, data.validation, progress,
                                  say, request.overwrite)
        timings["fit_or_load_s"] = time.perf_counter() - started
        if not dist.is_main:
            return RunOutcome("worker", folder)

        started = time.perf_counter()
        predictions = _synthesize_all(method, task, data.test, folder / "work" / "pred", request.seed, progress)
        timings["synthesize_s"] = time.perf_counter() - started

        started = time.perf_counter()
        metrics, observed_changed = _evaluate(task, the_plan.metric_classes, data, predictions, request, progress)
        timings["evaluate_s"] = time.perf_counter() - started
        _write_predictions(task, data.test, predictions, folder, request.predictions, progress)

    shown = the_plan.method_cls.result_description()
    result = Result(
        task={"name": task.name, "version": task.version, "hash": task.hash, "split_hash": data.split.hash,
              "validation_hash": data.split.validation_hash, "data_fingerprint": data.fingerprint,
              "dataset": task.dataset, "problem": task.problem,
              "missing": task.missing, "elements": task.element_names, "n_train": len(data.train),
              "n_validation": len(data.validation), "n_test": len(data.test)},
        method={"name": request.method, "display_name": shown.display_name, "family": shown.family,
                "ablation_rows": [asdict(row) for row in shown.ablation_rows],
                "version": the_plan.method_cls.version, "plugin": the_plan.plugin,
                "preset": request.preset, "config": config_json(the_plan.config),
                "config_hash": config_hash(the_plan.config), "reads_mask": the_plan.method_cls.reads_mask,
                "training": _training_facts(the_plan, method)},
        seed=request.seed,
        metrics={name: {**vars(metric), **asdict(the_plan.metric_classes[name].result_description())}
                 for name, metric in metrics.items()},
        subjects=list(data.test.subject_ids),
        skipped=[{"subject": s, "reason": reason} for s, reason in zip(data.skipped, data.skip_reasons)],
        observed_changed=observed_changed,
        method_report=method.report(),
        timings={k: round(v, 3) for k, v in timings.items()},
        provenance={**provenance(), "data": _data_provenance(data)},
        outputs={"predictions": request.predictions, "folders": _prediction_folders(request.predictions)},
    )
    write_per_subject_csv(metrics, folder / "per_subject.csv",
                          {sid: availability_code(task.problem, evaluation_availability(task, sid))
                           for sid in data.test.subject_ids})
    write_result(result, folder, local_paths={"<data root>": data.root, "<run>": folder, "<cache>": cache_dir(),
                                              "<models>": the_plan.models, "<weights>": weights_dir()})
    shutil.rmtree(folder / "work", ignore_errors=True)
    return RunOutcome("done", folder, result)


def _data_provenance(data: TaskData) -> dict[str, Any]:
    """Where the data came from, without the machine's paths: generated, or a user's folder (only its name)."""
    generated = bool(getattr(data.dataset, "generated", False))
    return {"dataset": data.dataset.name, "source": "generated phantom" if generated else "data root",
            "root_name": Path(data.root).name, "fingerprint": data.fingerprint}


# -- phases --------------------------------------------------------------------------------------------------
def _fit_or_load(the_plan: Plan, model_dir: Path, shared_dir: Path, train, validation, progress,
                 say: Callable[[str], None], overwrite: str) -> Method:
    """The model of ``model_dir``, trained there first when absent. A checkpoint of another config of the preset
    (the preset changed since) is retrained from scratch, its training folder with it, unless ``overwrite`` is
    ``never``."""
    seed = the_plan.seed
    checkpoint = model_dir / "model.pt"
    if checkpoint.exists():
        try:
            method = the_plan.method_cls.load(checkpoint, the_plan.config, seed, the_plan.task)
            method.shared_dir = shared_dir
            return method
        except UnreadableCheckpointError as exc:
            say(f"{exc}; training the model again")
            checkpoint.unlink()
        except CheckpointMismatchError:
            _discard_other_config(model_dir, the_plan, say, overwrite)
    for attempt in (1, 2):
        seed_everything(derive_seed("fit", seed))
        method = the_plan.method_cls(the_plan.config, seed=seed)
        method.shared_dir = shared_dir
        method.validation = validation
        started = time.perf_counter()
        try:
            method.fit(train, the_plan.task, model_dir / "work", progress)
            break
        except CheckpointMismatchError:  # a partial training of another config: start afresh, once
            if attempt == 2 or not (model_dir / "work").exists():
                raise
            _discard_other_config(model_dir, the_plan, say, overwrite)
    method.fit_seconds = round(time.perf_counter() - started, 3)  # a resumed fit counts this process's part only
    if dist_info().is_main:
        method.save(checkpoint)
    barrier()
    return method


def _discard_other_config(model_dir: Path, the_plan: Plan, say: Callable[[str], None], overwrite: str) -> None:
    """Remove a model folder trained (or half-trained) with another config of the preset, or refuse to."""
    stale = f"{model_dir}: trained with another config of the {the_plan.preset} preset of {the_plan.method}"
    if overwrite == "never":
        raise MribenchError(f"{stale}; --overwrite never forbids retraining it; use --overwrite missing")
    say(f"{stale}; training it again with today's preset")
    shutil.rmtree(model_dir, ignore_errors=True)  # every torchrun rank sees the same mismatch


def _training_facts(the_plan: Plan, method: Method) -> dict[str, Any]:
    """Steps, fit minutes and trained parameters of the model (the leaderboard footnote shows them)."""
    return {"steps": the_plan.method_cls.training_steps(the_plan.config),
            "fit_minutes": None if method.fit_seconds is None else round(method.fit_seconds / 60, 2),
            "parameters": method.parameter_count(),
            "budget_capped": the_plan.method_cls.budget_capped(the_plan.config)}


def _synthesize_all(method: Method, task: TaskSpec, test, pred_dir: Path, seed: int, progress) -> dict[str, Path]:
    """Synthesize each test subject once (saved as .npy as it goes; existing ones are reused on resume)."""
    pred_dir.mkdir(parents=True, exist_ok=True)
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


def evaluation_batch(task: TaskSpec, subject, availability: np.ndarray | None = None) -> Batch:
    """One subject's batch with the protocol's evaluation pattern (test and validation subjects alike), or with
    ``availability`` (C, D) when given."""
    complete = torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]  # a copy: cache arrays are read-only
    if availability is None:
        availability = evaluation_availability(task, subject.subject_id)
    mask = torch.from_numpy(availability)[None]
    meta: dict[str, Any] = {"affine": torch.from_numpy(np.asarray(subject.affine, dtype=np.float64))[None]}
    if subject.label is not None:
        meta["label"] = torch.from_numpy(np.asarray(subject.label, dtype=np.int64))[None]
    return Batch.from_complete(complete, mask, [subject.subject_id], meta)


def _evaluate(task: TaskSpec, metric_classes: dict[str, type[Metric]], data, predictions: dict[str, Path],
              request: RunRequest, progress) -> tuple[dict[str, MetricResult], dict[str, Any]]:
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

    results = evaluate(task, metric_classes, data.train, data.test, completed_prediction, request.preset, request.seed,
                       progress, data.validation)
    return results, {"subjects": changed_subjects, "count": len(changed_subjects),
                     "clipped_voxels": clipped["voxels"],
                     "note": "observed elements are written back before scoring"}


def _prediction_grids(choice: PredictionGrids) -> tuple[str, ...]:
    return ("native", "preprocessed") if choice == "both" else (choice,)


def _prediction_folders(choice: PredictionGrids) -> list[str]:
    """The run folder's prediction folders for ``--predictions`` (recorded in ``result.json``'s outputs)."""
    return [PREDICTION_FOLDERS[grid] for grid in _prediction_grids(choice)]


def _write_predictions(task: TaskSpec, test, predictions: dict[str, Path], folder: Path, choice: PredictionGrids,
                       progress) -> None:
    """One 3D NIfTI per missing element and grid: ``<folder>/<PREDICTION_FOLDERS[grid]>/<subject>/<element>.nii.gz``.

    native: the source volume's array axes, shape and affine (a subject generated in memory, with no source volume,
    keeps its preprocessed grid); preprocessed: axes (D, H, W) with the preprocessed grid's affine."""
    grids = _prediction_grids(choice)
    with progress_task(progress, "write predictions", len(test)) as advance:
        for subject in test:
            pred = np.clip(np.load(predictions[subject.subject_id]), 0, 1)
            mask = evaluation_availability(task, subject.subject_id)
            if task.problem == "missing-modality":
                volumes = {task.element_names[c]: pred[c] for c in range(task.channels) if not mask[c].any()}
            else:
                volumes = {"sax": np.where(mask[0][:, None, None], subject.image[0], pred[0])}
            native = NativeGrid.of(subject.meta)
            for grid in grids:
                subject_dir = folder / PREDICTION_FOLDERS[grid] / subject.subject_id
                for element, volume in volumes.items():
                    volume = volume.astype(np.float32)
                    if grid == "native" and native is not None:
                        write_volume(subject_dir / f"{element}.nii.gz", to_native(volume, native), native.affine_array)
                    else:
                        write_volume(subject_dir / f"{element}.nii.gz", volume, subject.affine)
            advance()


__all__ = ["RunRequest", "RunOutcome", "run", "plan", "evaluation_batch"]
