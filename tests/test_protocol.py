import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import torch

import pytest

from mribench.errors import MribenchError
from mribench.protocol import (Batch, describe_missing, draw_training_availability, evaluation_availability,
                               infer_availability, make_split, missing_count, parse_missing)
from mribench.tasks import get_task

SUBJECTS = [f"BraTS2021_{i:05d}" for i in range(200)]


def _patterns(task_name, subjects):
    task = get_task(task_name)
    return {s: evaluation_availability(task, s) for s in subjects}


def test_split_is_a_function_of_sorted_ids_not_their_order():
    task = get_task("phantom-brats-missing1")
    shuffled = list(np.random.default_rng(1).permutation(SUBJECTS))
    a, b = make_split(task, SUBJECTS), make_split(task, shuffled)
    assert a == b and len(a.test) == 40 and not set(a.train) & set(a.test)
    assert a.hash == b.hash and len(a.hash) == 64


def test_exactly_k_modalities_missing_and_near_uniform():
    for k in (1, 2, 3):
        patterns = _patterns(f"phantom-brats-missing{k}", SUBJECTS)
        counts = Counter()
        for mask in patterns.values():
            missing_channels = [c for c in range(4) if not mask[c].any()]
            assert len(missing_channels) == k and all(mask[c].all() for c in range(4) if c not in missing_channels)
            counts.update(missing_channels)
        expected = len(SUBJECTS) * k / 4
        assert all(abs(counts[c] - expected) < 0.25 * expected for c in range(4)), counts


def test_cardiac_runs_are_contiguous_inside_the_volume_with_uniform_starts():
    for k in (8, 16, 24):
        starts = []
        for mask in _patterns(f"phantom-cardiac-missing{k}", SUBJECTS).values():
            missing = np.flatnonzero(~mask[0])
            assert len(missing) == k and (np.diff(missing) == 1).all() and 0 <= missing[0] and missing[-1] < 32
            starts.append(missing[0])
        assert len(set(starts)) > min(10, 32 - k)


def test_patterns_identical_across_processes_with_different_hash_seeds():
    code = ("import json; from mribench.protocol import evaluation_availability; from mribench.tasks import get_task;"
            "t = get_task('phantom-brats-missing2');"
            "print(json.dumps({s: evaluation_availability(t, s).tolist() for s in ['a', 'b', 'BraTS2021_00042']}))")
    outputs = []
    for hash_seed in ("1", "999"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        outputs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout)
    assert outputs[0] == outputs[1]
    task = get_task("phantom-brats-missing2")
    here = {s: evaluation_availability(task, s).tolist() for s in ["a", "b", "BraTS2021_00042"]}
    assert json.loads(outputs[0]) == here


def test_a_changed_seed_changes_patterns():
    task = get_task("phantom-brats-missing1")
    other = task.model_copy(update={"pattern_seed": 7})
    assert any((evaluation_availability(task, s) != evaluation_availability(other, s)).any() for s in SUBJECTS[:20])


def test_training_masks_follow_train_missing():
    task = get_task("phantom-cardiac-missing8")
    masks = draw_training_availability(np.random.default_rng(0), task, 64)
    counts = missing_count(masks, task.problem)
    assert masks.shape == (64, 1, 32) and counts.min() >= 8 and counts.max() <= 24 and len(set(counts.tolist())) > 3


@pytest.mark.parametrize("task_name", ["phantom-brats-missing1", "phantom-cardiac-missing8"])
def test_availability_is_inferred_from_the_zero_filled_image_alone(task_name):
    task = get_task(task_name)
    mask = draw_training_availability(np.random.default_rng(0), task, 6)
    complete = torch.rand(6, task.channels, mask.shape[2], 4, 4) + 0.01
    complete[0, 0, 0] = 0  # an observed slice that happens to be black must not hide an observed modality
    inferred = infer_availability(Batch.from_complete(complete, mask, [str(i) for i in range(6)]).image, task.problem)
    if task.problem == "missing-modality":
        assert torch.equal(inferred, mask)
    else:  # a black observed slice reads as missing: the slice is the element
        expected = mask.clone()
        expected[0, 0, 0] = False
        assert torch.equal(inferred, expected)


def test_batch_zero_fills_missing_elements():
    complete = torch.rand(1, 4, 3, 5, 5) + 0.1
    mask = torch.tensor([[[True] * 3, [False] * 3, [True] * 3, [True] * 3]])
    batch = Batch.from_complete(complete, mask, ["s"])
    assert (batch.image[0, 1] == 0).all() and torch.equal(batch.image[0, 0], complete[0, 0])


def test_validation_is_carved_from_training_subjects_deterministically():
    task = get_task("phantom-brats-missing1")
    split = make_split(task, SUBJECTS)
    shuffled = make_split(task, list(np.random.default_rng(3).permutation(SUBJECTS)))
    assert split == shuffled and split.validation_hash == shuffled.validation_hash
    train, validation, test = set(split.train), set(split.validation), set(split.test)
    assert not (train & validation) and not (train & test) and not (validation & test)
    assert train | validation | test == set(SUBJECTS) and len(test) == 40
    assert len(validation) == 16  # 10 % of the 160 protocol training subjects
    # the test split is what it was before validation existed: carving touches only training subjects
    assert split.hash == make_split(task, SUBJECTS).hash and len(split.validation_hash) == 64


def test_validation_never_empty_and_never_takes_every_training_subject():
    task = get_task("phantom-brats-missing1")
    split = make_split(task, SUBJECTS[:5])
    assert len(split.test) == 1 and len(split.validation) == 1 and len(split.train) == 3
    assert split.without({split.validation[0]}).validation == []


def test_a_stated_missing_configuration_reads_back_as_the_same_words():
    brain, cardiac = get_task("phantom-brats-missing1"), get_task("phantom-cardiac-missing8")
    availability = parse_missing(brain, "t1CE, FLAIR")
    assert availability.shape == (4, brain.preprocess.shape[0])
    assert [bool(a) for a in availability.all(axis=1)] == [True, False, True, False]  # T1, T1ce, T2, FLAIR
    assert describe_missing(brain, availability) == "T1ce,FLAIR"
    availability = parse_missing(cardiac, "12-19")
    assert np.flatnonzero(~availability[0]).tolist() == list(range(12, 20)) and availability.shape[0] == 1
    assert describe_missing(cardiac, availability) == "12-19"


@pytest.mark.parametrize("task_name, text, message", [
    ("phantom-brats-missing1", "T1ce,DWI", "'DWI' is not a modality of task phantom-brats-missing1"),
    ("phantom-brats-missing1", "T1,t1", "a modality is named twice"),
    ("phantom-brats-missing1", "T1,T1ce,T2,FLAIR", "4 missing modalities is outside the range 1-3"),
    ("phantom-cardiac-missing8", "12", "state it as FIRST-LAST"),
    ("phantom-cardiac-missing8", "20-40", "has slices 0-31"),
    ("phantom-cardiac-missing8", "9-3", "FIRST <= LAST"),
    ("phantom-cardiac-missing8", "0-2", "3 missing slices is outside the range 8-24"),
])
def test_a_stated_missing_configuration_outside_the_task_is_refused(task_name, text, message):
    with pytest.raises(MribenchError, match=re.escape(message)):
        parse_missing(get_task(task_name), text)
