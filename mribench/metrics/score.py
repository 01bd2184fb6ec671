"""Scoring predictions made outside mribench: NIfTI files in the layout ``mribench run`` writes, scored with the
task's own evaluators on the task's test split.

Layout: ``<predictions>/<subject_id>/<element>.nii.gz``, one 3D NIfTI per missing element — brain: one file per
missing modality named after it (e.g. ``T1ce.nii.gz``); cardiac: the whole stack as ``sax.nii.gz`` (only its missing
slices are scored). Each file may be on either grid ``run`` writes: the subject's source grid (the source volume's
shape and affine; brought onto the preprocessed grid by the preprocessing's own crop and resize, see
:func:`mribench.data.preprocess.to_preprocessed`) or the task's preprocessed grid (array axes (D, H, W), used as is).
Observed elements always come from the real data. NaN/Inf, a shape of neither grid, a source-grid shape with another
affine or a missing file is an error naming the subject and the file; values outside [0, 1] are clipped and counted
(``clipped_voxels`` per subject).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from mribench.data import load_task_data
from mribench.data.base import Dataset, Subject
from mribench.data.nifti import grid_difference
from mribench.data.preprocess import NativeGrid, to_preprocessed
from mribench.errors import BadDataError, MribenchError
from mribench.metrics.base import Metric, MetricResult
from mribench.metrics.evaluate import evaluate
from mribench.tasks import TaskSpec


@dataclass
class ScoreOutcome:
    """Metric results plus the number of voxels clipped to [0, 1] per subject."""

    results: dict[str, MetricResult]
    clipped_voxels: dict[str, int] = field(default_factory=dict)


def read_on_preprocessed_grid(path: Path, subject: Subject, shape: tuple[int, int, int]) -> np.ndarray:
    """The prediction in ``path`` (on the subject's source grid or on the preprocessed grid ``shape``) as a float32
    (D, H, W) volume on the preprocessed grid; one-line BadDataError for a missing, unreadable, non-finite or
    misplaced file."""
    subject_id = subject.subject_id
    if not path.is_file():
        raise BadDataError(f"subject {subject_id}: prediction file {path} is missing")
    try:
        image = nib.load(str(path))
        volume = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for damaged files
        raise BadDataError(f"subject {subject_id}: cannot read {path} ({type(exc).__name__})") from None
    if not np.isfinite(volume).all():
        raise BadDataError(f"subject {subject_id}: {path} contains NaN or Inf")
    native = NativeGrid.of(subject.meta)
    if native is not None and volume.shape == native.shape:
        difference = grid_difference(volume.shape, image.affine, native.shape, native.affine_array)
        if difference is None:
            return to_preprocessed(volume, native, shape)
        if volume.shape != tuple(shape):
            raise BadDataError(f"subject {subject_id}: {path} has the source volume's shape but not its affine "
                               f"({difference})")
    if volume.shape != tuple(shape):
        native_shape = f" or {native.shape} (X, Y, Z on the subject's source grid)" if native is not None else ""
        raise BadDataError(f"subject {subject_id}: {path} has shape {volume.shape}, expected {tuple(shape)} "
                           f"(D, H, W on the task's preprocessed grid){native_shape}")
    return volume


def read_prediction(task: TaskSpec, subject: Subject, availability: np.ndarray,
                    folder: Path) -> tuple[np.ndarray, int]:
    """The completed volume (C, D, H, W) of one subject — real observed elements, predicted missing ones clipped to
    [0, 1] — and the number of clipped voxels. availability: (C, D)."""
    subject_dir = Path(folder) / subject.subject_id
    if not subject_dir.is_dir():
        raise BadDataError(f"subject {subject.subject_id}: no prediction folder {subject_dir}")
    shape = tuple(task.preprocess.shape)
    completed = np.array(subject.image, dtype=np.float32)
    clipped = 0
    if task.problem == "missing-modality":
        for channel in np.flatnonzero(~availability.all(axis=1)):
            volume = read_on_preprocessed_grid(subject_dir / f"{task.element_names[channel]}.nii.gz", subject, shape)
            clipped += int(((volume < 0) | (volume > 1)).sum())
            completed[channel] = np.clip(volume, 0, 1)
    else:
        volume = read_on_preprocessed_grid(subject_dir / "sax.nii.gz", subject, shape)
        missing = ~availability[0]
        clipped += int(((volume[missing] < 0) | (volume[missing] > 1)).sum())
        completed[0, missing] = np.clip(volume[missing], 0, 1)
    return completed, clipped


def score_predictions(task: TaskSpec, dataset_cls: type[Dataset], metric_classes: Mapping[str, type[Metric]],
                      predictions_dir: Path, data_root: str | Path | None = None, preset: str = "cpu",
                      progress=None) -> ScoreOutcome:
    """Score every test subject's predictions with the task's metrics (``dataset_cls``, ``metric_classes``: the
    task's, resolved by the caller; segmenter preset ``preset`` for Dice)."""
    predictions_dir = Path(predictions_dir)
    if not predictions_dir.is_dir():
        raise MribenchError(f"{predictions_dir}: predictions folder not found")
    data = load_task_data(task, dataset_cls, data_root, progress=progress)
    clipped: dict[str, int] = {}

    def completed_prediction(subject, availability):
        completed, clipped[subject.subject_id] = read_prediction(task, subject, availability, predictions_dir)
        return completed

    results = evaluate(task, metric_classes, data.train, data.test, completed_prediction, preset, progress=progress,
                       validation=data.validation)
    return ScoreOutcome(results, clipped)
