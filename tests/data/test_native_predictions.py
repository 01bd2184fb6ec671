"""``mribench run`` writes predictions on each subject's source grid (default) and/or the preprocessed grid, and
``mribench score`` reads either: checked on the real BraTS case of ../shared/data (skipped when absent)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mribench.cli import app
from mribench.metrics.score import score_predictions
from mribench.results import read_result
from mribench.tasks import get_task
from mribench.plugins import registry

TASK = """name: real-brats-native
version: 1
description: the real case of ../shared/data under three subject IDs
dataset: brats2021
problem: missing-modality
elements: [T1, T1ce, T2, FLAIR]
missing: 2
train_missing: [1, 3]
split: {rule: ratio, test_fraction: 0.34, seed: 0}
preprocess: {shape: [16, 48, 48], slice_window: 90}
metrics: [{name: psnr}]
"""


@pytest.fixture
def real_brats(tmp_path, shared_data):
    """The real case as three BraTS 2021 subjects (symlinks) and a small task on them."""
    source = shared_data / "brain" / "TCGA-DU-7294"
    for index in range(3):
        sid = f"BraTS2021_{index:05d}"
        (tmp_path / "root" / sid).mkdir(parents=True)
        for name in ("t1", "t1ce", "t2", "flair", "seg"):
            (tmp_path / "root" / sid / f"{sid}_{name}.nii.gz").symlink_to(source / f"TCGA-DU-7294_{name}.nii.gz")
    (tmp_path / "real-brats-native.yaml").write_text(TASK)
    return tmp_path, nib.load(source / "TCGA-DU-7294_t1.nii.gz")


def test_real_case_prediction_has_the_source_volume_shape_and_affine(real_brats):
    folder, source = real_brats
    runs = folder / "runs"
    result = CliRunner().invoke(app, ["run", "--method", "mean-available", "--task", str(folder / "real-brats-native.yaml"),
                                      "--preset", "smoke", "--data-root", str(folder / "root"), "--out", str(runs),
                                      "--predictions", "both"])
    assert result.exit_code == 0, result.output
    run_folder = next(runs.glob("real-brats-native/mean-available/*"))
    stored = read_result(run_folder / "result.json")
    (sid,) = stored.subjects
    native_files = sorted((run_folder / "predictions" / sid).glob("*.nii.gz"))
    preprocessed_files = sorted((run_folder / "predictions-preprocessed" / sid).glob("*.nii.gz"))
    assert len(native_files) == 2 and [p.name for p in native_files] == [p.name for p in preprocessed_files]
    for path in native_files:
        native = nib.load(path)
        assert native.shape == source.shape == (240, 240, 155)
        np.testing.assert_allclose(native.affine, source.affine, atol=1e-4)
        values = np.asarray(native.dataobj)
        brain = np.asarray(source.dataobj) != 0
        assert values.max() <= 1 and values[brain].mean() > 10 * values[~brain].mean()
    assert nib.load(preprocessed_files[0]).shape == (16, 48, 48)

    # score reads both grids: the preprocessed files give the run's own numbers, the native ones nearly so
    task = get_task(str(folder / "real-brats-native.yaml"))
    reported = stored.metrics["psnr"]["per_subject"][sid]
    on_preprocessed = score_predictions(task, registry().dataset(task.dataset), registry().task_metrics(task), run_folder / "predictions-preprocessed", folder / "root", "smoke")
    assert on_preprocessed.results["psnr"].per_subject[sid] == pytest.approx(reported, abs=1e-4)
    scored = CliRunner().invoke(app, ["score", "--task", str(folder / "real-brats-native.yaml"), "--predictions",
                                      str(run_folder / "predictions"), "--data-root", str(folder / "root"),
                                      "--preset", "smoke"])
    assert scored.exit_code == 0, scored.output
    on_native = json.loads(scored.stdout)["metrics"]["psnr"]["per_subject"][sid]
    assert on_native == pytest.approx(reported, abs=0.5)
