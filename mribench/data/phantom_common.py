"""Shared pieces of the MRI phantoms: options, MR signal equations, smooth random fields, noise, cached generation.

A phantom subject is a continuous function of world position (RAS mm): every random field here (deformation,
bias, lesion boundary noise) is a sum of random Fourier components that can be evaluated on any voxel grid, so one
subject can be written on several acquisition grids (IXI's sagittal T1 and axial T2/PD) and stay the same anatomy.
Generation is deterministic per (generator version, seed, size, subject index) through hash-seeded generators; each
dataset has its own generator version (:data:`GENERATOR_VERSIONS`), bumped whenever its generator changes the data.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import nibabel as nib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mribench.atomic import apply_umask, file_lock, sweep_temporaries_of, temporary_name, wait_notice
from mribench.data.base import cache_dir
from mribench.errors import MribenchError
from mribench.progress import progress_task
from mribench.seeding import seeded_rng

# Generator version of each phantom dataset (a dataset not listed is at version 1). phantom-cardiac v2: 1.5 T
# relaxation times, 8-10 mm slices, thinner subcutaneous fat, a reconstructed disc around the heart (calibrated with
# ``mribench data calibrate`` against real short-axis stacks).
GENERATOR_VERSIONS = {"phantom-brats": 1, "phantom-ixi": 1, "phantom-cardiac": 2}


def generator_version(dataset: str) -> int:
    return GENERATOR_VERSIONS.get(dataset, 1)

MAX_WORKERS = 4
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


# -- options -------------------------------------------------------------------------------------------------
class PhantomOptions(BaseModel):
    """``dataset_options`` of a phantom dataset (task YAML); unknown keys are an error.

    subjects: how many subjects to generate; seed: generator seed; voxel_mm: voxel size of the written volumes
    (brain: isotropic scale of the real grid; cardiac: in-plane spacing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subjects: int = Field(default=100, ge=1, le=5000)
    seed: int = Field(default=0, ge=0)
    voxel_mm: float = Field(default=2.0, ge=0.5, le=8.0)

    @property
    def size_tag(self) -> str:
        return f"{self.voxel_mm:g}mm"


def parse_options(model: type[PhantomOptions], dataset: str, options: dict[str, Any] | None) -> PhantomOptions:
    """Validate ``dataset_options``; a bad key or value raises a one-line :class:`MribenchError`."""
    try:
        return model(**(options or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']}"
                             for err in exc.errors())
        raise MribenchError(f"dataset {dataset}: bad dataset_options: {problems}") from None


# -- MR signal equations (times in ms) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Tissue:
    """Relaxation times (ms) and proton density (relative to water) of one tissue."""

    t1: float
    t2: float
    pd: float

    def jittered(self, rng: np.random.Generator, fraction: float) -> Tissue:
        """The tissue with each parameter scaled by 1 + N(0, fraction) (clipped to ±3 sigma)."""
        scale = 1.0 + np.clip(rng.normal(0.0, fraction, 3), -3 * fraction, 3 * fraction)
        return Tissue(self.t1 * scale[0], self.t2 * scale[1], min(1.0, self.pd * scale[2]))


def spin_echo(tissue: Tissue, tr: float, te: float, t1: float | None = None) -> float:
    """Spin-echo signal PD·(1 − e^(−TR/T1))·e^(−TE/T2); ``t1`` overrides the tissue's T1 (contrast agent)."""
    t1 = tissue.t1 if t1 is None else t1
    return tissue.pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / tissue.t2)


def inversion_recovery(tissue: Tissue, tr: float, te: float, ti: float) -> float:
    """Magnitude inversion-recovery (FLAIR) signal PD·|1 − 2e^(−TI/T1) + e^(−TR/T1)|·e^(−TE/T2)."""
    return tissue.pd * abs(1.0 - 2.0 * np.exp(-ti / tissue.t1) + np.exp(-tr / tissue.t1)) * np.exp(-te / tissue.t2)


def bssfp(tissue: Tissue, te: float, flip_deg: float) -> float:
    """Balanced SSFP steady state ρ·sin α / ((T1/T2 + 1) − cos α·(T1/T2 − 1))·e^(−TE/T2)."""
    alpha = np.deg2rad(flip_deg)
    ratio = tissue.t1 / tissue.t2
    return tissue.pd * np.sin(alpha) / ((ratio + 1.0) - np.cos(alpha) * (ratio - 1.0)) * np.exp(-te / tissue.t2)


def gd_shortened_t1(t1: float, relaxivity: float, concentration_mm: float) -> float:
    """T1 (ms) after gadolinium: 1/T1 = 1/T1₀ + r1·[Gd], r1 in 1/(mM·s), [Gd] in mM."""
    return 1.0 / (1.0 / t1 + relaxivity * concentration_mm / 1000.0)


# -- smooth random fields ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FourierField:
    """A smooth random scalar field f(x) = Σ a_k cos(ω_k·x + φ_k), x in mm, with unit standard deviation.

    Evaluate it on any points (…, 3); the wavelength scale is set by ``length_mm`` at construction.
    """

    frequencies: np.ndarray  # (K, 3) rad/mm
    phases: np.ndarray  # (K,)
    amplitudes: np.ndarray  # (K,)

    @classmethod
    def random(cls, rng: np.random.Generator, length_mm: float, components: int = 10) -> FourierField:
        frequencies = rng.normal(0.0, 1.0 / length_mm, (components, 3))
        phases = rng.uniform(0.0, 2 * np.pi, components)
        amplitudes = np.full(components, np.sqrt(2.0 / components))
        return cls(frequencies.astype(np.float32), phases.astype(np.float32), amplitudes.astype(np.float32))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """points (..., 3) float32 mm → values (...) float32. Each term is computed in place in one temporary
        (the arithmetic of ``amp * cos(points @ freq + phase)``, in that order: the same values, fewer passes)."""
        out = np.zeros(points.shape[:-1], dtype=np.float32)
        for freq, phase, amp in zip(self.frequencies, self.phases, self.amplitudes):
            term = points @ freq
            term += phase
            np.cos(term, out=term)
            term *= amp
            out += term
        return out


def bias_field(rng: np.random.Generator, points: np.ndarray, low: float = 0.9, high: float = 1.1,
               length_mm: float = 120.0) -> np.ndarray:
    """A smooth multiplicative receive-coil bias (...) spanning about [low, high] over the points (..., 3)."""
    raw = FourierField.random(rng, length_mm, components=6)(points)
    lo, hi = np.percentile(raw, [1, 99])
    scaled = (raw - lo) / max(hi - lo, 1e-6)
    return (low + (high - low) * np.clip(scaled, 0.0, 1.0)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, ``0.5 * (1 + tanh(0.5 * x))`` as float32, computed in place in one temporary (the
    same operations in the same order as that expression, so the same values)."""
    out = 0.5 * x
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out.astype(np.float32, copy=False)


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma`` per channel."""
    real = signal + gaussian(rng, sigma, signal.shape)
    imag = gaussian(rng, sigma, signal.shape)
    return np.sqrt(real * real + imag * imag)


def gaussian(rng: np.random.Generator, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """float32 N(0, sigma²) noise: the draws and values of ``rng.normal(0.0, sigma, shape)`` (which computes
    0 + sigma·z per draw), with the scaling done in one vectorised pass."""
    noise = rng.standard_normal(shape)
    noise *= sigma
    return noise.astype(np.float32)


def grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (X, Y, Z, 3) float32 of the voxel centres of a grid."""
    index = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    return (index @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)).astype(np.float32)


def subject_rng(dataset: str, options: PhantomOptions, index: int, stream: str) -> np.random.Generator:
    """The generator of one random stream of one subject: a hash of (version, dataset, seed, size, index, stream)."""
    return seeded_rng("mribench-phantom", generator_version(dataset), dataset, options.seed, options.size_tag, index,
                      stream)


# -- writing -------------------------------------------------------------------------------------------------
def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype: type = np.int16) -> None:
    """Write a volume as NIfTI with the affine as both qform and sform (the way scanners' converters do)."""
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))


def to_scanner_units(volume: np.ndarray, gain: float) -> np.ndarray:
    """Scale a signal in [0, ~1] to int16 scanner units the way stored MR images are."""
    return np.clip(np.rint(volume * gain), 0, np.iinfo(np.int16).max).astype(np.int16)


# -- cached, atomic generation ---------------------------------------------------------------------------------
def phantom_root(dataset: str, options: PhantomOptions) -> Path:
    """cache_dir()/phantoms/<dataset>-v<version>-seed<seed>-n<subjects>-<size>/"""
    return (cache_dir() / "phantoms"
            / f"{dataset}-v{generator_version(dataset)}-seed{options.seed}-n{options.subjects}-{options.size_tag}")


def worker_count(subjects: int) -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1, subjects))


def generate_root(dataset: str, options: PhantomOptions, write_subject: Callable[[Path, PhantomOptions, int], None],
                  progress=None) -> Path:
    """Generate the dataset once into its cache folder and return it.

    One process generates (under a lock; a second one waits, then uses the result). Subjects are written into a
    staging folder (in parallel worker processes that die with their parent), which is then renamed into place, so a
    reader never sees a half-written dataset; a staging folder left by a killed process is swept by the next one.
    ``write_subject(folder, options, index)`` must be a picklable module-level function.
    """
    final = phantom_root(dataset, options)
    if final.is_dir():
        return final
    say = wait_notice(progress.console if progress is not None else None)
    with file_lock(final.with_name(f".{final.name}.lock"), on_wait=say):
        if final.is_dir():  # generated by the process we waited for
            return final
        sweep_temporaries_of(final)
        staging = Path(tempfile.mkdtemp(prefix=temporary_name(final), dir=final.parent))
        apply_umask(staging, directory=True)
        try:
            _write_subjects(staging, dataset, options, write_subject, progress)
            os.rename(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return final


def _write_subjects(staging: Path, dataset: str, options: PhantomOptions,
                    write_subject: Callable[[Path, PhantomOptions, int], None], progress) -> None:
    with progress_task(progress, f"generating {dataset} phantom", options.subjects) as advance:
        workers = worker_count(options.subjects)
        if workers == 1:
            for index in range(options.subjects):
                write_subject(staging, options, index)
                advance()
            return
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(write_subject, staging, options, index) for index in range(options.subjects)]
            for future in futures:
                future.result()
                advance()


def die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: ask the kernel (Linux) to SIGKILL this worker when its parent dies, so a killed
    mribench leaves no idle workers behind; exit at once if the parent is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers then exit when the pool's queue breaks
        return
    if os.getppid() != parent_pid:
        os._exit(1)


class PhantomDataset:
    """Mixin turning a real-layout loader into a generated phantom dataset (put it first among the bases).

    The phantom writes the real dataset's files into the cache on first use (:meth:`prepare_root`) and the real
    loader reads them unchanged. Subclasses set ``options_model`` and ``subject_writer`` (a module-level function
    ``(folder, options, index) -> None`` writing one subject).
    """

    generated: ClassVar[bool] = True
    option_keys: ClassVar[tuple[str, ...]] = tuple(PhantomOptions.model_fields)
    options_model: ClassVar[type[PhantomOptions]] = PhantomOptions
    subject_writer: ClassVar[Callable[[Path, PhantomOptions, int], None]]
    subject_namer: ClassVar[Callable[[PhantomOptions, int], str]]  # (options, index) -> the subject's ID

    def __init__(self, root: Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        parse_options(self.options_model, self.name, self.options)

    @classmethod
    def prepare_root(cls, options: dict[str, Any], progress=None) -> Path:
        """Generate the phantom (once per generator version, seed, subject count and size) and return its root."""
        parsed = parse_options(cls.options_model, cls.name, options)
        return generate_root(cls.name, parsed, cls.subject_writer, progress)

    @classmethod
    def planned_subject_ids(cls, options: dict[str, Any]) -> list[str]:
        """The sorted IDs the phantom will have, known without generating anything."""
        parsed = parse_options(cls.options_model, cls.name, options)
        return sorted(cls.subject_namer(parsed, index) for index in range(parsed.subjects))
