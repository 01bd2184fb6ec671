"""Preprocessing: axis convention, crops, intensities, and an affine that maps output voxels to the right world point."""
from __future__ import annotations

import numpy as np
import pytest

from mribench.data.base import RawSubject
from mribench.data.preprocess import NativeGrid, preprocess_subject, to_native, to_preprocessed
from mribench.tasks import PreprocessSpec
from mribench.threads import torch_threads

LPS_AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, -1.5, 0, 15.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])


def raw_with_blob(shape=(24, 26, 16), affine=LPS_AFFINE, blob_voxel=(6, 17, 11)):
    """A head (non-zero box with margins) holding one bright voxel blob; label 1 on the blob."""
    image = np.zeros((2, *shape), dtype=np.float32)
    image[:, 3:-3, 2:-2, 2:-2] = 10.0 + np.random.default_rng(0).random((2, shape[0] - 6, shape[1] - 4, shape[2] - 4))
    x, y, z = blob_voxel
    image[:, x - 1:x + 2, y - 1:y + 2, z - 1:z + 2] = 100.0
    label = np.zeros(shape, dtype=np.int16)
    label[x - 1:x + 2, y - 1:y + 2, z - 1:z + 2] = 4
    return RawSubject("s", image, affine.copy(), label, files=[])


def world_of(affine: np.ndarray, index) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(index, dtype=np.float64) + affine[:3, 3]


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("spec", [
    PreprocessSpec(shape=(12, 20, 18), crop_foreground=True, slice_window=10, center_crop=(18, 16),
                   percentiles=(0.0, 100.0)),
    PreprocessSpec(shape=(16, 26, 24), crop_foreground=False, percentiles=(0.0, 100.0)),
    PreprocessSpec(shape=(8, 8, 8), crop_foreground=True, percentiles=(0.0, 100.0)),
])
def test_blob_stays_at_its_world_position(spec):
    raw = raw_with_blob()
    subject = preprocess_subject(raw, spec)
    assert subject.image.shape == (2, *spec.shape) and subject.image.dtype == np.float32
    assert subject.label.shape == spec.shape and subject.label.dtype == np.int16
    source_world = world_of(raw.affine, centroid(raw.label == 4))
    output_world = world_of(subject.affine, centroid(subject.label == 4))
    voxel_mm = np.linalg.norm(subject.affine[:3, :3], axis=0).max()
    assert np.linalg.norm(output_world - source_world) < voxel_mm
    assert np.linalg.norm(world_of(subject.affine, centroid(subject.image[0] > 0.5)) - source_world) < voxel_mm


@pytest.mark.parametrize("shape", [(5, 9, 7), (30, 40, 50)])
def test_every_label_voxel_maps_onto_the_same_label_in_the_source(shape):
    """Down- or upsampled, each output label voxel centre, mapped through the affines, lands in that source label."""
    raw = raw_with_blob()
    raw.label[2:20, 4:22, 3:13] = 1
    raw.label[6:14, 8:18, 5:9] = 2
    subject = preprocess_subject(raw, PreprocessSpec(shape=shape, crop_foreground=False))
    to_source = np.linalg.inv(raw.affine) @ subject.affine
    for value in (1, 2):
        index = np.argwhere(subject.label == value)
        source = index @ to_source[:3, :3].T + to_source[:3, 3]
        # a centre exactly half-way between two source voxels may take either: accept both roundings of a tie
        below, above = np.ceil(source - 0.5).astype(int), np.floor(source + 0.5).astype(int)
        hits = (raw.label[tuple(below.T)] == value) | (raw.label[tuple(above.T)] == value)
        assert len(index) and hits.all()


def test_ras_axes_become_superior_anterior_right():
    subject = preprocess_subject(raw_with_blob(), PreprocessSpec(shape=(16, 26, 24), crop_foreground=False))
    directions = subject.affine[:3, :3] / np.linalg.norm(subject.affine[:3, :3], axis=0)
    # D runs inferior→superior (world z), H posterior→anterior (y), W left→right (x)
    np.testing.assert_allclose(directions, [[0, 0, 1], [0, 1, 0], [1, 0, 0]], atol=1e-9)


def test_crops_without_resampling_copy_the_exact_voxels():
    """With the output shape equal to the cropped shape, the image is the source window itself (no interpolation)."""
    raw = raw_with_blob(affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    raw.image[:] = np.arange(raw.image[0].size, dtype=np.float32).reshape(raw.image.shape[1:])
    spec = PreprocessSpec(shape=(10, 20, 18), crop_foreground=False, slice_window=10, center_crop=(20, 18),
                          percentiles=(0.0, 100.0))
    subject = preprocess_subject(raw, spec)
    window = raw.image[0].transpose(2, 1, 0)[3:13, 3:23, 3:21]  # (Z, Y, X), middle 10 / 20 / 18
    expected = (window - window.min()) / (window.max() - window.min())
    np.testing.assert_allclose(subject.image[0], expected, atol=1e-6)
    np.testing.assert_allclose(subject.affine[:3, 3], [3, 3, 3])


def test_intensities_are_percentile_scaled_per_contrast_and_clipped():
    raw = raw_with_blob()
    raw.image[1] = raw.image[0] * 1000.0
    subject = preprocess_subject(raw, PreprocessSpec(shape=(8, 12, 12), crop_foreground=False))
    for channel in subject.image:
        assert channel.min() == 0.0 and channel.max() == 1.0
    np.testing.assert_allclose(subject.image[0], subject.image[1], atol=1e-5)  # same content, scale removed


def test_no_orientation_keeps_voxel_axis_two_as_slices():
    affine = np.array([[0, 0, -8.0, 30.0], [1.4, 0, 0, -20.0], [0, -1.4, 0, 25.0], [0, 0, 0, 1]])
    raw = raw_with_blob(shape=(24, 24, 10), affine=affine, blob_voxel=(12, 12, 4))
    subject = preprocess_subject(raw, PreprocessSpec(shape=(10, 24, 24), orientation=None, crop_foreground=False))
    np.testing.assert_allclose(subject.affine[:3, 0], affine[:3, 2])  # D steps like the source's slice axis
    np.testing.assert_allclose(centroid(subject.label == 4), [4, 12, 12])  # (slice, y, x) of the blob


def test_a_prediction_saved_with_the_subject_affine_overlays_the_source(tmp_path):
    """Write the preprocessed label as NIfTI with Subject.affine, resample it onto the source grid: it overlaps."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    from mribench.data.nifti import write_volume

    raw = raw_with_blob()
    raw.label[4:18, 6:20, 4:12] = 1
    subject = preprocess_subject(raw, PreprocessSpec(shape=(10, 16, 16), crop_foreground=True))
    write_volume(tmp_path / "prediction.nii.gz", subject.label, subject.affine)
    back = resample_from_to(nib.load(tmp_path / "prediction.nii.gz"), (raw.label.shape, raw.affine), order=0)
    predicted, truth = np.asarray(back.dataobj) == 1, raw.label == 1
    assert 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()) > 0.9


# -- the way back: predictions on the subject's source grid ---------------------------------------------------
NATIVE_SPECS = [
    PreprocessSpec(shape=(8, 14, 12), crop_foreground=True, slice_window=10, center_crop=(18, 16),
                   percentiles=(0.0, 100.0)),
    PreprocessSpec(shape=(10, 16, 12), crop_foreground=False, percentiles=(0.0, 100.0)),
    PreprocessSpec(shape=(6, 20, 18), orientation=None, crop_foreground=True, percentiles=(0.0, 100.0)),
]


# world x runs along voxel axis 1 and y along axis 0: reorienting and putting the slice axis first is then a cyclic
# permutation (not its own inverse), and axis 0 is flipped
SWAPPED_AFFINE = np.array([[0, 1.5, 0, -20.0], [-1.25, 0, 0, 15.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])
NATIVE_AFFINES = pytest.mark.parametrize("affine", [LPS_AFFINE, SWAPPED_AFFINE], ids=["lps", "swapped"])


def _box_interior(grid: NativeGrid, margin: int) -> np.ndarray:
    """Source-grid mask of the crop box shrunk by ``margin`` voxels on every side."""
    inside = np.zeros(grid.reoriented_shape, dtype=bool)
    inside[tuple(slice(start + margin, stop - margin) for start, stop in grid.box)] = True
    inside = np.flip(inside, axis=[k for k in range(3) if grid.flipped[k]])
    return np.transpose(inside, np.argsort(grid.axes))


@NATIVE_AFFINES
@pytest.mark.parametrize("spec", NATIVE_SPECS)
def test_native_image_matches_nibabel_resampling_through_the_affines(spec, affine, tmp_path):
    """to_native of a preprocessed image equals nibabel's trilinear resampling of the NIfTI written with the
    subject's affine onto the source grid (inside the crop box, off its border voxels), and is zero outside."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    from mribench.data.nifti import write_volume

    raw = raw_with_blob(affine=affine)
    subject = preprocess_subject(raw, spec)
    grid = NativeGrid.of(subject.meta)
    assert grid.shape == raw.image.shape[1:] and np.array_equal(grid.affine_array, raw.affine)
    native = to_native(subject.image[0], grid)
    assert native.shape == raw.image.shape[1:] and native.dtype == np.float32
    write_volume(tmp_path / "pred.nii.gz", subject.image[0], subject.affine)
    reference = np.asarray(resample_from_to(nib.load(tmp_path / "pred.nii.gz"), (native.shape, raw.affine),
                                            order=1).dataobj)
    interior = _box_interior(grid, margin=2)
    assert interior.sum() > 100
    np.testing.assert_allclose(native[interior], reference[interior], atol=1e-4)
    assert not native[~_box_interior(grid, margin=0)].any()


@NATIVE_AFFINES
@pytest.mark.parametrize("spec", NATIVE_SPECS)
def test_native_label_is_the_source_label_when_nothing_was_resized(spec, affine):
    raw = raw_with_blob(affine=affine)
    raw.label[4:18, 6:20, 4:12] = 1
    box_shape = tuple(b - a for a, b in NativeGrid.of(preprocess_subject(raw, spec).meta).box)
    subject = preprocess_subject(raw, spec.model_copy(update={"shape": box_shape}))
    grid = NativeGrid.of(subject.meta)
    native = to_native(subject.label, grid, label=True)
    inside = _box_interior(grid, margin=0)
    assert native.dtype == np.int16 and (native != 0).any()
    np.testing.assert_array_equal(native[inside], raw.label[inside])
    assert not native[~inside].any()


@NATIVE_AFFINES
@pytest.mark.parametrize("spec", NATIVE_SPECS)
def test_to_preprocessed_is_the_pipeline_without_intensity_scaling(spec, affine):
    raw = raw_with_blob(affine=affine)
    subject = preprocess_subject(raw, spec)
    grid = NativeGrid.of(subject.meta)
    for channel in range(2):
        moved = to_preprocessed(raw.image[channel], grid, spec.shape)
        scaled = (moved - moved.min()) / (moved.max() - moved.min())  # percentiles (0, 100): min-max
        np.testing.assert_allclose(scaled, subject.image[channel], atol=1e-5)


def test_native_grid_survives_the_cache_json():
    import json

    subject = preprocess_subject(raw_with_blob(), NATIVE_SPECS[0])
    stored = json.loads(json.dumps(subject.meta))
    assert NativeGrid.of(stored) == NativeGrid.of(subject.meta)
    assert NativeGrid.of({}) is None


def test_preprocessed_bytes_do_not_depend_on_the_callers_thread_count():
    """The cache is shared and compared by content: a BraTS-twin-sized shrink (its anti-aliasing and trilinear
    sums split over threads) must give the same bytes at 1 and 2 caller threads (it differed by one ulp in ~10 %
    of voxels before preprocessing ran at a fixed count)."""
    import torch

    raw = raw_with_blob(shape=(120, 120, 78))
    spec = PreprocessSpec(shape=(32, 96, 96), crop_foreground=True, percentiles=(0.0, 100.0))
    images = []
    for threads in (1, 2):
        with torch_threads(threads):
            images.append(preprocess_subject(raw, spec).image)
            assert torch.get_num_threads() == threads, "the caller's thread count is restored"
    assert images[0].tobytes() == images[1].tobytes()
