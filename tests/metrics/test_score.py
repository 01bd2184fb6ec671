"""Scoring NIfTI predictions in the run layout: same numbers as the metrics on the arrays; bad files named."""
from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from mribench.data.base import Subject, SubjectSet
from mribench.errors import MribenchError
from mribench.metrics import score as score_module
from mribench.metrics.psnr import psnr
from mribench.metrics.score import score_predictions
from mribench.protocol import evaluation_availability
from mribench.tasks import TaskSpec
from mribench.plugins import registry

SHAPE = (12, 12, 12)


def _task(problem):
    common = dict(version=1, description="tiny", dataset="tiny", split={"rule": "ratio", "test_fraction": 0.5},
                  preprocess={"shape": SHAPE}, metrics=[{"name": "psnr"}, {"name": "ssim"}])
    if problem == "missing-modality":
        return TaskSpec(name="tiny-brain", problem=problem, elements=["A", "B", "C"], missing=1,
                        train_missing=(1, 2), **common)
    return TaskSpec(name="tiny-cardiac", problem=problem, elements=12, missing=4, train_missing=(1, 6), **common)


NO_DATASET = None  # the tiny tasks' data is stubbed (_data): no dataset class is read


def _data(monkeypatch, channels):
    rng = np.random.default_rng(0)
    subjects = {f"s{i}": Subject(f"s{i}", rng.random((channels, *SHAPE)).astype(np.float32), np.eye(4))
                for i in range(2)}
    test = SubjectSet(sorted(subjects), subjects.__getitem__)
    monkeypatch.setattr(score_module, "load_task_data",
                        lambda task, dataset_cls, root, progress=None: SimpleNamespace(train=test, validation=test,
                                                                                       test=test))
    return subjects


def _save(path, volume):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(path))


def test_brain_predictions_scored_like_arrays_and_clipping_counted(tmp_path, monkeypatch):
    task = _task("missing-modality")
    subjects = _data(monkeypatch, 3)
    expected = {}
    for sid, subject in subjects.items():
        availability = evaluation_availability(task, sid)
        channel = int(np.flatnonzero(~availability.all(axis=1))[0])
        prediction = subject.image[channel] + 0.05
        prediction[0, 0, 0] = 1.5  # outside [0, 1]: clipped and counted
        _save(tmp_path / sid / f"{task.element_names[channel]}.nii.gz", prediction)
        expected[sid] = psnr(torch.from_numpy(np.clip(prediction, 0, 1)), torch.from_numpy(subject.image[channel]))
    outcome = score_predictions(task, NO_DATASET, registry().task_metrics(task), tmp_path)
    assert outcome.results["psnr"].per_subject == pytest.approx(expected)
    assert outcome.results["ssim"].status == "ok"
    assert sum(outcome.clipped_voxels.values()) >= 2


def test_cardiac_reads_the_stack_and_scores_missing_slices(tmp_path, monkeypatch):
    task = _task("missing-slice")
    subjects = _data(monkeypatch, 1)
    for sid, subject in subjects.items():
        _save(tmp_path / sid / "sax.nii.gz", subject.image[0])  # perfect prediction
    outcome = score_predictions(task, NO_DATASET, registry().task_metrics(task), tmp_path)
    assert outcome.results["psnr"].aggregate["mean"] == pytest.approx(100.0)
    assert len(outcome.results["psnr"].aggregate["per_element"]) >= 4


@pytest.mark.parametrize("problem", ["nan", "shape", "missing-subject", "missing-file"])
def test_bad_predictions_name_subject_and_file(tmp_path, monkeypatch, problem):
    task = _task("missing-slice")
    subjects = _data(monkeypatch, 1)
    for sid, subject in subjects.items():
        volume = subject.image[0].copy()
        if sid == "s1" and problem == "nan":
            volume[3, 3, 3] = np.nan
        if sid == "s1" and problem == "shape":
            volume = volume[:-1]
        if not (sid == "s1" and problem == "missing-subject"):
            _save(tmp_path / sid / ("other.nii.gz" if problem == "missing-file" and sid == "s1" else "sax.nii.gz"),
                  volume)
    with pytest.raises(MribenchError, match="subject s1") as info:
        score_predictions(task, NO_DATASET, registry().task_metrics(task), tmp_path)
    message = str(info.value)
    assert "\n" not in message and (problem == "missing-subject" or "sax.nii.gz" in message)


def _subject_from_source(sid: str, affine: np.ndarray):
    """A subject preprocessed from a (2, 20, 22, 14) source volume (so it has a native grid) and that source."""
    from mribench.data.base import RawSubject
    from mribench.data.preprocess import preprocess_subject
    from mribench.tasks import PreprocessSpec

    rng = np.random.default_rng(len(sid))
    source = np.zeros((3, 20, 22, 14), dtype=np.float32)
    source[:, 2:-2, 3:-3, 1:-1] = 0.2 + rng.random((3, 16, 16, 12)).astype(np.float32)
    subject = preprocess_subject(RawSubject(sid, source, affine, None, files=[]),
                                 PreprocessSpec(shape=SHAPE, percentiles=(0.0, 100.0)))
    return subject, source


def test_predictions_on_the_source_grid_are_brought_onto_the_task_grid(tmp_path, monkeypatch):
    """A native prediction is scored after the preprocessing's own crop and resize, so the source image itself, scaled
    as the pipeline scales it, scores as perfect (up to float32 rounding); the source shape with another affine, or a
    shape of neither grid, is a one-line error."""
    from mribench.data.nifti import write_volume
    from mribench.data.preprocess import NativeGrid, to_preprocessed

    task = _task("missing-modality")
    affine = np.array([[0, 1.5, 0, -20.0], [-1.25, 0, 0, 15.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])
    shifted = affine.copy()
    shifted[:3, 3] += 2.0
    subjects = {}
    for sid in ("s0", "s1"):
        subjects[sid], source = _subject_from_source(sid, affine)
        channel = int(np.flatnonzero(~evaluation_availability(task, sid).all(axis=1))[0])
        element = f"{task.element_names[channel]}.nii.gz"
        # percentiles (0, 100): the pipeline min-max scales the resized volume
        resized = to_preprocessed(source[channel], NativeGrid.of(subjects[sid].meta), SHAPE)
        native = (source[channel] - resized.min()) / (resized.max() - resized.min())
        write_volume(tmp_path / "native" / sid / element, native, affine)
        write_volume(tmp_path / "shifted" / sid / element, native, shifted)
        write_volume(tmp_path / "cut" / sid / element, native[:-1], affine)
    test = SubjectSet(sorted(subjects), subjects.__getitem__)
    monkeypatch.setattr(score_module, "load_task_data",
                        lambda task, dataset_cls, root, progress=None: SimpleNamespace(train=test, validation=test,
                                                                                       test=test))
    psnr_values = score_predictions(task, NO_DATASET, registry().task_metrics(task),
                                    tmp_path / "native").results["psnr"].per_subject
    assert sorted(psnr_values) == ["s0", "s1"] and min(psnr_values.values()) > 60
    with pytest.raises(MribenchError, match="has the source volume's shape but not its affine"):
        score_predictions(task, NO_DATASET, registry().task_metrics(task), tmp_path / "shifted")
    with pytest.raises(MribenchError, match=r"expected \(12, 12, 12\) .* or \(20, 22, 14\)"):
        score_predictions(task, NO_DATASET, registry().task_metrics(task), tmp_path / "cut")
