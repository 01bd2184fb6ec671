"""Downstream segmenter (tiny SegResNet, smoke preset): cached + resumable training, Dice vs the closed form,
Full / Missing / with-synthesis settings, lazily trained Missing variants, its validation Dice, foreground slice
sampling, that its training learns separable regions, fd-seg, and no-label datasets."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mribench.data.base import Subject, SubjectSet
from mribench.metrics import segmenter as segmenter_module
from mribench.metrics.base import EvalContext
from mribench.metrics.dice import SEGMENTER_VALIDATION, Dice, region_dice
from mribench.metrics.fdseg import FDSeg
from mribench.metrics.segmenter import (BRAIN_REGIONS, PRESETS, SegmenterConfig, draw_slices, get_segmenter,
                                        region_targets, segmenter_path)
from mribench.threads import torch_threads


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(segmenter_module, "_LOADED", {})


def _subjects(n, channels, shape=(6, 12, 12), labels=True, values=(1, 2, 4)):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image = rng.random((channels, *shape)).astype(np.float32)
        label = np.zeros(shape, dtype=np.int16)
        label[1:4, 3:8, 3:8] = values[1]
        label[2:3, 4:6, 4:6] = values[0]
        label[2:3, 6:7, 6:7] = values[2]
        image[:, label > 0] += 0.5
        out.append(Subject(f"sub{i}", np.clip(image, 0, 1), np.eye(4), label if labels else None))
    by_id = {s.subject_id: s for s in out}
    return SubjectSet(list(by_id), by_id.__getitem__)


def _brain_task():
    return SimpleNamespace(model_key="test-brain", problem="missing-modality", element_names=["A", "B", "C"],
                           channels=3)


def test_region_dice_matches_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4, 5, 5)) > 0.5, rng.random((3, 4, 5, 5)) > 0.5
    expected = [2 * (x & y).sum() / (x.sum() + y.sum()) for x, y in zip(a, b)]
    np.testing.assert_allclose(region_dice(torch.tensor(a), torch.tensor(b)).numpy(), expected, rtol=1e-6)


def test_region_targets_brain():
    label = torch.tensor([0, 1, 2, 4]).reshape(1, 1, 4)
    maps = region_targets(label, BRAIN_REGIONS)
    assert maps[:, 0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]


def test_dice_full_missing_synthesis_and_cache():
    task, train = _brain_task(), _subjects(3, 3)
    context = EvalContext(task=task, train=train, preset="smoke")
    dice, fdseg = Dice(), FDSeg()
    dice.prepare(context)
    fdseg.prepare(context)
    test = _subjects(3, 3)
    mask = torch.tensor([[[True] * 6, [False] * 6, [True] * 6]])
    for subject in test:
        target = torch.from_numpy(subject.image)[None]
        meta = {"subject_id": subject.subject_id, "problem": task.problem, "element_names": task.element_names,
                "label": torch.from_numpy(subject.label)}
        dice.update(target.clone(), target, mask, meta)   # perfect synthesis
        fdseg.update(target.clone(), target, mask, meta)
    result = dice.compute()
    assert result.status == "ok" and set(result.per_subject) == {"sub0", "sub1", "sub2"}
    assert result.aggregate["synthesis"] == pytest.approx(result.aggregate["full"])
    assert set(result.aggregate["missing"]) == {"WT", "TC", "ET", "mean"}
    assert result.extractor["name"] == "segmenter-smoke-full" and len(result.extractor["sha256"]) == 64
    assert segmenter_path(task, train, "smoke", "full").is_file()
    assert segmenter_path(task, train, "smoke", "avail-A+C").is_file()  # Missing variant trained lazily
    assert not segmenter_path(task, train, "smoke", "avail-A+B").exists()
    assert fdseg.compute().aggregate["mean"] == pytest.approx(0.0, abs=1e-6)
    # cached: a fresh process state loads the same file without retraining
    segmenter_module._LOADED.clear()
    before = segmenter_path(task, train, "smoke", "full").stat().st_mtime_ns
    again = get_segmenter(task, train, "smoke", [0, 1, 2])
    assert again.info["sha256"] == result.extractor["sha256"]
    assert segmenter_path(task, train, "smoke", "full").stat().st_mtime_ns == before


def test_fdseg_grows_with_corruption():
    task, train = _brain_task(), _subjects(3, 3)
    metric = FDSeg()
    metric.prepare(EvalContext(task=task, train=train, preset="smoke"))
    mask = torch.tensor([[[True] * 6, [False] * 6, [True] * 6]])
    for subject in _subjects(4, 3):
        target = torch.from_numpy(subject.image)[None]
        pred = target.clone()
        pred[0, 1] = 0.0
        metric.update(pred, target, mask, {"subject_id": subject.subject_id, "problem": task.problem})
    result = metric.compute()
    assert result.status == "ok" and result.aggregate["mean"] > 0 and result.aggregate["n"] == 4


def test_cardiac_missing_uses_zero_filled_slices():
    task = SimpleNamespace(model_key="test-cardiac", problem="missing-slice",
                           element_names=[f"slice{i:02d}" for i in range(6)], channels=1)
    train = _subjects(2, 1, values=(1, 2, 3))
    metric = Dice()
    metric.prepare(EvalContext(task=task, train=train, preset="smoke"))
    subject = train[0]
    target = torch.from_numpy(subject.image)[None]
    mask = torch.ones(1, 1, 6, dtype=torch.bool)
    mask[0, 0, 1:4] = False
    metric.update(target.clone(), target, mask, {"subject_id": "c", "problem": task.problem,
                                                 "element_names": task.element_names,
                                                 "label": torch.from_numpy(subject.label)})
    result = metric.compute()
    assert set(result.aggregate["full"]) == {"RV", "MYO", "LV", "mean"}
    assert not segmenter_path(task, train, "smoke", "avail-slice00").exists()


def test_not_computed_without_labels():
    context = EvalContext(task=_brain_task(), train=_subjects(2, 3, labels=False), preset="smoke")
    for metric in (Dice(), FDSeg()):
        metric.prepare(context)
        result = metric.compute()
        assert result.status == "not computed" and "label" in result.reason


def _numpy_dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    total = prediction.sum() + reference.sum()
    return 1.0 if total == 0 else 2.0 * (prediction & reference).sum() / total


def test_validation_dice_is_recorded_with_the_segmenter_and_in_the_dice_result():
    task, train, validation = _brain_task(), _subjects(3, 3), _subjects(2, 3)
    context = EvalContext(task=task, train=train, preset="smoke", validation=validation)
    dice = Dice()
    dice.prepare(context)
    subject = validation[0]
    target = torch.from_numpy(subject.image)[None]
    dice.update(target.clone(), target, torch.ones(1, 3, 6, dtype=torch.bool),
                {"subject_id": "v", "problem": task.problem, "label": torch.from_numpy(subject.label)})
    recorded = dice.compute().aggregate[SEGMENTER_VALIDATION]
    segmenter = get_segmenter(task, train, "smoke", [0, 1, 2])
    assert segmenter.validation_dice == recorded
    # independent reference: numpy Dice of the segmenter's own predictions, mean over subjects, per region
    expected = {}
    for index, (region, values) in enumerate(BRAIN_REGIONS.items()):
        expected[region] = np.mean([_numpy_dice(segmenter.predict(torch.from_numpy(s.image))[index].numpy(),
                                                np.isin(s.label, values)) for s in validation])
    assert recorded == pytest.approx({**expected, "mean": np.mean(list(expected.values()))}, abs=1e-6)
    # stored in the checkpoint: a fresh process state reads it back without the validation subjects
    segmenter_module._LOADED.clear()
    assert get_segmenter(task, train, "smoke", [0, 1, 2]).validation_dice == recorded


def test_validation_dice_is_none_without_validation_subjects():
    segmenter = get_segmenter(_brain_task(), _subjects(2, 3), "smoke", [0, 1, 2])
    assert segmenter.validation_dice is None


def test_draw_slices_takes_the_foreground_share_among_labelled_slices():
    rng = np.random.default_rng(0)
    foreground = np.zeros(40, dtype=bool)
    foreground[10:20] = True
    for _ in range(20):
        chosen = draw_slices(rng, foreground, 8, 0.75)
        assert len(set(chosen.tolist())) == 8 and foreground[chosen].sum() >= 6
    few = np.zeros(40, dtype=bool)
    few[[3, 7]] = True
    chosen = draw_slices(rng, few, 8, 0.75)   # fewer labelled slices than wanted: all of them, then others
    assert len(set(chosen.tolist())) == 8 and set(np.flatnonzero(few)) <= set(chosen.tolist())
    assert len(draw_slices(rng, few, 100, 0.5)) == 40   # never more slices than there are


def test_training_learns_separable_regions(monkeypatch):
    """The training recipe (batch Dice + cross-entropy, foreground slices) segments a region that differs in
    intensity (WT: 75 voxels a subject; TC and ET are a few voxels here); the first cpu recipe (per-slice Dice,
    uniform slices, 2e-3) ended at a Dice loss of ~0.98 on the phantoms."""
    config = SegmenterConfig(init_filters=8, blocks_down=(1, 2), blocks_up=(1,), steps=60, batch_size=2, lr=1e-2,
                             save_every=60, slices=8, foreground_share=0.75)
    monkeypatch.setitem(PRESETS, "smoke", config)
    train, validation = _subjects(4, 3, shape=(8, 16, 16)), _subjects(2, 3, shape=(8, 16, 16))
    segmenter = get_segmenter(_brain_task(), train, "smoke", [0, 1, 2], validation=validation)
    assert segmenter.validation_dice["WT"] > 0.9


def test_segmenter_predicts_with_the_moving_average_of_its_weights(monkeypatch):
    config = SegmenterConfig(init_filters=4, blocks_down=(1, 1), blocks_up=(1,), steps=4, batch_size=2, lr=1e-2,
                             save_every=4, slices=4, foreground_share=0.5, ema_decay=0.5)
    monkeypatch.setitem(PRESETS, "smoke", config)
    task = _brain_task()
    train = _subjects(2, 3)
    segmenter = get_segmenter(task, train, "smoke", [0, 1, 2])
    saved = torch.load(segmenter_path(task, train, "smoke", "full"), weights_only=True)["objects"]
    name = "convInit.conv.weight"
    assert torch.equal(segmenter.net.state_dict()[name], saved["ema"][name])
    assert not torch.equal(saved["ema"][name], saved["model"][name])


def test_segmenter_identity_does_not_depend_on_the_cache_or_the_callers_threads(tmp_path, monkeypatch):
    """Results from two caches merge only when their segmenters hash alike: the same data and preset must give
    the same file, whatever folder it is cached in and whatever thread count the caller runs at."""
    task, train = _brain_task(), _subjects(2, 3)
    seen = []
    original = segmenter_module.train_network
    monkeypatch.setattr(segmenter_module, "train_network",
                        lambda *args, **kwargs: (seen.append(torch.get_num_threads()), original(*args, **kwargs)))
    digests = []
    for cache, threads in (("first", 2), ("second", 1)):
        monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / cache))
        segmenter_module._LOADED.clear()
        with torch_threads(threads):
            digests.append(get_segmenter(task, train, "smoke", [0, 1, 2]).info["sha256"])
            assert torch.get_num_threads() == threads, "the caller's thread count is restored"
    assert seen == [segmenter_module.SEGMENTER_THREADS] * 2
    assert digests[0] == digests[1]
