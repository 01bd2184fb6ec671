"""Tiny synthetic NIfTI folders in the official layouts (24×24×16 voxels), and the real cases of ../shared/data."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mribench.data.nifti import write_volume

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
SHAPE = (24, 24, 16)
# a left/posterior-first (LPS) grid with anisotropic voxels, so reorientation and spacing matter
BRAIN_AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, -1.5, 0, 15.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])
BRATS_SUFFIXES = ("t1", "t1ce", "t2", "flair")


def world_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """(X, Y, Z, 3) world coordinates (mm) of the voxel centres of a grid."""
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), axis=-1)
    return index @ affine[:3, :3].T + affine[:3, 3]


def head(points: np.ndarray, contrast: int) -> np.ndarray:
    """A smooth world-space 'head': an ellipsoid whose intensity pattern differs per contrast, zero outside."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    inside = (x / 15.0) ** 2 + (y / 16.0) ** 2 + (z / 13.0) ** 2 < 1.0
    pattern = 100.0 + 40.0 * np.sin(0.15 * x + contrast) + 30.0 * np.cos(0.2 * y - 0.7 * contrast) + 5.0 * z
    return np.where(inside, pattern, 0.0).astype(np.float32)


def marker(points: np.ndarray, centre: tuple[float, float, float], radius: float = 3.0) -> np.ndarray:
    return (np.linalg.norm(points - np.asarray(centre), axis=-1) < radius)


def tumour_label(points: np.ndarray) -> np.ndarray:
    label = np.zeros(points.shape[:3], dtype=np.int16)
    label[marker(points, (4.0, 2.0, 0.0), 5.0)] = 2
    label[marker(points, (4.0, 2.0, 0.0), 3.5)] = 1
    label[marker(points, (4.0, 2.0, 0.0), 2.0)] = 4
    return label


def write_brats(root: Path, n: int = 3, suffix: str = ".nii.gz", labels: bool = True) -> list[str]:
    points = world_points(SHAPE, BRAIN_AFFINE)
    ids = [f"BraTS2021_{i:05d}" for i in range(n)]
    for index, subject in enumerate(ids):
        for contrast, name in enumerate(BRATS_SUFFIXES):
            volume = head(points + index, contrast)
            write_volume(root / subject / f"{subject}_{name}{suffix}", volume.astype(np.int16), BRAIN_AFFINE)
        if labels:
            write_volume(root / subject / f"{subject}_seg{suffix}", tumour_label(points), BRAIN_AFFINE)
    return ids


def sagittal_affine() -> np.ndarray:
    """IXI-like T1 grid: permuted, flipped axes; voxel axis 2 steps through sagittal slices (world x) by 1.2 mm."""
    return np.array([[0, 0, -1.2, 16.0], [1.0, 0, 0, -18.0], [0, -1.0, 0, 15.0], [0, 0, 0, 1]])


def write_ixi(root: Path, subjects: tuple[str, ...] = ("IXI002-Guys-0828", "IXI012-HH-1211"),
              without_pd: tuple[str, ...] = (), folders: bool = False) -> None:
    """T2 and PD on an axial grid, T1 on a sagittal grid of other shape: the same world-space anatomy."""
    t2_affine = np.array([[-1.0, 0, 0, 16.0], [0, 1.0, 0, -18.0], [0, 0, 1.5, -14.0], [0, 0, 0, 1]])
    t2_shape = (32, 36, 20)
    t1_shape = (36, 32, 28)
    for subject in (*subjects, *without_pd):
        for contrast, affine, shape in (("T1", sagittal_affine(), t1_shape), ("T2", t2_affine, t2_shape),
                                        ("PD", t2_affine, t2_shape)):
            if contrast == "PD" and subject in without_pd:
                continue
            folder = root / f"IXI-{contrast}" if folders else root
            volume = head(world_points(shape, affine), 0)
            write_volume(folder / f"{subject}-{contrast}.nii.gz", volume, affine)


def write_cardiac_stack(path: Path, frame_value: float, label_path: Path | None = None) -> None:
    """A short-axis stack (I/R/P-like axes as in real scanners) whose blood pool brightness is ``frame_value``."""
    affine = np.array([[0, 0, -8.0, 30.0], [1.4, 0, 0, -20.0], [0, -1.4, 0, 25.0], [0, 0, 0, 1]])
    shape = (24, 24, 10)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    ring = np.linalg.norm(index[..., :2] - 12.0, axis=-1)
    volume = np.where(ring < 5, frame_value, np.where(ring < 7, 60.0, 20.0)) + index[..., 2]
    write_volume(path, volume.astype(np.int16), affine)
    if label_path is not None:
        label = np.where(ring < 5, 3, np.where(ring < 7, 2, 0)).astype(np.int16)
        write_volume(label_path, label, affine)


def write_acdc(root: Path, patients: tuple[str, ...] = ("patient001", "patient002"), ed_frame: int = 2) -> None:
    for patient in patients:
        folder = root / "training" / patient
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Info.cfg").write_text(f"ED: {ed_frame}\nES: 9\nGroup: NOR\nHeight: 180.0\nNbFrame: 30\n")
        write_cardiac_stack(folder / f"{patient}_frame{ed_frame:02d}.nii.gz", 200.0,
                            folder / f"{patient}_frame{ed_frame:02d}_gt.nii.gz")
        write_cardiac_stack(folder / f"{patient}_frame09.nii.gz", 90.0, folder / f"{patient}_frame09_gt.nii.gz")


@pytest.fixture
def layouts():
    """Writers of the synthetic layouts (functions of a root folder)."""
    return SimpleNamespace(brats=write_brats, ixi=write_ixi, acdc=write_acdc, cardiac_stack=write_cardiac_stack,
                           world_points=world_points, head=head, affine=BRAIN_AFFINE, shape=SHAPE)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (the real cases); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real MRI cases not available: {SHARED_DATA} is absent (see its README)")
    return SHARED_DATA
