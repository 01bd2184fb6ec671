"""Realism of the brain phantoms: MR contrast order, tumour labels, anatomy kept inside the head, learnability."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mribench.data import phantom_brain as pb

OPTIONS = pb.BrainPhantomOptions(subjects=4, seed=0, voxel_mm=4.0)
VOXEL_ML = OPTIONS.voxel_mm ** 3 / 1000.0


@pytest.fixture(scope="module")
def brats():
    """Two simulated BraTS-like subjects whose tumours enhance (labels 1, 2 and 4 present)."""
    subjects = []
    for index in range(OPTIONS.subjects):
        simulation = pb.simulate_brats(OPTIONS, index)
        if {1, 2, 4} <= set(np.unique(simulation.tissues.labels).tolist()):
            subjects.append(simulation)
    assert len(subjects) >= 2, "the fixture needs two enhancing tumours among the first subjects"
    return subjects[:2]


@pytest.fixture(scope="module")
def ixi():
    return pb.simulate_ixi(OPTIONS, 0)


def pure(simulation: pb.BrainSimulation, tissue: str, threshold: float = 0.75) -> np.ndarray:
    mask = simulation.tissues.fractions[tissue] > threshold
    assert mask.sum() >= 10, f"too few {tissue} voxels"
    return mask


def median(image: np.ndarray, mask: np.ndarray) -> float:
    return float(np.median(image[mask]))


def tissue_medians(simulation: pb.BrainSimulation, contrast: str) -> dict[str, float]:
    image = simulation.images[contrast]
    values = {t: median(image, pure(simulation, t)) for t in ("csf", "gm", "wm")}
    values.update({f"label{v}": median(image, simulation.tissues.labels == v)
                   for v in (1, 2, 4) if (simulation.tissues.labels == v).any()})
    return values


def test_t1_t2_order_follows_relaxation(brats):
    for simulation in brats:
        t1 = tissue_medians(simulation, "T1")
        t2 = tissue_medians(simulation, "T2")
        assert t1["wm"] > t1["gm"] > t1["csf"]
        assert t2["csf"] > t2["gm"] > t2["wm"]
        assert t2["label2"] > t2["wm"] * 1.5  # oedema: long T2


def test_flair_nulls_csf_and_shows_oedema(brats):
    for simulation in brats:
        flair = tissue_medians(simulation, "FLAIR")
        assert flair["csf"] < min(flair["gm"], flair["wm"]) * 0.5
        assert flair["label2"] > max(flair["gm"], flair["wm"]) * 1.3


def test_gadolinium_brightens_only_the_enhancing_rim(brats):
    for simulation in brats:
        t1, t1ce = tissue_medians(simulation, "T1"), tissue_medians(simulation, "T1ce")
        rim_t1, rim_t1ce = t1["label4"] / t1["wm"], t1ce["label4"] / t1ce["wm"]
        assert rim_t1ce > 1.3 * rim_t1
        assert rim_t1ce > 1.0 > rim_t1  # hyperintense after contrast, hypointense before
        assert t1ce["label1"] / t1ce["wm"] < 0.8  # the necrotic core does not enhance


def test_pd_order(ixi):
    pd = tissue_medians(ixi["axial"], "PD")
    assert pd["csf"] >= pd["gm"] > pd["wm"]


def test_tumour_label_volumes_are_plausible(brats):
    for simulation in brats:
        labels = simulation.tissues.labels
        assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4}
        whole = (labels > 0).sum() * VOXEL_ML
        core = np.isin(labels, (1, 4)).sum() * VOXEL_ML
        enhancing = (labels == 4).sum() * VOXEL_ML
        assert 10.0 < whole < 350.0  # BraTS whole tumours: tens to a few hundred ml
        assert 0 < enhancing < core < whole
        assert simulation.tissues.brain_mask[labels > 0].all()


def test_tissue_fractions_are_partial_volumes(brats, ixi):
    for tissues in [s.tissues for s in brats] + [s.tissues for s in ixi.values()]:
        total = sum(tissues.fractions.values())
        assert total.max() <= 1.0 + 1e-3
        assert min(f.min() for f in tissues.fractions.values()) >= 0.0


def test_warped_head_stays_whole_and_inside_the_field_of_view(brats, ixi):
    for simulation in brats:
        foreground = simulation.images["T1"] > 0
        components, count = ndimage.label(foreground)
        sizes = np.bincount(components.ravel())[1:]
        assert sizes.max() > 0.99 * foreground.sum()  # one piece: the warp tears nothing off
        # skull-stripped: nothing outside the brain mask, and the brain does not touch the lateral / AP borders
        assert not foreground[~simulation.tissues.brain_mask].any()
        for axis in (0, 1):
            assert not np.take(foreground, [0, -1], axis=axis).any()
    axial = ixi["axial"]
    total = sum(axial.tissues.fractions.values())
    for contrast in ("T2", "PD"):
        image = axial.images[contrast]
        air = median(image, total < 0.01)
        assert air < 0.1 * median(image, pure(axial, "wm"))  # air holds only noise


def test_ixi_t1_is_sagittal_on_its_own_grid(ixi):
    sagittal, axial = ixi["sagittal"], ixi["axial"]
    slice_axis = sagittal.affine[:3, 2]
    assert abs(slice_axis[0]) == pytest.approx(np.linalg.norm(slice_axis))  # voxel axis 2 runs left-right
    assert abs(axial.affine[2, 2]) == pytest.approx(np.linalg.norm(axial.affine[:3, 2]))  # axial slices
    assert sagittal.images["T1"].shape != axial.images["T2"].shape


def normalised(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image[mask], [0.5, 99.5])
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def tissue_class(simulation: pb.BrainSimulation) -> np.ndarray:
    names = sorted(simulation.tissues.fractions)
    return np.argmax(np.stack([simulation.tissues.fractions[n] for n in names]), axis=0)


def test_a_missing_contrast_is_predictable_from_the_others(brats):
    """A per-tissue linear map fitted on one subject predicts another subject's missing contrast far better than
    the mean of its observed contrasts: the phantoms hold cross-contrast structure for synthesis to learn."""
    train, test = brats
    contrasts = list(pb.BRATS_FILES)
    data = []
    for simulation in (train, test):
        mask = simulation.tissues.brain_mask
        stack = np.stack([normalised(simulation.images[c], mask)[mask] for c in contrasts], axis=1)
        data.append((stack, tissue_class(simulation)[mask]))
    ratios = {}
    for missing in range(len(contrasts)):
        observed = [i for i in range(len(contrasts)) if i != missing]
        prediction = np.zeros(len(data[1][0]))
        for tissue in np.unique(data[1][1]):
            fit_rows, test_rows = data[0][1] == tissue, data[1][1] == tissue
            design = np.column_stack([data[0][0][fit_rows][:, observed], np.ones(fit_rows.sum())])
            weights = np.linalg.lstsq(design, data[0][0][fit_rows, missing], rcond=None)[0]
            prediction[test_rows] = np.column_stack([data[1][0][test_rows][:, observed],
                                                     np.ones(test_rows.sum())]) @ weights
        target = data[1][0][:, missing]
        model_error = np.mean((prediction - target) ** 2)
        floor_error = np.mean((data[1][0][:, observed].mean(axis=1) - target) ** 2)
        ratios[contrasts[missing]] = model_error / floor_error
    # FLAIR is the hardest (it sits near the mean of the others and its percentile scaling follows the oedema)
    assert max(ratios.values()) < 0.75, ratios
    assert np.mean(list(ratios.values())) < 0.4, ratios


def test_subjects_differ_and_repeat():
    first = pb.simulate_brats(OPTIONS, 0)
    again = pb.simulate_brats(OPTIONS, 0)
    second = pb.simulate_brats(OPTIONS, 1)
    assert np.array_equal(again.images["T2"], first.images["T2"])
    assert not np.array_equal(first.tissues.fractions["wm"], second.tissues.fractions["wm"])


def test_bad_options_name_the_key():
    from mribench.errors import MribenchError
    from mribench.data.phantom_common import parse_options

    with pytest.raises(MribenchError, match="voxel_mm"):
        parse_options(pb.BrainPhantomOptions, "phantom-brats", {"voxel_mm": 0.1})
    with pytest.raises(MribenchError, match="colour"):
        parse_options(pb.BrainPhantomOptions, "phantom-brats", {"colour": "red"})


def scipy_samples(template: pb.Template, points: np.ndarray, name: str) -> np.ndarray:
    """The reference: scipy's trilinear interpolation of one map at every point, as the generator did it before."""
    coords = (points @ template.world_to_voxel[:3, :3].T.astype(np.float32)
              + template.world_to_voxel[:3, 3].astype(np.float32))
    return ndimage.map_coordinates(getattr(template, name), np.moveaxis(coords, -1, 0), output=np.float32, order=1,
                                   mode="nearest" if name == "outside_mm" else "constant", cval=0.0, prefilter=False)


def assert_samples_are_scipy_bit_for_bit(template: pb.Template, points: np.ndarray) -> None:
    names = pb.TEMPLATE_MAPS
    for name, values in zip(names, template.sample(template.voxel_coordinates(points), *names)):
        expected = scipy_samples(template, points, name)
        assert values.dtype == np.float32 and values.shape == points.shape[:-1]
        assert np.array_equal(values.view(np.int32), expected.view(np.int32)), name


def test_sampling_only_near_non_zero_voxels_gives_scipy_values_at_edges_and_outside():
    """Voxel space = world space; blobs touching the grid's faces; points on cell corners, on the last voxel, just
    inside and outside the grid, and random ones around it."""
    rng = np.random.default_rng(0)
    shape = (7, 6, 5)
    maps = {}
    for offset, name in enumerate(pb.TEMPLATE_MAPS):
        values = np.zeros(shape, dtype=np.float32)
        values[offset % 3:offset % 3 + 3, 2:, :2] = rng.uniform(0.1, 1.0, (3, 4, 2))  # touches y = 5 and z = 0
        values[-1, 0, -1] = 0.5  # a lone corner voxel
        maps[name] = values
    template = pb.Template(**maps, world_to_voxel=np.eye(4), nonzero_cells=pb.nonzero_cells(maps),
                           ventricle_centre=np.zeros(3), brain_centre=np.zeros(3), tumour_sites=np.zeros((1, 3)))
    corners = np.stack(np.meshgrid(*[np.arange(-1.0, n + 1.0, 0.5) for n in shape], indexing="ij"), axis=-1)
    nudged = np.concatenate([corners + delta for delta in (-1e-4, 0.0, 1e-4)])
    scattered = rng.uniform(-2.0, 8.0, (40, 30, 3))
    for points in (corners, nudged, scattered):
        assert_samples_are_scipy_bit_for_bit(template, points.astype(np.float32))


def test_sampling_a_warped_subject_gives_scipy_values():
    template = pb.load_template(OPTIONS.voxel_mm)
    anatomy = pb.draw_anatomy(np.random.default_rng(3), template, with_tumour=False)
    shape, affine = pb.ixi_grids(OPTIONS.voxel_mm)["sagittal"]
    points = pb.to_template(anatomy, template, pb.grid_points(shape, affine))
    for shift in (0.0, 50.0, -50.0):  # more of the field of view off the template on either side
        assert_samples_are_scipy_bit_for_bit(template, points + np.float32(shift))
