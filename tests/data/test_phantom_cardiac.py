"""Realism of the cardiac phantoms: bSSFP contrast, ventricle volumes and shape, short-axis geometry, ACDC files."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from mribench.data import phantom_cardiac as pc

OPTIONS = pc.CardiacPhantomOptions(subjects=3, seed=0, voxel_mm=3.0)
LV, MYO, RV = pc.LABELS["lv"], pc.LABELS["myo"], pc.LABELS["rv"]


@pytest.fixture(scope="module")
def simulations():
    return [pc.simulate_cardiac(OPTIONS, index) for index in range(OPTIONS.subjects)]


def volume_ml(simulation: pc.CardiacSimulation, labels: np.ndarray, value: int) -> float:
    return float((labels == value).sum()) * OPTIONS.voxel_mm ** 2 * simulation.stack.thickness / 1000.0


def test_acdc_label_convention():
    assert (RV, MYO, LV) == (1, 2, 3)  # as in ACDC's *_gt files and the ACDC loader


def test_bssfp_blood_is_brighter_than_myocardium_and_lung_is_dark(simulations):
    for simulation in simulations:
        frame = simulation.frames["ED"]
        blood = np.median(frame.image[frame.labels == LV])
        myocardium = np.median(frame.image[frame.labels == MYO])
        reconstructed = np.broadcast_to(pc.reconstructed_disc(simulation.stack, OPTIONS.voxel_mm) > 0.99,
                                        frame.image.shape)
        lung = np.median(frame.image[(frame.fractions["lung"] > 0.9) & reconstructed])
        fat = np.median(frame.image[(frame.fractions["fat"] > 0.9) & reconstructed])
        assert blood > 1.3 * myocardium
        assert np.median(frame.image[frame.labels == RV]) > 1.3 * myocardium
        assert fat > myocardium > 3 * lung


def test_ventricle_volumes_and_ejection_are_plausible(simulations):
    for simulation in simulations:
        ed, es = simulation.frames["ED"].labels, simulation.frames["ES"].labels
        lv_ed, lv_es = volume_ml(simulation, ed, LV), volume_ml(simulation, es, LV)
        assert 40.0 < lv_ed < 400.0, simulation.heart.group
        assert 40.0 < volume_ml(simulation, ed, MYO) < 350.0
        assert 10.0 < volume_ml(simulation, ed, RV) < 400.0
        low, high = pc.GROUPS[simulation.heart.group]["ef"]
        assert low - 0.15 < 1.0 - lv_es / lv_ed < high + 0.15  # voxelised EF near the group's range


def test_myocardium_surrounds_the_lv_cavity(simulations):
    for simulation in simulations:
        labels = simulation.frames["ED"].labels
        with_cavity = [k for k in range(labels.shape[2]) if (labels[:, :, k] == LV).sum() >= 5]
        third = len(with_cavity) // 3
        for k in with_cavity[third:len(with_cavity) - third]:  # mid-ventricle (the base opens onto the atrium)
            cavity = labels[:, :, k] == LV
            ring = ndimage.binary_dilation(cavity, iterations=1) & ~cavity
            assert np.mean(labels[:, :, k][ring] == MYO) > 0.8
            assert ndimage.label(cavity)[1] == 1


def test_the_heart_tapers_from_base_to_apex(simulations):
    for simulation in simulations:
        labels = simulation.frames["ED"].labels
        areas = [(labels[:, :, k] == LV).sum() for k in range(labels.shape[2])]
        present = [k for k, a in enumerate(areas) if a > 0]
        assert len(present) >= 4
        largest = int(np.argmax(areas))
        assert largest < present[len(present) // 2]  # widest near the base (low slice index), narrow at the apex
        assert areas[present[-1]] < 0.5 * areas[largest]


def test_only_noise_outside_the_reconstructed_disc(simulations):
    for simulation in simulations:
        frame = simulation.frames["ED"]
        disc = pc.reconstructed_disc(simulation.stack, OPTIONS.voxel_mm)[:, :, 0]
        assert 0.2 < disc.mean() < 0.6  # a disc of 0.33-0.40 of the FOV on a square grid covers 34-50 %
        outside = np.broadcast_to((disc < 1e-3)[:, :, None], frame.image.shape)
        blood = np.median(frame.image[frame.labels == LV])
        # Rician noise of zero signal (σ = blood / 30): its 99th percentile is about 0.1 × blood; the chest wall and
        # its fat, which reach outside the disc, would be about as bright as blood
        assert np.percentile(frame.image[outside], 99) < 0.2 * blood


def test_short_axis_stack_geometry(simulations):
    for simulation in simulations:
        affine = simulation.stack.affine
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        assert spacing[:2] == pytest.approx([OPTIONS.voxel_mm] * 2)
        assert 5.0 <= spacing[2] <= 10.0
        directions = affine[:3, :3] / spacing
        assert np.allclose(directions.T @ directions, np.eye(3), atol=1e-6)
        assert np.abs(directions).max() < 0.95  # oblique: no voxel axis along a scanner axis
        # the slice axis follows the heart's long axis, base (slice 0) to apex
        assert directions[:, 2] @ simulation.heart.long_axis > 0.95


def test_written_patient_folder_is_acdc(tmp_path):
    pc.write_cardiac_subject(tmp_path, OPTIONS, 0)
    folder = tmp_path / "patient001"
    info = (folder / "Info.cfg").read_text()
    fields = dict(line.split(": ") for line in info.strip().splitlines())
    assert set(fields) == {"ED", "ES", "Group", "Height", "NbFrame", "Weight"}
    assert fields["Group"] in pc.GROUPS
    assert 1 <= int(fields["ED"]) < int(fields["ES"]) <= int(fields["NbFrame"])
    names = sorted(p.name for p in folder.iterdir())
    frames = {f"patient001_frame{int(fields[p]):02d}" for p in ("ED", "ES")}
    assert names == sorted(["Info.cfg", *(f"{f}.nii.gz" for f in frames), *(f"{f}_gt.nii.gz" for f in frames)])
    assert all(re.fullmatch(r"patient\d{3}_frame\d{2}(_gt)?\.nii\.gz|Info\.cfg", n) for n in names)
