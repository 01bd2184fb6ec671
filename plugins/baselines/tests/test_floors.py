"""Floors against closed forms on hand-made volumes."""
import numpy as np
import pytest
import torch

from mribench.data.base import Subject, SubjectSet
from mribench.protocol import Batch
from mribench_baselines.floors import MeanAvailable, NearestContrast, SliceInterp, ZeroFill
from mribench.tasks import get_task


def _floor(cls, task_name):
    method = cls(cls.presets["smoke"], seed=0)
    method.fit(SubjectSet([], lambda s: None), get_task(task_name), workdir=None, progress=None)
    return method


def _brain_batch():
    complete = torch.rand(2, 4, 3, 5, 5)
    mask = torch.ones(2, 4, 3, dtype=torch.bool)
    mask[0, 1] = False
    mask[1, [0, 3]] = False
    return complete, Batch.from_complete(complete, mask, ["a", "b"])


def test_zero_fill_keeps_zeros():
    complete, batch = _brain_batch()
    output = _floor(ZeroFill, "phantom-brats-missing1").synthesize(batch)
    assert (output[0, 1] == 0).all() and torch.equal(output[0, 0], complete[0, 0])


def test_mean_available_brain_is_the_mean_of_observed_modalities():
    complete, batch = _brain_batch()
    output = _floor(MeanAvailable, "phantom-brats-missing1").synthesize(batch)
    torch.testing.assert_close(output[0, 1], complete[0, [0, 2, 3]].mean(dim=0))
    torch.testing.assert_close(output[1, 0], complete[1, [1, 2]].mean(dim=0))
    torch.testing.assert_close(output[1, 3], output[1, 0])


def _cardiac_batch(start, length, depth=12):
    complete = torch.rand(1, 1, depth, 4, 4)
    mask = torch.ones(1, 1, depth, dtype=torch.bool)
    mask[0, 0, start:start + length] = False
    return complete, Batch.from_complete(complete, mask, ["c"])


def test_slice_interp_is_linear_between_neighbours():
    complete, batch = _cardiac_batch(3, 4)
    output = _floor(SliceInterp, "phantom-cardiac-missing8").synthesize(batch)
    before, after = complete[0, 0, 2], complete[0, 0, 7]
    for i, d in enumerate(range(3, 7)):
        w = (i + 1) / 5
        torch.testing.assert_close(output[0, 0, d], (1 - w) * before + w * after)


def test_mean_available_cardiac_uses_the_two_neighbours_and_one_at_the_edge():
    complete, batch = _cardiac_batch(3, 4)
    output = _floor(MeanAvailable, "phantom-cardiac-missing8").synthesize(batch)
    torch.testing.assert_close(output[0, 0, 4], (complete[0, 0, 2] + complete[0, 0, 7]) / 2)
    complete, batch = _cardiac_batch(0, 5)
    output = _floor(MeanAvailable, "phantom-cardiac-missing8").synthesize(batch)
    torch.testing.assert_close(output[0, 0, 0], complete[0, 0, 5])
    torch.testing.assert_close(output[0, 0, 4], complete[0, 0, 5])


def test_nearest_contrast_learns_the_linear_map_and_picks_the_best_source():
    rng = np.random.default_rng(0)
    subjects = []
    for i in range(4):
        t1 = rng.random((3, 6, 6)).astype(np.float32) * 0.8 + 0.1
        noise = rng.random((3, 6, 6)).astype(np.float32)
        # T1ce is an exact linear map of T1; T2 and FLAIR are unrelated noise
        image = np.stack([t1, 0.5 * t1 + 0.2, noise, rng.random((3, 6, 6)).astype(np.float32)])
        subjects.append(Subject(f"s{i}", image, np.eye(4)))
    train = SubjectSet([s.subject_id for s in subjects], lambda sid: subjects[int(sid[1:])])
    method = NearestContrast(NearestContrast.presets["cpu"], seed=0)
    method.fit(train, get_task("phantom-brats-missing1"), workdir=None, progress=None)
    assert method.slope[1, 0] == pytest.approx(0.5, abs=1e-4) and method.intercept[1, 0] == pytest.approx(0.2, abs=1e-4)
    complete = torch.from_numpy(subjects[0].image)[None]
    mask = torch.ones(1, 4, 3, dtype=torch.bool)
    mask[0, 1] = False
    output = method.synthesize(Batch.from_complete(complete, mask, ["s0"]))
    torch.testing.assert_close(output[0, 1], complete[0, 1], atol=1e-4, rtol=0)
    restored = NearestContrast(NearestContrast.presets["cpu"], seed=0)
    restored.load_state(method.state(), get_task("phantom-brats-missing1"))
    torch.testing.assert_close(restored.synthesize(Batch.from_complete(complete, mask, ["s0"])), output)
