"""Loaders on tiny synthetic folders in the official layouts: IDs, channel order, IXI resampling, ACDC frames."""
from __future__ import annotations

import numpy as np
import pytest

from mribench.data.acdc import ACDCDataset
from mribench.data.brats import Brats2021Dataset
from mribench.data.ixi import IXIDataset
from mribench.data.nifti_folder import NiftiFolderDataset
from mribench.errors import MribenchError
from mribench.plugins import registry
from mribench.tasks import PreprocessSpec

BRAIN_SPEC = PreprocessSpec(shape=(8, 12, 12), slice_window=12)
CARDIAC_SPEC = PreprocessSpec(shape=(16, 16, 16), orientation=None, crop_foreground=False)


def test_loaders_are_registered_under_their_names():
    for name, cls in [("brats2021", Brats2021Dataset), ("ixi", IXIDataset), ("acdc", ACDCDataset),
                      ("nifti-folder", NiftiFolderDataset)]:
        assert registry().dataset(name) is cls


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_brats_ids_sorted_and_channels_in_t1_t1ce_t2_flair_order(tmp_path, layouts, suffix):
    ids = layouts.brats(tmp_path, n=3, suffix=suffix)
    (tmp_path / "notes").mkdir()  # a folder without BraTS files is not a subject
    dataset = Brats2021Dataset(tmp_path)
    assert dataset.subject_ids() == sorted(ids)
    raw = dataset.read_raw(ids[1])
    points = layouts.world_points(layouts.shape, layouts.affine)
    for channel in range(4):  # each contrast of the writer has its own pattern: the channel order is T1, T1ce, ...
        expected = layouts.head(points + 1, channel).astype(np.int16)
        np.testing.assert_array_equal(raw.image[channel], expected)
    subject = dataset.load(ids[1], BRAIN_SPEC)
    assert subject.image.shape == (4, 8, 12, 12)
    assert set(np.unique(subject.label)) <= {0, 1, 2, 4} and (subject.label == 4).any()


def test_ixi_resamples_sagittal_t1_onto_the_t2_grid(tmp_path, layouts):
    layouts.ixi(tmp_path, folders=True, without_pd=("IXI099-IOP-0001",))
    dataset = IXIDataset(tmp_path)
    assert dataset.subject_ids() == ["IXI002-Guys-0828", "IXI012-HH-1211"]  # the subject without PD is left out
    assert [p.subject_id for p in dataset.excluded_subjects()] == ["IXI099-IOP-0001"]
    raw = dataset.read_raw("IXI002-Guys-0828")
    t1, t2 = raw.image[0], raw.image[1]
    assert t1.shape == t2.shape == (32, 36, 20)
    inside = (t1 > 0) & (t2 > 0)
    dice = 2 * inside.sum() / ((t1 > 0).sum() + (t2 > 0).sum())
    assert dice > 0.9
    correlation = np.corrcoef(t1[inside], t2[inside])[0, 1]
    assert correlation > 0.95  # same world-space content after resampling
    assert dataset.load("IXI002-Guys-0828", BRAIN_SPEC).image.shape == (3, 8, 12, 12)


def test_acdc_reads_the_end_diastolic_frame_and_its_labels(tmp_path, layouts):
    layouts.acdc(tmp_path, ed_frame=2)
    dataset = ACDCDataset(tmp_path)
    assert dataset.subject_ids() == ["patient001", "patient002"]
    raw = dataset.read_raw("patient001")
    assert raw.image.shape == (1, 24, 24, 10)
    assert raw.image[0, 12, 12, 0] == 200  # frame 02 (ED), not frame 09
    assert set(np.unique(raw.label)) == {0, 2, 3}
    assert any(p.name == "Info.cfg" for p in dataset.source_files("patient001"))
    subject = dataset.load("patient001", CARDIAC_SPEC)
    assert subject.image.shape == (1, 16, 16, 16) and subject.label.shape == (16, 16, 16)


def test_nifti_folder_layout_and_options(tmp_path, layouts):
    for subject in ("ukbb_b", "ukbb_a"):
        layouts.cardiac_stack(tmp_path / subject / "sa_ED.nii.gz", 150.0, tmp_path / subject / "seg_ED.nii.gz")
    dataset = NiftiFolderDataset(tmp_path, {"image": "sa_ED", "label": "seg_ED", "label_values": [0, 1, 2, 3]})
    assert dataset.subject_ids() == ["ukbb_a", "ukbb_b"]
    assert dataset.load("ukbb_a", CARDIAC_SPEC).label is not None
    with pytest.raises(MribenchError, match=r"unknown dataset_options \['imgae'\]"):
        NiftiFolderDataset(tmp_path, {"imgae": "sa_ED"})
