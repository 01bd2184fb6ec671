"""Cardiac MRI phantoms: bSSFP cine-like short-axis stacks written in ACDC's layout.

Each subject is a chest (body outline, subcutaneous fat, chest-wall muscle, dark lungs, spine, descending aorta,
liver under the diaphragm dome) around a heart: the LV blood pool inside a myocardial shell that tapers from base to
apex (half-ellipsoids) and a crescent RV blood pool wrapped around the septum, shorter than the LV, with epicardial
fat. Per subject: ACDC pathology group (NOR, DCM, HCM, MINF, RV) setting cavity size, wall thickness and ejection
fraction; heart orientation, slice thickness and offset; a small breath-hold misalignment between slices. Frames
end-diastole (ED) and end-systole (ES: cavity shrunk by the ejection fraction, myocardial area kept, base descended).

Signal: balanced SSFP ρ·sin α / ((T1/T2 + 1) − cos α·(T1/T2 − 1))·e^(−TE/T2), TR 3 ms, TE 1.5 ms, α 60°, 1.5 T
relaxation times, with partial volume across the slice thickness (8–10 mm slices, as UK Biobank and Sunnybrook), a
smooth bias field, a reconstructed disc around the heart (only noise in the grid's corners, as in the Sunnybrook
stacks) and Rician noise. Labels follow ACDC's files: 1 RV cavity, 2 LV myocardium, 3 LV cavity (0 elsewhere).

Calibration (generator v2): ``mribench data calibrate`` scores slice-interp and mean-available on this twin and on
real short-axis stacks preprocessed alike; v1 was 4–6 dB harder than the real stacks, mostly through the bright
subcutaneous fat ring sweeping across the oblique slices, v2 is within 1 dB (README, "Phantoms").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from mribench.data.acdc import ACDCDataset
from mribench.data.phantom_common import (FourierField, PhantomDataset, PhantomOptions, Tissue, bias_field, bssfp,
                                          grid_points, rician, save_nifti, sigmoid, subject_rng,
                                          to_scanner_units)

# Relaxation times at 1.5 T (ms): blood's long T2 makes it bright against the myocardium in bSSFP, as in real cines.
TISSUES: dict[str, Tissue] = {
    "blood": Tissue(1500.0, 250.0, 0.95),
    "myocardium": Tissue(1000.0, 45.0, 0.8),
    "fat": Tissue(300.0, 80.0, 0.7),  # effective density: off-resonant fat peaks lose signal; about blood's level
    "liver": Tissue(600.0, 45.0, 0.7),
    "muscle": Tissue(1000.0, 40.0, 0.75),  # chest wall, RV free wall, mediastinum
    "marrow": Tissue(500.0, 60.0, 0.7),  # vertebral body
    "lung": Tissue(1200.0, 40.0, 0.08),  # dark: little proton density (and short T2*)
}
TE_MS, FLIP_DEG = 1.5, 60.0
SNR_BLOOD = 30.0
RELAXATION_JITTER = 0.03
LABELS = {"rv": 1, "myo": 2, "lv": 3}
FOV_MM = 320.0
# The reconstructed image keeps a disc of the square grid (radius as a fraction of the FOV): outside it only noise,
# as in the dark corners of the Sunnybrook stacks (their signal region's equivalent radius: 0.38-0.40 of the FOV);
# the chest wall far from the heart mostly falls outside it.
DISC_RADIUS = (0.33, 0.40)
DISC_EDGE_MM = 8.0
SLICE_SPACING_MM = (8.0, 10.0)  # slice thickness = spacing; UK Biobank and Sunnybrook: a slice every 10 mm
SLICE_SUBSAMPLES = 3  # odd: the middle one lies on the slice centre

# ACDC groups: LV base endocardial radius (mm), wall thickness (mm), LV ejection fraction, RV size factor, RV EF
GROUPS = {
    "NOR": {"radius": (22.0, 26.0), "wall": (8.0, 11.0), "ef": (0.55, 0.70), "rv": (1.0, 1.15), "rv_ef": (0.5, 0.65)},
    "DCM": {"radius": (29.0, 35.0), "wall": (6.0, 8.5), "ef": (0.15, 0.35), "rv": (1.0, 1.2), "rv_ef": (0.3, 0.5)},
    "HCM": {"radius": (19.0, 23.0), "wall": (14.0, 20.0), "ef": (0.65, 0.80), "rv": (0.9, 1.05), "rv_ef": (0.5, 0.65)},
    "MINF": {"radius": (26.0, 31.0), "wall": (7.0, 10.0), "ef": (0.25, 0.45), "rv": (1.0, 1.15), "rv_ef": (0.4, 0.6)},
    "RV": {"radius": (21.0, 25.0), "wall": (8.0, 11.0), "ef": (0.50, 0.65), "rv": (1.35, 1.6), "rv_ef": (0.2, 0.4)},
}


class CardiacPhantomOptions(PhantomOptions):
    """``dataset_options`` of the cardiac phantom; voxel_mm is the in-plane spacing (ACDC: 1.37–1.68 mm)."""

    subjects: int = Field(default=100, ge=1, le=999)
    voxel_mm: float = Field(default=1.6, ge=1.0, le=6.0)


@dataclass(frozen=True)
class Heart:
    """One subject's heart and chest, in world mm (RAS); frame-dependent sizes are computed by :func:`frame_shape`."""

    group: str
    base: np.ndarray  # (3,) centre of the LV base plane
    long_axis: np.ndarray  # (3,) unit vector base → apex
    rv_direction: np.ndarray  # (3,) unit vector in the SAX plane, LV centre → RV
    lv_radius: float  # ED endocardial radius at the base
    lv_length: float  # ED base → endocardial apex
    wall: float
    ef: float
    rv_scale: float
    rv_ef: float
    fat_noise: FourierField
    body_axes: tuple[float, float]  # body outline semi-axes (LR, AP)
    fat_mm: float  # subcutaneous fat thickness
    diaphragm_z: float  # height of the diaphragm dome (world z)


@dataclass(frozen=True)
class Stack:
    """The acquisition: SAX grid (slice axis = voxel axis 2), thickness and per-slice breath-hold offsets."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    thickness: float
    slice_offsets: np.ndarray  # (Z, 3) mm
    disc_radius_mm: float  # the reconstructed disc of each slice, around the grid's in-plane centre


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def draw_heart(rng: np.random.Generator) -> Heart:
    group = str(rng.choice(sorted(GROUPS)))
    params = GROUPS[group]
    # towards left, anterior, inferior; jitter clipped so the stack stays oblique to every scanner axis
    long_axis = unit(np.array([-0.6, 0.55, -0.55]) + np.clip(rng.normal(0.0, 0.12, 3), -0.2, 0.2))
    towards_rv = np.array([1.0, 0.3, 0.0]) + rng.normal(0.0, 0.15, 3)
    rv_direction = unit(towards_rv - long_axis * (towards_rv @ long_axis))
    radius = rng.uniform(*params["radius"])
    lv_length = radius * rng.uniform(3.0, 3.6)
    base = np.array([-10.0, 15.0, 25.0]) + rng.normal(0.0, 5.0, 3)
    apex_z = float((base + lv_length * long_axis)[2])
    return Heart(group=group, base=base, long_axis=long_axis, rv_direction=rv_direction, lv_radius=radius,
                 lv_length=lv_length, wall=rng.uniform(*params["wall"]), ef=rng.uniform(*params["ef"]),
                 rv_scale=rng.uniform(*params["rv"]), rv_ef=rng.uniform(*params["rv_ef"]),
                 fat_noise=FourierField.random(rng, 8.0),
                 body_axes=(rng.uniform(140.0, 180.0), rng.uniform(95.0, 125.0)), fat_mm=rng.uniform(4.0, 14.0),
                 diaphragm_z=apex_z + rng.uniform(-20.0, -5.0))


def draw_stack(rng: np.random.Generator, heart: Heart, voxel_mm: float) -> Stack:
    """A SAX stack planned on the LV axis (with a few degrees of planning error) from above the base to the apex."""
    thickness = rng.uniform(*SLICE_SPACING_MM)
    axis = unit(heart.long_axis + rng.normal(0.0, 0.05, 3))
    in_plane_1 = unit(np.cross(axis, np.array([0.0, 0.0, 1.0])))
    in_plane_2 = np.cross(axis, in_plane_1)
    angle = rng.uniform(-0.2, 0.2)
    row = np.cos(angle) * in_plane_1 + np.sin(angle) * in_plane_2
    column = np.cross(axis, row)
    n_in_plane = int(round(FOV_MM / voxel_mm))
    top = rng.uniform(10.0, 20.0)  # start above the base (atria)
    coverage = top + heart.lv_length + heart.wall + rng.uniform(5.0, 15.0)
    n_slices = int(np.ceil(coverage / thickness))
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row * voxel_mm, column * voxel_mm, axis * thickness
    centre = heart.base + rng.uniform(-12.0, 12.0) * row + rng.uniform(-12.0, 12.0) * column
    first = centre - top * axis
    affine[:3, 3] = first - affine[:3, :2] @ np.full(2, (n_in_plane - 1) / 2.0)
    offsets = rng.normal(0.0, 1.5, (n_slices, 3)) * np.array([1.0, 1.0, 0.7])
    disc_radius = rng.uniform(*DISC_RADIUS) * FOV_MM
    return Stack((n_in_plane, n_in_plane, n_slices), affine, thickness, offsets, disc_radius)


def reconstructed_disc(stack: Stack, voxel_mm: float) -> np.ndarray:
    """(X, Y, 1) float32: 1 inside the stack's reconstructed disc, fading to 0 over about DISC_EDGE_MM outside."""
    n = stack.shape[0]
    offset = (np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * voxel_mm
    radius = np.hypot(offset[:, None], offset[None, :])
    return sigmoid((stack.disc_radius_mm - radius) * 4.0 / DISC_EDGE_MM)[:, :, None]


@dataclass(frozen=True)
class FrameShape:
    """LV/RV sizes of one cardiac phase."""

    lv_radius: float
    lv_length: float
    base_shift: float  # base descent towards the apex (mm)
    epi_extra: float  # epicardial radius² minus endocardial radius² at the base (myocardial area kept)
    rv_scale: float


def frame_shape(heart: Heart, phase: str) -> FrameShape:
    epi_extra = (heart.lv_radius + heart.wall) ** 2 - heart.lv_radius ** 2
    if phase == "ED":
        return FrameShape(heart.lv_radius, heart.lv_length, 0.0, epi_extra, heart.rv_scale)
    residual = 1.0 - heart.ef
    length = heart.lv_length * residual ** 0.2
    return FrameShape(heart.lv_radius * residual ** 0.4, length, heart.lv_length - length, epi_extra,
                      heart.rv_scale * (1.0 - heart.rv_ef) ** 0.5)


def chest_fractions(heart: Heart, shape: FrameShape, points: np.ndarray, softness: float
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tissue fractions (name → (...) float32) and hard labels (...) uint8 at world points (..., 3)."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    a, b = heart.body_axes
    ellipse = np.sqrt((x / a) ** 2 + ((y + 10.0) / b) ** 2)  # 1 on the skin
    body = sigmoid((1.0 - ellipse) * a / softness)
    inner_fat = sigmoid((1.0 - ellipse) * a / softness - heart.fat_mm / softness)
    thorax = sigmoid((1.0 - ellipse) * a / softness - (heart.fat_mm + 12.0) / softness)
    fractions = {"fat": body - inner_fat, "muscle": inner_fat - thorax}

    spine = sigmoid((18.0 - np.hypot(x, y + b - 30.0)) / softness) * thorax
    aorta = sigmoid((12.0 - np.hypot(x + 25.0, y + b - 55.0)) / softness) * thorax * (1.0 - spine)
    dome = heart.diaphragm_z - 0.002 * ((x - 40.0) ** 2 + (y + 10.0) ** 2)
    below = sigmoid((dome - z) / softness) * thorax * (1.0 - spine - aorta)

    # heart coordinates: w along the long axis from the (frame's) base, r in the SAX plane
    rel = points - (heart.base + shape.base_shift * heart.long_axis).astype(np.float32)
    w = rel @ heart.long_axis.astype(np.float32)
    in_plane = rel - w[..., None] * heart.long_axis.astype(np.float32)
    r_lv = np.sqrt(np.sum(in_plane * in_plane, axis=-1))
    level = np.clip(w / shape.lv_length, 0.0, 1.0)
    endo = shape.lv_radius * np.sqrt(np.clip(1.0 - level ** 2, 0.0, 1.0))
    apex_cap = heart.wall * 0.8
    epi_level = np.clip(w / (shape.lv_length + apex_cap), 0.0, 1.0)
    epi = np.sqrt(shape.lv_radius ** 2 + shape.epi_extra) * np.sqrt(np.clip(1.0 - epi_level ** 2, 0.0, 1.0))
    in_ventricle = sigmoid(w / softness)
    beyond_apex = sigmoid((shape.lv_length + apex_cap - w) / softness)
    lv = sigmoid((endo - r_lv) / softness) * in_ventricle * sigmoid((shape.lv_length - w) / softness)
    epi_inside = sigmoid((epi - r_lv) / softness) * in_ventricle * beyond_apex
    myo = np.clip(epi_inside - lv, 0.0, 1.0)
    atrium = sigmoid((0.8 * shape.lv_radius - r_lv) / softness) * sigmoid(-w / softness) * sigmoid((w + 30.0) / softness)

    rv_centre_offset = (shape.lv_radius + heart.wall) * 0.9
    rv_rel = in_plane - rv_centre_offset * heart.rv_direction.astype(np.float32)
    along = rv_rel @ heart.rv_direction.astype(np.float32)
    across = np.sqrt(np.maximum(np.sum(rv_rel * rv_rel, axis=-1) - along ** 2, 0.0))
    rv_length = 0.75 * heart.lv_length
    rv_level = np.clip(w / rv_length, 0.0, 1.0)
    taper = np.sqrt(np.clip(1.0 - rv_level ** 2, 0.0, 1.0))
    rv_a, rv_b = 0.9 * heart.lv_radius * shape.rv_scale * taper + 1e-3, 1.7 * heart.lv_radius * shape.rv_scale * taper + 1e-3
    rv_radius = np.sqrt((along / rv_a) ** 2 + (across / rv_b) ** 2)
    rv_blob = sigmoid((1.0 - rv_radius) * rv_a / softness) * in_ventricle
    rv_wall_blob = sigmoid((1.0 - rv_radius) * rv_a / softness + 3.0 / softness) * in_ventricle
    outside_lv = 1.0 - epi_inside
    rv = np.clip(rv_blob * outside_lv - sigmoid((epi + 2.0 - r_lv) / softness) * rv_blob, 0.0, 1.0)
    rv_wall = np.clip(rv_wall_blob * outside_lv - rv, 0.0, 1.0)
    heart_blob = np.clip(epi_inside + rv_wall_blob * outside_lv + atrium, 0.0, 1.0)
    epicardial_fat = np.clip(sigmoid((epi + 5.0 - r_lv) / softness) * in_ventricle * beyond_apex - heart_blob, 0, 1)
    epicardial_fat = epicardial_fat * np.clip(0.5 + heart.fat_noise(points), 0.0, 1.0)

    cavity_free = thorax * (1.0 - spine - aorta - below)
    heart_total = np.clip(heart_blob + epicardial_fat, 0.0, 1.0) * cavity_free
    fractions["blood"] = (lv + rv + atrium * (1.0 - epi_inside)) * cavity_free + aorta
    fractions["myocardium"] = myo * cavity_free
    fractions["muscle"] = fractions["muscle"] + rv_wall * cavity_free
    fractions["fat"] = fractions["fat"] + epicardial_fat * cavity_free
    fractions["marrow"] = spine
    fractions["liver"] = below * sigmoid((x + 30.0) / softness)
    fractions["muscle"] = fractions["muscle"] + below * (1.0 - sigmoid((x + 30.0) / softness))
    fractions["lung"] = np.clip(cavity_free - heart_total, 0.0, 1.0)
    fractions = {k: np.clip(v, 0.0, 1.0).astype(np.float32) for k, v in fractions.items()}

    labels = np.zeros(points.shape[:-1], dtype=np.uint8)
    visible = cavity_free > 0.5
    labels[visible & (myo > 0.5)] = LABELS["myo"]
    labels[visible & (lv > 0.5)] = LABELS["lv"]
    labels[visible & (rv > 0.5) & (labels == 0)] = LABELS["rv"]
    return fractions, labels


@dataclass
class CardiacFrame:
    """One simulated frame: image (X, Y, Z) float32 ≥ 0, labels (X, Y, Z) uint8, tissue fractions at slice centres."""

    image: np.ndarray
    labels: np.ndarray
    fractions: dict[str, np.ndarray]
    affine: np.ndarray


@dataclass
class CardiacSimulation:
    heart: Heart
    stack: Stack
    frames: dict[str, CardiacFrame]  # "ED", "ES"


def acquire_frame(rng: np.random.Generator, heart: Heart, stack: Stack, phase: str, voxel_mm: float) -> CardiacFrame:
    shape = frame_shape(heart, phase)
    points = grid_points(stack.shape, stack.affine) + stack.slice_offsets[None, None, :, :].astype(np.float32)
    softness = 0.35 * voxel_mm
    signals = {name: np.float32(bssfp(t.jittered(rng, RELAXATION_JITTER), TE_MS, FLIP_DEG))
               for name, t in TISSUES.items()}
    axis = (stack.affine[:3, 2] / stack.thickness).astype(np.float32)
    clean = np.zeros(stack.shape, dtype=np.float32)
    for sub in range(SLICE_SUBSAMPLES):  # partial volume across the slice; the middle sample gives the labels
        through = ((sub + 0.5) / SLICE_SUBSAMPLES - 0.5) * stack.thickness
        sub_fractions, sub_labels = chest_fractions(heart, shape, points + through * axis, softness)
        for name, fraction in sub_fractions.items():
            clean += signals[name] * fraction / SLICE_SUBSAMPLES
        if sub == SLICE_SUBSAMPLES // 2:
            fractions, labels = sub_fractions, sub_labels
    clean *= bias_field(rng, points) * reconstructed_disc(stack, voxel_mm)
    sigma = float(signals["blood"]) / SNR_BLOOD
    return CardiacFrame(rician(rng, clean, sigma), labels, fractions, stack.affine)


def simulate_cardiac(options: CardiacPhantomOptions, index: int) -> CardiacSimulation:
    """Subject ``index``: its heart, SAX stack and the ED and ES frames."""
    heart = draw_heart(subject_rng("phantom-cardiac", options, index, "heart"))
    stack = draw_stack(subject_rng("phantom-cardiac", options, index, "stack"), heart, options.voxel_mm)
    frames = {phase: acquire_frame(subject_rng("phantom-cardiac", options, index, phase), heart, stack, phase,
                                   options.voxel_mm) for phase in ("ED", "ES")}
    return CardiacSimulation(heart, stack, frames)


def patient_id(index: int) -> str:
    return f"patient{index + 1:03d}"


def write_cardiac_subject(root: Path, options: CardiacPhantomOptions, index: int) -> None:
    """``root/patientXXX/{Info.cfg, patientXXX_frameYY.nii.gz, patientXXX_frameYY_gt.nii.gz}`` for ED and ES."""
    simulation = simulate_cardiac(options, index)
    rng = subject_rng("phantom-cardiac", options, index, "record")
    n_frames = int(rng.integers(20, 36))
    frame_numbers = {"ED": 1, "ES": int(round(n_frames * rng.uniform(0.3, 0.45)))}
    subject = patient_id(index)
    folder = root / subject
    folder.mkdir(parents=True, exist_ok=True)
    gain = 1000.0 / float(bssfp(TISSUES["blood"], TE_MS, FLIP_DEG)) * rng.uniform(0.8, 1.25)
    for phase, frame in simulation.frames.items():
        stem = f"{subject}_frame{frame_numbers[phase]:02d}"
        save_nifti(folder / f"{stem}.nii.gz", to_scanner_units(frame.image, gain), frame.affine)
        save_nifti(folder / f"{stem}_gt.nii.gz", frame.labels, frame.affine, dtype=np.uint8)
    height = rng.uniform(155.0, 195.0)
    weight = rng.uniform(50.0, 110.0)
    info = (f"ED: {frame_numbers['ED']}\nES: {frame_numbers['ES']}\nGroup: {simulation.heart.group}\n"
            f"Height: {height:.1f}\nNbFrame: {n_frames}\nWeight: {weight:.1f}\n")
    (folder / "Info.cfg").write_text(info)


class PhantomCardiacDataset(PhantomDataset, ACDCDataset):
    """bSSFP short-axis phantoms generated into the cache in ACDC's layout and read by the ACDC loader."""

    name = "phantom-cardiac"
    description = ("Cardiac phantoms: bSSFP short-axis stacks (ED + ES) of a chest with LV, myocardium and RV, "
                   "ACDC pathology groups, breath-hold misalignment, Rician noise; ACDC layout; no download")
    source = "generated on first use (mribench.data.phantom_cardiac)"
    options_model = CardiacPhantomOptions
    subject_writer = staticmethod(write_cardiac_subject)
    subject_namer = staticmethod(lambda options, index: patient_id(index))
