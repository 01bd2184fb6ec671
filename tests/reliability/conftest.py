"""Fixtures of the reliability tests: a small BraTS-layout folder (the brain phantom's anatomy at 6 mm, written by
mribench's own phantom writer), a task YAML reading it, and the environment of mribench subprocesses."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mribench.data.phantom_brain import BrainPhantomOptions, write_brats_subject

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = 8
TASK_NAME = "rel-brats-missing1"

TASK_YAML = f"""\
name: {TASK_NAME}
version: 1
description: reliability tests, BraTS layout, 1 of 4 modalities missing
dataset: brats2021
problem: missing-modality
elements: [T1, T1ce, T2, FLAIR]
missing: 1
train_missing: [1, 3]
split: {{rule: ratio, test_fraction: 0.25, seed: 0}}
preprocess: {{shape: [8, 16, 16]}}
metrics: [{{name: psnr}}, {{name: dice}}]
"""


@pytest.fixture(scope="session")
def brats_source(tmp_path_factory) -> Path:
    """Eight BraTS-layout subjects (40×40×26 voxels), written once per session; copy before changing them."""
    root = tmp_path_factory.mktemp("brats-source")
    options = BrainPhantomOptions(subjects=SUBJECTS, voxel_mm=6.0)
    for index in range(SUBJECTS):
        write_brats_subject(root, options, index)
    return root


@pytest.fixture(scope="session")
def brats_task(tmp_path_factory) -> Path:
    """The YAML of a task on a BraTS-layout folder: 6 training (1 of them validation) and 2 test subjects,
    scored by PSNR and by Dice (a downstream segmenter, i.e. an extractor with an identity)."""
    path = tmp_path_factory.mktemp("tasks") / f"{TASK_NAME}.yaml"
    path.write_text(TASK_YAML)
    return path


@pytest.fixture
def subprocess_env(tmp_path) -> dict[str, str]:
    """Environment of a subprocess running this worktree's mribench with the test's own cache, one thread."""
    path = os.pathsep.join([str(REPO), str(REPO / "plugins" / "copedit"), str(REPO / "plugins" / "baselines")])
    return {**os.environ, "PYTHONPATH": path, "MRIBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
