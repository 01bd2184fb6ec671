"""Bad inputs: each gives one clear line naming the file, `verify` lists it, `run` stops or skips, the cache stays clean."""
from __future__ import annotations

import gzip
import re

import nibabel as nib
import numpy as np
import pytest

from mribench.data import load_task_data
from mribench.data.acdc import ACDCDataset
from mribench.data.brats import Brats2021Dataset
from mribench.data.cache import PreprocessedCache
from mribench.data.ixi import IXIDataset
from mribench.data.nifti import write_volume
from mribench.data.verify import open_dataset, verify_dataset
from mribench.errors import BadDataError, DataMissingError
from mribench.tasks import TaskSpec

BAD = "BraTS2021_00003"


def brats_task(**preprocess) -> TaskSpec:
    return TaskSpec(name="tiny-brats", version=1, description="test", dataset="brats2021", problem="missing-modality",
                    elements=["T1", "T1ce", "T2", "FLAIR"], missing=1, train_missing=(1, 3),
                    split={"rule": "ratio", "test_fraction": 0.4, "seed": 0},
                    preprocess={"shape": (8, 12, 12), **preprocess}, metrics=[{"name": "psnr"}])


def damage(root, kind):
    """Break subject BAD in one way; returns the name of the file that should be blamed."""
    folder = root / BAD
    t2 = folder / f"{BAD}_t2.nii.gz"
    image = nib.load(t2)
    data, affine = np.asarray(image.dataobj), image.affine
    if kind == "truncated":
        raw = gzip.compress(gzip.decompress(t2.read_bytes()))
        t2.write_bytes(raw[: len(raw) // 2])
    elif kind == "not-nifti":
        t2.write_text("this is a text file with a NIfTI name\n")
    elif kind in ("nan", "inf"):
        bad = data.astype(np.float32)
        bad[5, 5, 5] = np.nan if kind == "nan" else np.inf
        write_volume(t2, bad, affine)
    elif kind == "4d":
        write_volume(t2, np.stack([data, data], axis=-1), affine)
    elif kind == "other-shape":
        write_volume(t2, data[:, :, :-2], affine)
    elif kind == "other-affine":
        shifted = affine.copy()
        shifted[0, 3] += 3.0
        write_volume(t2, data, shifted)
    elif kind == "constant":
        write_volume(t2, np.zeros_like(data), affine)
    elif kind == "missing":
        (folder / f"{BAD}_flair.nii.gz").unlink()
        return f"{BAD}_flair.nii.gz"
    elif kind in ("labels", "label-grid"):
        seg = folder / f"{BAD}_seg.nii.gz"
        label = np.asarray(nib.load(seg).dataobj).copy()
        label[label == 1] = 3
        write_volume(seg, label if kind == "labels" else label[:, :, :-1] % 3, affine)
        return f"{BAD}_seg.nii.gz"
    return t2.name


CASES = {
    "truncated": "truncated or corrupt",
    "not-nifti": "not a readable NIfTI file",
    "nan": "NaN or Inf",
    "inf": "NaN or Inf",
    "4d": "expected a 3D volume, got shape (24, 24, 16, 2)",
    "other-shape": "contrast T2 is on another grid than T1: shape (24, 24, 14) vs (24, 24, 16)",
    "other-affine": "contrast T2 is on another grid than T1: affines differ by up to 3 mm",
    "constant": "constant",
    "missing": "missing contrast FLAIR",
    "labels": "unexpected label values [3] (allowed: [0, 1, 2, 4])",
    "label-grid": "label is on another grid than the image: shape (24, 24, 15) vs (24, 24, 16)",
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_is_one_clear_line_and_nothing_is_cached(tmp_path, layouts, kind):
    root = tmp_path / "brats"
    layouts.brats(root, n=5)
    blamed = damage(root, kind)
    problems = verify_dataset(open_dataset(Brats2021Dataset, root))
    assert [(p.subject_id, p.severity) for p in problems] == [(BAD, "error")]
    assert problems[0].file.endswith(blamed)
    assert CASES[kind] in problems[0].problem

    task = brats_task()
    with pytest.raises(BadDataError, match=re.escape(CASES[kind])) as info:
        load_task_data(task, Brats2021Dataset, root)
    message = str(info.value)
    assert "\n" not in message and blamed in message
    cache = PreprocessedCache(Brats2021Dataset(root), task.preprocess)
    assert not cache.entry_dir(BAD).exists()

    data = load_task_data(task, Brats2021Dataset, root, skip_bad=True)
    assert data.skipped == [BAD] and BAD not in data.split.train + data.split.test
    assert blamed in data.skip_reasons[0] and len(data.train) + len(data.test) == 4


def test_verify_lists_every_problem_and_a_clean_dataset_has_none(tmp_path, layouts):
    root = tmp_path / "brats"
    layouts.brats(root, n=4)
    assert verify_dataset(open_dataset(Brats2021Dataset, root)) == []
    damage(root, "nan")
    (root / BAD / f"{BAD}_t1.nii.gz").write_text("nope")
    problems = verify_dataset(open_dataset(Brats2021Dataset, root))
    assert sorted(p.file.rsplit("_", 1)[-1] for p in problems) == ["t1.nii.gz", "t2.nii.gz"]


@pytest.mark.parametrize("state", ["nonexistent", "empty", "no-subjects"])
def test_missing_data_names_layout_source_and_where_to_point(tmp_path, state):
    root = tmp_path / "brats"
    if state != "nonexistent":
        root.mkdir()
    if state == "no-subjects":
        (root / "README.txt").write_text("nothing here")
    with pytest.raises(DataMissingError) as info:
        load_task_data(brats_task(), Brats2021Dataset, root)
    message = str(info.value)
    assert "\n" not in message and Brats2021Dataset.layout in message
    if state != "no-subjects":
        assert "--data-root" in message and "synapse.org" in message and "MRIBENCH_DATA" in message
    if state == "no-subjects":
        assert verify_dataset(open_dataset(Brats2021Dataset, root))[0].problem.startswith("no subjects found")
    else:
        with pytest.raises(DataMissingError, match=f"{root} (does not exist|is empty)"):
            open_dataset(Brats2021Dataset, root)


def test_ixi_pd_on_another_grid_than_t2_and_acdc_bad_labels(tmp_path, layouts):
    layouts.ixi(tmp_path / "ixi")
    pd = tmp_path / "ixi" / "IXI012-HH-1211-PD.nii.gz"
    image = nib.load(pd)
    write_volume(pd, np.asarray(image.dataobj)[:-1], image.affine)
    problems = verify_dataset(IXIDataset(tmp_path / "ixi"))
    assert [(p.subject_id, p.problem) for p in problems] == [
        ("IXI012-HH-1211", "PD is on another grid than T2: shape (31, 36, 20) vs (32, 36, 20)")]

    layouts.acdc(tmp_path / "acdc")
    gt = tmp_path / "acdc" / "training" / "patient002" / "patient002_frame02_gt.nii.gz"
    label = nib.load(gt)
    write_volume(gt, np.asarray(label.dataobj) + 2, label.affine)
    (tmp_path / "acdc" / "training" / "patient001" / "Info.cfg").write_text("ES: 9\n")
    layouts.acdc(tmp_path / "acdc", patients=("patient003",))
    (tmp_path / "acdc" / "training" / "patient003" / "patient003_frame02.nii.gz").unlink()
    problems = verify_dataset(ACDCDataset(tmp_path / "acdc"))
    assert [p.problem for p in problems] == ["no 'ED: N' line naming the end-diastolic frame",
                                             "unexpected label values [4, 5] (allowed: [0, 1, 2, 3])",
                                             "missing image file"]
    assert problems[2].file.endswith("patient003_frame02.nii.gz")


def flat(result) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_cli_verify_and_prepare(tmp_path, layouts):
    from typer.testing import CliRunner

    from mribench.cli import app

    root = tmp_path / "brats"
    layouts.brats(root, n=5)
    runner = CliRunner()
    clean = runner.invoke(app, ["data", "verify", "--dataset", "brats2021", "--root", str(root)])
    assert clean.exit_code == 0 and "5 subjects checked, 0 with errors" in flat(clean)
    task_file = tmp_path / "tiny-brats.yaml"
    task_file.write_text(brats_task().model_dump_json())  # JSON is YAML
    damage(root, "nan")
    bad = runner.invoke(app, ["data", "verify", "--dataset", "brats2021", "--root", str(root)])
    assert bad.exit_code == 1 and BAD in bad.output and "1 with errors" in flat(bad)
    prepared = runner.invoke(app, ["data", "prepare", "--task", str(task_file), "--data-root", str(root)])
    assert prepared.exit_code == 1 and BAD in prepared.output
    assert re.search(r"\d train \+ \d validation \+ 2 test subjects", flat(prepared)) and "1 skipped" in flat(prepared)
    missing = runner.invoke(app, ["data", "verify", "--dataset", "brats2021", "--root", str(tmp_path / "nope")])
    assert missing.exit_code == 2
