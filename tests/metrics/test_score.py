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
from mribench.protocol import evaluation_pattern
from mribench.tasks import TaskSpec

SHAPE = (12, 12, 12)


def _task(problem):
    common = dict(version=1, description="tiny", dataset="tiny", split={"rule": "ratio", "test_fraction": 0.5},
                  preprocess={"shape": SHAPE}, metrics=[{"name": "psnr"}, {"name": "ssim"}])
    if problem == "missing-modality":
        return TaskSpec(name="tiny-brain", problem=problem, elements=["A", "B", "C"], missing=1,
                        train_missing=(1, 2), **common)
    return TaskSpec(name="tiny-cardiac", problem=problem, elements=12, missing=4, train_missing=(1, 6), **common)


def _data(monkeypatch, channels):
    rng = np.random.default_rng(0)
    subjects = {f"s{i}": Subject(f"s{i}", rng.random((channels, *SHAPE)).astype(np.float32), np.eye(4))
                for i in range(2)}
    test = SubjectSet(sorted(subjects), subjects.__getitem__)
    monkeypatch.setattr(score_module, "load_task_data",
                        lambda task, root, progress=None: SimpleNamespace(train=test, validation=test,
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
        availability = evaluation_pattern(task, sid)
        channel = int(np.flatnonzero(~availability.all(axis=1))[0])
        prediction = subject.image[channel] + 0.05
        prediction[0, 0, 0] = 1.5  # outside [0, 1]: clipped and counted
        _save(tmp_path / sid / f"{task.element_names[channel]}.nii.gz", prediction)
        expected[sid] = psnr(torch.from_numpy(np.clip(prediction, 0, 1)), torch.from_numpy(subject.image[channel]))
    outcome = score_predictions(task, tmp_path)
    assert outcome.results["psnr"].per_subject == pytest.approx(expected)
    assert outcome.results["ssim"].status == "ok"
    assert sum(outcome.clipped_voxels.values()) >= 2


def test_cardiac_reads_the_stack_and_scores_missing_slices(tmp_path, monkeypatch):
    task = _task("missing-slice")
    subjects = _data(monkeypatch, 1)
    for sid, subject in subjects.items():
        _save(tmp_path / sid / "sax.nii.gz", subject.image[0])  # perfect prediction
    outcome = score_predictions(task, tmp_path)
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
        score_predictions(task, tmp_path)
    message = str(info.value)
    assert "\n" not in message and (problem == "missing-subject" or "sax.nii.gz" in message)
