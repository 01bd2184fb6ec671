"""The loaders on the real cases of ../shared/data, copied into the official layouts by symlinks (skipped if absent)."""
from __future__ import annotations

import nibabel as nib
import numpy as np

from mribench.data.acdc import ACDCDataset
from mribench.data.brats import Brats2021Dataset
from mribench.data.ixi import IXIDataset
from mribench.data.nifti import write_volume
from mribench.data.nifti_folder import NiftiFolderDataset
from mribench.data.preprocess import preprocess_subject
from mribench.tasks import PreprocessSpec


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3]


def test_real_brats_case_in_the_official_layout(tmp_path, shared_data):
    source = shared_data / "brain" / "TCGA-DU-7294"
    folder = tmp_path / "BraTS2021_00042"
    folder.mkdir()
    for name in ("t1", "t1ce", "t2", "flair", "seg"):
        (folder / f"BraTS2021_00042_{name}.nii.gz").symlink_to(source / f"TCGA-DU-7294_{name}.nii.gz")
    dataset = Brats2021Dataset(tmp_path)
    assert dataset.subject_ids() == ["BraTS2021_00042"]
    raw = dataset.read_raw("BraTS2021_00042")
    subject = preprocess_subject(raw, PreprocessSpec(shape=(32, 64, 64), slice_window=90))
    assert subject.image.shape == (4, 32, 64, 64) and 0 <= subject.image.min() and subject.image.max() <= 1
    seg = nib.load(source / "TCGA-DU-7294_seg.nii.gz")
    oedema = subject.label == 2
    assert oedema.any()
    # the affine of the preprocessed grid maps its oedema voxels onto oedema voxels of the source segmentation
    to_source = np.linalg.inv(seg.affine) @ subject.affine
    source_index = np.rint(np.argwhere(oedema) @ to_source[:3, :3].T + to_source[:3, 3]).astype(int)
    hits = np.asarray(seg.dataobj)[tuple(source_index.T)] == 2
    assert hits.mean() > 0.99
    # channel order T1, T1ce, T2, FLAIR: each channel is its own file (T1ce and FLAIR never swapped)
    for channel, name in ((1, "t1ce"), (3, "flair")):
        np.testing.assert_array_equal(raw.image[channel], nib.load(source / f"TCGA-DU-7294_{name}.nii.gz").get_fdata())

def test_real_ixi_t1_lands_on_the_t2_brain(tmp_path, shared_data):
    source = shared_data / "ixi" / "IXI002-Guys-0828"
    (tmp_path / "IXI002-Guys-0828-T1.nii.gz").symlink_to(source / "IXI002-Guys-0828_t1.nii.gz")
    (tmp_path / "IXI002-Guys-0828-T2.nii.gz").symlink_to(source / "IXI002-Guys-0828_t2.nii.gz")
    t2 = nib.load(source / "IXI002-Guys-0828_t2.nii.gz")
    # no PD in the shared case: synthesise one on the T2 grid (inverted T2 contrast inside the brain)
    t2_data = np.asarray(t2.dataobj, dtype=np.float32)
    write_volume(tmp_path / "IXI002-Guys-0828-PD.nii.gz", np.where(t2_data > 0, t2_data.max() - t2_data, 0), t2.affine)
    raw = IXIDataset(tmp_path).read_raw("IXI002-Guys-0828")
    t2_mask = np.asarray(nib.load(source / "IXI002-Guys-0828_t2_brainmask.nii.gz").dataobj) > 0
    t1_mask = raw.image[0] > 0
    dice = 2 * (t1_mask & t2_mask).sum() / (t1_mask.sum() + t2_mask.sum())
    assert dice > 0.9


def test_real_cardiac_stacks_as_acdc_and_nifti_folder(tmp_path, shared_data):
    cardiac = shared_data / "cardiac"
    spec = PreprocessSpec(shape=(32, 64, 64), orientation=None, crop_foreground=False, center_crop=(160, 160))
    for case, patient in (("SCD0000101", "patient001"), ("SCD0000201", "patient002")):
        folder = tmp_path / "acdc" / patient
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text("ED: 1\nES: 10\n")
        (folder / f"{patient}_frame01.nii.gz").symlink_to(cardiac / f"{case}_ed.nii.gz")
        (folder / f"{patient}_frame01_gt.nii.gz").symlink_to(cardiac / f"{case}_ed_lvseg.nii.gz")
        (folder / f"{patient}_frame10.nii.gz").symlink_to(cardiac / f"{case}_es.nii.gz")
        stack = tmp_path / "ukbb" / case
        stack.mkdir(parents=True)
        (stack / "image.nii.gz").symlink_to(cardiac / f"{case}_ed.nii.gz")
        (stack / "label.nii.gz").symlink_to(cardiac / f"{case}_ed_lvseg.nii.gz")
    acdc = ACDCDataset(tmp_path / "acdc")
    folder_dataset = NiftiFolderDataset(tmp_path / "ukbb")
    for patient, case in zip(acdc.subject_ids(), folder_dataset.subject_ids()):
        from_acdc = acdc.load(patient, spec)
        from_folder = folder_dataset.load(case, spec)
        np.testing.assert_array_equal(from_acdc.image, from_folder.image)
        seg = nib.load(cardiac / f"{case}_ed_lvseg.nii.gz")
        assert from_acdc.image.shape == (1, 32, 64, 64) and set(np.unique(from_acdc.label)) == {0, 1, 2}
        # D is the acquisition's slice axis (voxel axis 2), and the LV cavity keeps its world position
        np.testing.assert_allclose(np.linalg.norm(from_acdc.affine[:3, 0]) * 32,
                                   np.linalg.norm(seg.affine[:3, 2]) * seg.shape[2], rtol=1e-6)
        cavity = world_centroid(from_acdc.label == 1, from_acdc.affine)
        cavity_source = world_centroid(np.asarray(seg.dataobj) == 1, seg.affine)
        assert np.linalg.norm(cavity - cavity_source) < np.linalg.norm(seg.affine[:3, 2])
