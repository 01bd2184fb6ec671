"""Scoring predictions made outside mribench: NIfTI files in the layout ``mribench run`` writes, scored with the
task's own evaluators on the task's test split.

Layout: ``<predictions>/<subject_id>/<element>.nii.gz``, one 3D NIfTI per missing element with array axes
(D, H, W) on the task's preprocessed grid — brain: one file per missing modality named after it (e.g.
``T1ce.nii.gz``); cardiac: the whole stack as ``sax.nii.gz`` (only its missing slices are scored). Observed
elements always come from the real data. NaN/Inf, a wrong shape or a missing file is an error naming the subject
and the file; values outside [0, 1] are clipped and counted (``clipped_voxels`` per subject).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from mribench.data import load_task_data
from mribench.errors import BadDataError, MribenchError
from mribench.metrics.base import MetricResult
from mribench.metrics.evaluate import evaluate
from mribench.tasks import TaskSpec


@dataclass
class ScoreOutcome:
    """Metric results plus the number of voxels clipped to [0, 1] per subject."""

    results: dict[str, MetricResult]
    clipped_voxels: dict[str, int] = field(default_factory=dict)


def _read_volume(path: Path, subject_id: str, shape: tuple[int, int, int]) -> np.ndarray:
    if not path.is_file():
        raise BadDataError(f"subject {subject_id}: prediction file {path} is missing")
    try:
        volume = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for damaged files
        raise BadDataError(f"subject {subject_id}: cannot read {path} ({type(exc).__name__})") from None
    if volume.shape != tuple(shape):
        raise BadDataError(f"subject {subject_id}: {path} has shape {volume.shape}, expected {tuple(shape)} "
                           "(D, H, W on the task's preprocessed grid)")
    if not np.isfinite(volume).all():
        raise BadDataError(f"subject {subject_id}: {path} contains NaN or Inf")
    return volume


def read_prediction(task: TaskSpec, subject_id: str, target: np.ndarray, availability: np.ndarray,
                    folder: Path) -> tuple[np.ndarray, int]:
    """The completed volume (C, D, H, W) of one subject — real observed elements, predicted missing ones clipped to
    [0, 1] — and the number of clipped voxels. target: (C, D, H, W); availability: (C, D)."""
    subject_dir = Path(folder) / subject_id
    if not subject_dir.is_dir():
        raise BadDataError(f"subject {subject_id}: no prediction folder {subject_dir}")
    shape = tuple(task.preprocess.shape)
    completed = target.copy()
    clipped = 0
    if task.problem == "missing-modality":
        for channel in np.flatnonzero(~availability.all(axis=1)):
            volume = _read_volume(subject_dir / f"{task.element_names[channel]}.nii.gz", subject_id, shape)
            clipped += int(((volume < 0) | (volume > 1)).sum())
            completed[channel] = np.clip(volume, 0, 1)
    else:
        volume = _read_volume(subject_dir / "sax.nii.gz", subject_id, shape)
        missing = ~availability[0]
        clipped += int(((volume[missing] < 0) | (volume[missing] > 1)).sum())
        completed[0, missing] = np.clip(volume[missing], 0, 1)
    return completed, clipped


def score_predictions(task: TaskSpec, predictions_dir: Path, data_root: str | Path | None = None,
                      preset: str = "cpu", progress=None) -> ScoreOutcome:
    """Score every test subject's predictions with the task's metrics (segmenter preset ``preset`` for Dice)."""
    predictions_dir = Path(predictions_dir)
    if not predictions_dir.is_dir():
        raise MribenchError(f"{predictions_dir}: predictions folder not found")
    data = load_task_data(task, data_root, progress=progress)
    clipped: dict[str, int] = {}

    def completed_prediction(subject, availability):
        completed, clipped[subject.subject_id] = read_prediction(task, subject.subject_id, subject.image,
                                                                 availability, predictions_dir)
        return completed

    results = evaluate(task, data.train, data.test, completed_prediction, preset, progress=progress,
                       validation=data.validation)
    return ScoreOutcome(results, clipped)
