"""Brain MRI phantoms: BraTS-like (T1, T1ce, T2, FLAIR + tumour labels) and IXI-like (T1, T2, PD) subjects.

Anatomy comes from the MNI152 T1 template and its grey/white-matter probability maps shipped inside nilearn
(read from the installed package files, no network); CSF is the rest of the template's brain mask. Each subject is
the template seen through a smooth random warp (affine: rotation ±10°, scale ±8 % around a native-size factor of
0.92; elastic: random Fourier displacement of a few mm), with ventricle enlargement and sulcal widening (atrophy),
partial-volume mixing of the tissue fractions, optional tumour (necrotic core, enhancing rim, oedema spreading in
white matter, mass effect), and, for IXI, skull, scalp fat and skin around the brain.

Images follow MR physics with BrainWeb 1.5 T relaxation values jittered by a few percent per subject: spin echo for
T1w / T2w / PDw, FLAIR as inversion recovery with TI = T1_CSF·ln 2, T1ce as T1w after gadolinium shortening in the
enhancing tumour, then a smooth bias field (0.9–1.1) and Rician noise, stored as int16 like scanner data.
Files are written in the real datasets' layouts (see :func:`write_brats_subject`, :func:`write_ixi_subject`).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from pydantic import Field
from scipy import ndimage

from mribench.data.brats import Brats2021Dataset
from mribench.data.ixi import IXIDataset
from mribench.data.phantom_common import (FourierField, PhantomDataset, PhantomOptions, Tissue, bias_field,
                                          gd_shortened_t1, grid_points, inversion_recovery, rician, save_nifti,
                                          sigmoid, spin_echo, subject_rng, to_scanner_units)
from mribench.errors import MribenchError

# -- tissues (1.5 T; T1/T2 in ms, PD relative to water) ------------------------------------------------------------
TISSUES: dict[str, Tissue] = {
    "csf": Tissue(2569.0, 329.0, 1.0),  # BrainWeb
    "gm": Tissue(833.0, 83.0, 0.86),
    "wm": Tissue(500.0, 70.0, 0.77),
    "fat": Tissue(350.0, 70.0, 1.0),
    "muscle": Tissue(900.0, 47.0, 0.8),  # scalp muscle / skin
    "bone": Tissue(300.0, 1.0, 0.05),  # cortical bone: almost no mobile protons, dark everywhere
    "necrosis": Tissue(2000.0, 250.0, 0.95),  # fluid-like necrotic core
    "oedema": Tissue(1150.0, 180.0, 0.9),  # vasogenic oedema: long T1 and T2
    "enhancing": Tissue(1100.0, 110.0, 0.88),  # viable tumour (before contrast)
}
RELAXATION_JITTER = 0.03
GD_RELAXIVITY = 4.3  # r1 of gadobutrol-like agents at 1.5 T, 1/(mM·s)
GD_CONCENTRATION_MM = (0.3, 0.7)  # in the enhancing tumour, mM

# sequence parameters in ms (TR, TE[, TI]) and the SNR of the brain's mean signal
T1W = {"tr": 500.0, "te": 12.0}
T2W = {"tr": 4000.0, "te": 100.0}
PDW = {"tr": 5000.0, "te": 12.0}
FLAIR = {"tr": 9000.0, "te": 120.0, "ti": TISSUES["csf"].t1 * np.log(2.0)}
SNR = {"T1": 25.0, "T1ce": 25.0, "T2": 20.0, "FLAIR": 15.0, "PD": 30.0}

NATIVE_SCALE = 0.92  # MNI152 space is larger than a typical native brain
ROTATION_DEG = 10.0
SCALE_RANGE = 0.08
SHIFT_MM = 4.0
ELASTIC_MM = 2.5
ELASTIC_LENGTH_MM = 25.0

BRATS_SHAPE_MM = (240.0, 240.0, 155.0)  # BraTS 2021: 240 x 240 x 155 voxels of 1 mm
BRATS_CENTRE = np.array([0.0, -17.0, 5.0])
BRATS_FILES = {"T1": "t1", "T1ce": "t1ce", "T2": "t2", "FLAIR": "flair"}
IXI_SITES = (("Guys", 0.56), ("HH", 0.32), ("IOP", 0.12))
IXI_SPACING = (0.9375, 0.9375, 1.2)  # in-plane and slice spacing of IXI at 1 mm scale
IXI_CENTRE = np.array([0.0, -17.0, 15.0])


class BrainPhantomOptions(PhantomOptions):
    """``dataset_options`` of the brain phantoms; voxel_mm scales the real datasets' grids (1 = real size)."""

    subjects: int = Field(default=100, ge=1, le=900)
    voxel_mm: float = Field(default=2.0, ge=1.0, le=6.0)


# The maps of a Template, in the bit order of Template.nonzero_cells; all but the distance are 0 off the template.
TEMPLATE_MAPS = ("gm", "wm", "csf", "support", "sulcal_csf", "outside_mm")


# -- the template --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    """MNI152 tissue maps resampled to the working resolution; arrays (X, Y, Z) float32, world RAS mm."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    support: np.ndarray  # soft brain mask = gm + wm + csf
    sulcal_csf: np.ndarray  # smoothed CSF: where cortical atrophy turns grey matter into CSF
    outside_mm: np.ndarray  # distance (mm) from the brain mask, 0 inside
    world_to_voxel: np.ndarray  # (4, 4)
    nonzero_cells: np.ndarray  # (X, Y, Z) uint8: bit b set where TEMPLATE_MAPS[b] is non-zero at a cell corner
    ventricle_centre: np.ndarray  # (3,) mm
    brain_centre: np.ndarray  # (3,) mm
    tumour_sites: np.ndarray  # (N, 3) mm: deep white-matter points where tumours may be centred

    def voxel_coordinates(self, points: np.ndarray) -> np.ndarray:
        """Template voxel coordinates (..., 3) float32 of world points (..., 3), what :meth:`sample` takes."""
        return points @ self.world_to_voxel[:3, :3].T.astype(np.float32) + self.world_to_voxel[:3, 3].astype(np.float32)

    def sample(self, coords: np.ndarray, *names: str) -> list[np.ndarray]:
        """Trilinear values of the named maps at voxel coordinates (..., 3); outside the template: 0 (distance:
        the value at the nearest edge).

        A map is interpolated only at the points whose cell has a non-zero corner in it (:attr:`nonzero_cells`),
        and for the distance also at every point off the template (where it takes the nearest edge's value):
        elsewhere every term of the interpolation is 0, or the point lies off the template where the other maps
        are 0, so the values are those of interpolating every point, without the work on the empty field of view
        (and, for the distance, inside the brain)."""
        codes = self.cell_codes(coords)
        out = []
        for name in names:
            bit = TEMPLATE_MAPS.index(name)
            where = np.flatnonzero(codes & np.uint8(1 << bit))
            values = np.zeros(coords.shape[:-1], dtype=np.float32)
            values.flat[where] = ndimage.map_coordinates(
                getattr(self, name), coords.reshape(-1, 3)[where].T, output=np.float32, order=1,
                mode="nearest" if name == "outside_mm" else "constant", cval=0.0, prefilter=False)
            out.append(values)
        return out

    def cell_codes(self, coords: np.ndarray) -> np.ndarray:
        """:attr:`nonzero_cells` of the cell holding each voxel coordinate (..., 3), flattened; off the template
        only the distance's bit."""
        flat = coords.reshape(-1, 3)
        inside = np.ones(len(flat), dtype=bool)
        for axis, size in enumerate(self.nonzero_cells.shape):
            inside &= (flat[:, axis] >= 0) & (flat[:, axis] <= size - 1)
        inside = np.flatnonzero(inside)
        cells = flat[inside].astype(np.intp)  # coordinates >= 0: truncation is the floor
        codes = np.full(len(flat), 1 << TEMPLATE_MAPS.index("outside_mm"), dtype=np.uint8)
        codes[inside] = self.nonzero_cells[cells[:, 0], cells[:, 1], cells[:, 2]]
        return codes


def template_files() -> dict[str, Path]:
    """The MNI152 T1 / GM / WM files inside the installed nilearn package (what ``load_mni152_*_template`` read).

    Located without importing nilearn (whose import takes seconds), so generator processes start fast."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise MribenchError("the brain phantoms need the nilearn package (its bundled MNI152 template): "
                            "pip install nilearn")
    folder = Path(spec.origin).parent / "datasets" / "data"
    files = {kind: folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz" for kind in ("t1", "gm", "wm")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise MribenchError(f"nilearn's MNI152 template file is missing: {missing[0]} (reinstall nilearn)")
    return files


def nonzero_cells(maps: dict[str, np.ndarray]) -> np.ndarray:
    """Bit b of cell (i, j, k) is set when ``maps[TEMPLATE_MAPS[b]]`` is non-zero at one of the cell's corners
    (i..i+1, j..j+1, k..k+1, within the grid): the voxels a trilinear sample in the cell reads."""
    codes = np.zeros(maps[TEMPLATE_MAPS[0]].shape, dtype=np.uint8)
    for bit, name in enumerate(TEMPLATE_MAPS):
        touched = maps[name] != 0
        for axis in range(3):  # cell i of this axis also reads voxel i + 1
            before = (slice(None),) * axis
            touched[before + (slice(None, -1),)] |= touched[before + (slice(1, None),)]
        codes |= touched.astype(np.uint8) << bit
    return codes


@lru_cache(maxsize=2)
def load_template(voxel_mm: float) -> Template:
    """The nilearn MNI152 template at ~``voxel_mm`` (Gaussian anti-aliasing, then integer subsampling).

    Maps are rescaled to a maximum of 1 as nilearn's loaders do; CSF = smoothed brain mask − GM − WM."""
    files = template_files()
    t1_image = nib.load(str(files["t1"]))
    t1, gm, wm = (np.asarray(nib.load(str(path)).dataobj, dtype=np.float32) for path in files.values())
    t1, gm, wm = t1 / t1.max(), gm / gm.max(), wm / wm.max()
    mask = ndimage.gaussian_filter((t1 > 0.01).astype(np.float32), 0.7)
    parenchyma = gm + wm
    over = parenchyma > mask
    gm = np.where(over, gm * mask / np.maximum(parenchyma, 1e-6), gm)
    wm = np.where(over, wm * mask / np.maximum(parenchyma, 1e-6), wm)
    csf = np.clip(mask - gm - wm, 0.0, 1.0)

    step = max(1, int(voxel_mm))
    sigma = 0.42 * np.sqrt(max(step * step - 1.0, 0.0))
    maps = {"gm": gm, "wm": wm, "csf": csf}
    if sigma > 0:
        maps = {k: ndimage.gaussian_filter(v, sigma) for k, v in maps.items()}
    maps = {k: np.ascontiguousarray(v[::step, ::step, ::step]) for k, v in maps.items()}
    support = maps["gm"] + maps["wm"] + maps["csf"]
    affine = t1_image.affine.copy()
    affine[:3, :3] *= step
    inside = support > 0.5
    outside_mm = ndimage.distance_transform_edt(~inside, sampling=step).astype(np.float32)
    depth_mm = ndimage.distance_transform_edt(inside, sampling=step)

    voxels = np.indices(support.shape).reshape(3, -1).T
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    flat_csf = maps["csf"].ravel()
    central = ((np.abs(world[:, 0]) < 30) & (world[:, 1] > -45) & (world[:, 1] < 25) & (world[:, 2] > -5)
               & (world[:, 2] < 35) & (flat_csf > 0.7))
    deep_wm = (maps["wm"].ravel() > 0.7) & (depth_mm.ravel() > 25.0)
    maps["support"] = support.astype(np.float32)
    maps["sulcal_csf"] = ndimage.gaussian_filter(maps["csf"], 2.0 / step).astype(np.float32)
    maps["outside_mm"] = outside_mm
    return Template(
        **{name: maps[name] for name in TEMPLATE_MAPS}, world_to_voxel=np.linalg.inv(affine),
        nonzero_cells=nonzero_cells(maps), ventricle_centre=world[central].mean(axis=0),
        brain_centre=world[inside.ravel()].mean(axis=0), tumour_sites=world[deep_wm].astype(np.float32))


# -- one subject's random draw --------------------------------------------------------------------------------
def rotation_matrix(angles_rad: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (radians) as a (3, 3) matrix."""
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Tumour:
    """A glioma in template coordinates: radii in mm, boundary noise fields, gadolinium dose."""

    centre: np.ndarray
    axes: np.ndarray  # (3, 3) rotation times per-axis elongation: distance = |axes^T (p - centre)|
    core_mm: float  # necrotic / non-enhancing core radius
    enhancing_mm: float  # outer radius of the enhancing rim (= core when the tumour does not enhance)
    oedema_mm: float
    boundary: FourierField
    oedema_boundary: FourierField
    mass_effect: float
    gd_mm: float


@dataclass(frozen=True)
class Anatomy:
    """Everything random about one subject's anatomy; maps world points to tissue fractions."""

    rotation: np.ndarray
    scale: np.ndarray  # (3,)
    shift: np.ndarray  # (3,)
    elastic: tuple[FourierField, FourierField, FourierField]
    ventricle_enlargement: float  # 0 (young) … 0.3 (atrophic)
    cortical_atrophy: float  # fraction of sulcal-adjacent grey matter turned into CSF
    tumour: Tumour | None


def draw_tumour(rng: np.random.Generator, template: Template) -> Tumour:
    centre = template.tumour_sites[rng.integers(len(template.tumour_sites))].astype(np.float64)
    enhancing = rng.uniform(13.0, 26.0)
    core = enhancing * rng.uniform(0.45, 0.8)
    if rng.uniform() < 0.1:  # non-enhancing tumour: the core is all label 1
        enhancing = core = enhancing * rng.uniform(0.7, 1.0)
    elongation = np.diag(1.0 / rng.uniform(0.8, 1.25, 3))
    return Tumour(centre=centre, axes=rotation_matrix(rng.uniform(-np.pi, np.pi, 3)) @ elongation,
                  core_mm=core, enhancing_mm=enhancing, oedema_mm=enhancing * rng.uniform(1.4, 2.0),
                  boundary=FourierField.random(rng, 6.0), oedema_boundary=FourierField.random(rng, 10.0),
                  mass_effect=rng.uniform(0.1, 0.35), gd_mm=rng.uniform(*GD_CONCENTRATION_MM))


def draw_anatomy(rng: np.random.Generator, template: Template, with_tumour: bool) -> Anatomy:
    elastic = tuple(FourierField.random(rng, ELASTIC_LENGTH_MM) for _ in range(3))
    return Anatomy(
        rotation=rotation_matrix(np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG, 3))),
        scale=NATIVE_SCALE * rng.uniform(1 - SCALE_RANGE, 1 + SCALE_RANGE) * rng.uniform(0.97, 1.03, 3),
        shift=rng.uniform(-SHIFT_MM, SHIFT_MM, 3), elastic=elastic,
        ventricle_enlargement=rng.uniform(0.0, 0.3), cortical_atrophy=rng.uniform(0.0, 0.35),
        tumour=draw_tumour(rng, template) if with_tumour else None)


def radial_expand(points: np.ndarray, centre: np.ndarray, amount: float, radius_mm: float) -> np.ndarray:
    """Sample closer to ``centre`` within ~radius: what lies there appears enlarged by up to 1/(1 − amount).

    Monotone along every ray for amount < 1, so it folds nothing (topology is kept)."""
    offset = points - centre.astype(np.float32)
    factor = 1.0 - amount * np.exp(-squared_norm(offset) / (2.0 * radius_mm ** 2))
    for axis, coordinate in enumerate(centre.astype(np.float32)):  # axis by axis: no broadcast over a length-3 axis
        offset[..., axis] *= factor
        offset[..., axis] += coordinate
    return offset


def squared_norm(vectors: np.ndarray) -> np.ndarray:
    """x² + y² + z² of vectors (..., 3), added left to right: the values of ``np.sum(vectors ** 2, axis=-1)``
    without numpy's slow reduction over a length-3 axis."""
    out = vectors[..., 0] * vectors[..., 0]
    out += vectors[..., 1] * vectors[..., 1]
    out += vectors[..., 2] * vectors[..., 2]
    return out


def to_template(anatomy: Anatomy, template: Template, points: np.ndarray) -> np.ndarray:
    """Subject world points (..., 3) → template points (before lesion mass effect)."""
    centre = template.brain_centre.astype(np.float32)
    inverse = (anatomy.rotation / anatomy.scale[None, :]).astype(np.float32)  # R·S, inverted below
    moved = (points - centre - anatomy.shift.astype(np.float32)) @ inverse + centre
    warped = moved.copy()
    for axis, field in enumerate(anatomy.elastic):
        warped[..., axis] += ELASTIC_MM * field(moved)
    return radial_expand(warped, template.ventricle_centre, anatomy.ventricle_enlargement, 22.0)


@dataclass
class BrainTissues:
    """Tissue fractions (name → (X, Y, Z) float32 in [0, 1], summing to ≤ 1) and tumour labels on one grid."""

    fractions: dict[str, np.ndarray]
    labels: np.ndarray  # uint8 {0, 1, 2, 4}
    brain_mask: np.ndarray  # bool: what a skull-stripping mask would keep


def tissue_fractions(anatomy: Anatomy, template: Template, points: np.ndarray, with_head: bool,
                     voxel_mm: float) -> BrainTissues:
    """Partial-volume tissue fractions of one subject at world points (X, Y, Z, 3)."""
    softness = 0.35 * voxel_mm
    template_points = to_template(anatomy, template, points)
    tumour = anatomy.tumour
    sample_points = template_points
    if tumour is not None:
        sample_points = radial_expand(template_points, tumour.centre, tumour.mass_effect, tumour.enhancing_mm * 1.5)
    sample_coords = template.voxel_coordinates(sample_points)
    shared_head = with_head and tumour is None  # the head is sampled without the mass effect: then at these points
    gm, wm, csf, support, sulcal, *head = template.sample(sample_coords, "gm", "wm", "csf", "support", "sulcal_csf",
                                                          *(["outside_mm"] if shared_head else []))
    atrophy = anatomy.cortical_atrophy * np.clip(2.0 * sulcal, 0.0, 1.0) * gm
    gm, csf = gm - atrophy, csf + atrophy
    fractions = {"gm": gm, "wm": wm, "csf": csf}
    labels = np.zeros(points.shape[:-1], dtype=np.uint8)
    brain = support > 0.5
    if tumour is not None:
        local = (template_points - tumour.centre.astype(np.float32)) @ tumour.axes.astype(np.float32)
        distance = np.sqrt(squared_norm(local))
        lesion_distance = distance * (1.0 + 0.18 * tumour.boundary(template_points))
        oedema_distance = distance * (1.0 + 0.25 * tumour.oedema_boundary(template_points))
        parenchyma = gm + wm
        wm_share = wm / np.maximum(support, 1e-3)
        lesion = sigmoid((tumour.enhancing_mm - lesion_distance) / softness) * support
        core = sigmoid((tumour.core_mm - lesion_distance) / softness) * support
        reach = tumour.oedema_mm * (0.55 + 0.6 * wm_share)
        oedema = sigmoid((reach - oedema_distance) / softness) * (1.0 - lesion / np.maximum(support, 1e-3)) * parenchyma
        keep = 1.0 - lesion / np.maximum(support, 1e-3)
        fractions = {"gm": gm * keep - oedema * gm / np.maximum(parenchyma, 1e-3),
                     "wm": wm * keep - oedema * wm / np.maximum(parenchyma, 1e-3),
                     "csf": csf * keep, "necrosis": core, "enhancing": lesion - core, "oedema": oedema}
        labels[brain & (oedema > 0.5 * support)] = 2
        labels[brain & (lesion > 0.5)] = 4
        labels[brain & (core > 0.5) & (tumour.core_mm < tumour.enhancing_mm)] = 1
        if tumour.core_mm >= tumour.enhancing_mm:
            labels[brain & (lesion > 0.5)] = 1
    if with_head:
        outside = head[0] if shared_head else template.sample(template.voxel_coordinates(template_points),
                                                              "outside_mm")[0]
        rest = np.clip(1.0 - support, 0.0, 1.0)
        steps = {edge: sigmoid((outside - edge) / softness) for edge in (-10.0, 1.5, 7.0, 11.0, 14.0)}

        def band(inner: float, outer: float) -> np.ndarray:  # adjacent layers share the step at their boundary
            return rest * (steps[inner] - steps[outer])

        fractions["csf"] = fractions["csf"] + band(-10.0, 1.5)
        fractions["bone"] = band(1.5, 7.0)
        fractions["fat"] = band(7.0, 11.0)
        fractions["muscle"] = band(11.0, 14.0)
    fractions = {k: np.clip(v, 0.0, 1.0, out=v).astype(np.float32, copy=False) for k, v in fractions.items()}
    return BrainTissues(fractions=fractions, labels=labels, brain_mask=brain)


# -- contrasts --------------------------------------------------------------------------------------------------
def tissue_signals(rng: np.random.Generator, contrast: str, gd_mm: float | None) -> dict[str, float]:
    """Signal of each tissue (relaxation jittered per subject) for one contrast: T1, T1ce, T2, FLAIR or PD."""
    jittered = {name: tissue.jittered(rng, RELAXATION_JITTER) for name, tissue in TISSUES.items()}
    signals = {}
    for name, tissue in jittered.items():
        if contrast == "T1":
            signals[name] = spin_echo(tissue, **T1W)
        elif contrast == "T1ce":
            t1 = gd_shortened_t1(tissue.t1, GD_RELAXIVITY, gd_mm) if name == "enhancing" and gd_mm else None
            signals[name] = spin_echo(tissue, **T1W, t1=t1)
        elif contrast == "T2":
            signals[name] = spin_echo(tissue, **T2W)
        elif contrast == "PD":
            signals[name] = spin_echo(tissue, **PDW)
        else:
            signals[name] = inversion_recovery(tissue, **FLAIR)
    return signals


def acquire(rng: np.random.Generator, tissues: BrainTissues, points: np.ndarray, contrast: str,
            gd_mm: float | None, snr_scale: float = 1.0) -> np.ndarray:
    """One contrast: Σ fraction·signal, times a bias field, plus Rician noise; (X, Y, Z) float32 ≥ 0."""
    signals = tissue_signals(rng, contrast, gd_mm)
    clean = np.zeros(points.shape[:-1], dtype=np.float32)
    for name, fraction in tissues.fractions.items():
        clean += np.float32(signals[name]) * fraction
    clean *= bias_field(rng, points)
    sigma = float(clean[tissues.brain_mask].mean()) / (SNR[contrast] * snr_scale)
    return rician(rng, clean, sigma)


# -- one subject on the real layouts -------------------------------------------------------------------------
@dataclass
class BrainSimulation:
    """One simulated subject on one grid: images (contrast → (X, Y, Z) float32), tissues, grid affine."""

    images: dict[str, np.ndarray]
    tissues: BrainTissues
    affine: np.ndarray


def brats_grid(voxel_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """BraTS 2021's grid (240 × 240 × 155 at 1 mm, axes towards L, P, S) scaled to ``voxel_mm``."""
    shape = tuple(int(round(extent / voxel_mm)) for extent in BRATS_SHAPE_MM)
    affine = np.diag([-voxel_mm, -voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = BRATS_CENTRE - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return shape, affine


def ixi_grids(voxel_mm: float) -> dict[str, tuple[tuple[int, int, int], np.ndarray]]:
    """IXI's two grids at scale ``voxel_mm``: T2/PD axial (axes towards L, P, S; 256 × 256 × 130 at 1 mm scale) and
    T1 sagittal (axes towards I, P, R: voxel axis 2 is the sagittal slice axis; 256 × 256 × 150)."""
    in_plane, thick = IXI_SPACING[0] * voxel_mm, IXI_SPACING[2] * voxel_mm
    axial_shape = (int(round(256 / voxel_mm)), int(round(256 / voxel_mm)), int(round(130 / voxel_mm)))
    axial = np.diag([-in_plane, -in_plane, thick, 1.0])
    axial[:3, 3] = IXI_CENTRE - axial[:3, :3] @ ((np.array(axial_shape) - 1) / 2.0)
    sagittal_shape = (int(round(256 / voxel_mm)), int(round(256 / voxel_mm)), int(round(150 / voxel_mm)))
    sagittal = np.zeros((4, 4))
    sagittal[2, 0] = -in_plane  # voxel axis 0 runs superior → inferior
    sagittal[1, 1] = -in_plane  # voxel axis 1 runs anterior → posterior
    sagittal[0, 2] = thick  # voxel axis 2 runs left → right (sagittal slices)
    sagittal[3, 3] = 1.0
    sagittal[:3, 3] = IXI_CENTRE - sagittal[:3, :3] @ ((np.array(sagittal_shape) - 1) / 2.0)
    return {"axial": (axial_shape, axial), "sagittal": (sagittal_shape, sagittal)}


@lru_cache(maxsize=6)
def brain_grid(name: str, voxel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Affine and world points (X, Y, Z, 3) of the grid ``name`` ("brats", or IXI's "axial" or "sagittal") at
    ``voxel_mm``; both read-only, computed once per process and shared by every subject."""
    shape, affine = brats_grid(voxel_mm) if name == "brats" else ixi_grids(voxel_mm)[name]
    points = grid_points(shape, affine)
    affine.flags.writeable = points.flags.writeable = False
    return affine, points


def simulate_brats(options: BrainPhantomOptions, index: int) -> BrainSimulation:
    """BraTS-like subject ``index``: skull-stripped T1, T1ce, T2, FLAIR and tumour labels on the BraTS grid."""
    template = load_template(options.voxel_mm)
    anatomy = draw_anatomy(subject_rng("phantom-brats", options, index, "anatomy"), template, with_tumour=True)
    affine, points = brain_grid("brats", options.voxel_mm)
    tissues = tissue_fractions(anatomy, template, points, with_head=False, voxel_mm=options.voxel_mm)
    images = {}
    for contrast in BRATS_FILES:
        rng = subject_rng("phantom-brats", options, index, contrast)
        images[contrast] = acquire(rng, tissues, points, contrast, anatomy.tumour.gd_mm) * tissues.brain_mask
    return BrainSimulation(images=images, tissues=tissues, affine=affine)


def brats_id(index: int) -> str:
    return f"BraTS2021_{index:05d}"


def write_brats_subject(root: Path, options: BrainPhantomOptions, index: int) -> None:
    """``root/BraTS2021_XXXXX/BraTS2021_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz``."""
    simulation = simulate_brats(options, index)
    subject = brats_id(index)
    folder = root / subject
    folder.mkdir(parents=True, exist_ok=True)
    rng = subject_rng("phantom-brats", options, index, "scanner")
    for contrast, suffix in BRATS_FILES.items():
        image = simulation.images[contrast]
        gain = 1000.0 / float(np.percentile(image[simulation.tissues.brain_mask], 99)) * rng.uniform(0.8, 1.25)
        save_nifti(folder / f"{subject}_{suffix}.nii.gz", to_scanner_units(image, gain), simulation.affine)
    save_nifti(folder / f"{subject}_seg.nii.gz", simulation.tissues.labels, simulation.affine, dtype=np.uint8)


def ixi_id(options: BrainPhantomOptions, index: int) -> str:
    """``IXI###-<Site>-####`` with the site drawn with IXI's proportions (Guys, HH, IOP)."""
    rng = subject_rng("phantom-ixi", options, index, "id")
    names, weights = zip(*IXI_SITES)
    site = names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))]
    return f"IXI{index + 2:03d}-{site}-{int(rng.integers(500, 1100)):04d}"


def simulate_ixi(options: BrainPhantomOptions, index: int) -> dict[str, BrainSimulation]:
    """IXI-like subject ``index`` with skull and scalp: {"sagittal": T1, "axial": T2 and PD} on IXI's two grids."""
    template = load_template(options.voxel_mm)
    anatomy = draw_anatomy(subject_rng("phantom-ixi", options, index, "anatomy"), template, with_tumour=False)
    snr_scale = 1.4 if "-HH-" in ixi_id(options, index) else 1.0  # Hammersmith scanned at 3 T
    out = {}
    for grid, contrasts in (("sagittal", ("T1",)), ("axial", ("T2", "PD"))):
        affine, points = brain_grid(grid, options.voxel_mm)
        tissues = tissue_fractions(anatomy, template, points, with_head=True, voxel_mm=options.voxel_mm)
        images = {c: acquire(subject_rng("phantom-ixi", options, index, c), tissues, points, c, None, snr_scale)
                  for c in contrasts}
        out[grid] = BrainSimulation(images=images, tissues=tissues, affine=affine)
    return out


def write_ixi_subject(root: Path, options: BrainPhantomOptions, index: int) -> None:
    """``root/IXI###-<Site>-####-{T1,T2,PD}.nii.gz``; T1 sagittal on its own grid, T2 and PD axial."""
    subject = ixi_id(options, index)
    rng = subject_rng("phantom-ixi", options, index, "scanner")
    for simulation in simulate_ixi(options, index).values():
        for contrast, image in simulation.images.items():
            gain = 1000.0 / float(np.percentile(image[simulation.tissues.brain_mask], 99)) * rng.uniform(0.8, 1.25)
            save_nifti(root / f"{subject}-{contrast}.nii.gz", to_scanner_units(image, gain), simulation.affine)


# -- registered datasets -------------------------------------------------------------------------------------
class PhantomBratsDataset(PhantomDataset, Brats2021Dataset):
    """BraTS-like phantoms generated into the cache in BraTS 2021's layout and read by the BraTS loader."""

    name = "phantom-brats"
    description = ("BraTS-like phantoms: MNI152 anatomy with per-subject warps and atrophy, gliomas (necrotic core, "
                   "enhancing rim, oedema), spin-echo / FLAIR / Gd physics, bias field, Rician noise; no download")
    source = "generated on first use (mribench.data.phantom_brain)"
    options_model = BrainPhantomOptions
    subject_writer = staticmethod(write_brats_subject)
    subject_namer = staticmethod(lambda options, index: brats_id(index))


class PhantomIXIDataset(PhantomDataset, IXIDataset):
    """IXI-like healthy phantoms (T1 sagittal, T2 and PD axial, with skull and scalp) read by the IXI loader."""

    name = "phantom-ixi"
    description = ("IXI-like phantoms: MNI152 anatomy with per-subject warps and atrophy, skull and scalp, "
                   "T1 (sagittal grid), T2, PD from spin-echo physics, bias field, Rician noise; no download")
    source = "generated on first use (mribench.data.phantom_brain)"
    options_model = BrainPhantomOptions
    subject_writer = staticmethod(write_ixi_subject)
    subject_namer = staticmethod(ixi_id)
