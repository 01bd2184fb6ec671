"""Calibration of the phantom twins against real scans: the floors scored the same way on both.

``mribench data calibrate`` loads the first subjects of a phantom twin and the real cases of a folder laid out like
``../shared/data`` (``cardiac/<case>_<phase>.nii.gz`` short-axis stacks, ``brain/<case>/<case>_{t1,t1ce,t2,flair}``
.nii.gz) through the loaders the tasks use (the ACDC loader for the cardiac twin, nifti-folder for the real stacks,
the BraTS loader for both brains) and the twin task's preprocessing. It then scores the floors, built through the
method API, on every missing pattern: every start of a run of 8, 16 and 24 missing slices (cardiac), every choice of
1, 2 or 3 missing modalities (brain). A pattern's value is the mean PSNR over its missing elements (as the psnr metric
scores them: 2D per slice, 3D per modality), a subject's value the mean over its patterns, a column the mean over
subjects. Floors that fit (nearest-contrast) are fitted on the subjects they are scored on, in each column alike.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from mribench.data.base import Dataset, Subject, SubjectSet
from mribench.data.brats import Brats2021Dataset
from mribench.data.nifti import find_nifti, strip_nifti_suffix
from mribench.data.nifti_folder import NiftiFolderDataset
from mribench.errors import DataMissingError, MribenchError
from mribench.metrics.elements import element_arrays
from mribench.metrics.psnr import psnr
from mribench.progress import progress_task
from mribench.protocol import Batch, availability_from_missing, expand_mask
from mribench.tasks import TaskSpec, get_task

TOLERANCE_DB = 1.5
CARDIAC_PHASES = ("ed", "es")
BRAIN_SUFFIXES = ("t1", "t1ce", "t2", "flair")


@dataclass(frozen=True)
class Twin:
    """A phantom twin, the floors compared on it and the missing counts, and how its real cases are found.

    real_dataset(real_root, workdir) returns the real cases as a dataset of the twin's problem (``workdir`` may hold
    a layout of symlinks), or raises a one-line :class:`DataMissingError`.
    """

    name: str
    task: str
    floors: tuple[str, ...]
    missing: tuple[int, ...]
    real_dataset: Callable[[Path, Path], Dataset]


@dataclass(frozen=True)
class CalibrationRow:
    twin: str
    floor: str
    missing: int
    phantom_db: float
    real_db: float

    @property
    def difference_db(self) -> float:
        return self.phantom_db - self.real_db

    @property
    def within_tolerance(self) -> bool:
        return abs(self.difference_db) <= TOLERANCE_DB


@dataclass(frozen=True)
class TwinReport:
    twin: Twin
    task: TaskSpec
    phantom_ids: list[str]
    real_ids: list[str]
    rows: list[CalibrationRow]


# -- the real cases ------------------------------------------------------------------------------------------------
def real_cardiac_stacks(real_root: Path, workdir: Path) -> Dataset:
    """``real_root/cardiac/<case>_{ed,es}.nii.gz`` as a nifti-folder dataset (one subject per stack, symlinked)."""
    folder = real_root / "cardiac"
    stems = sorted(stem for p in (folder.iterdir() if folder.is_dir() else [])
                   if (stem := strip_nifti_suffix(p.name)) and stem.rsplit("_", 1)[-1] in CARDIAC_PHASES)
    if not stems:
        raise DataMissingError(f"no real short-axis stacks <case>_ed / <case>_es .nii.gz in {folder}")
    layout = workdir / "cardiac"
    for stem in stems:
        (layout / stem).mkdir(parents=True)
        source = find_nifti(folder, stem)
        (layout / stem / f"image{source.name[len(stem):]}").symlink_to(source.resolve())
    return NiftiFolderDataset(layout)


def real_brain_cases(real_root: Path, workdir: Path) -> Dataset:
    """``real_root/brain/<case>/<case>_{t1,t1ce,t2,flair}.nii.gz``: already BraTS's layout."""
    folder = real_root / "brain"
    dataset = Brats2021Dataset(folder)
    complete = [s for s in dataset.subject_ids() if all(find_nifti(folder / s, f"{s}_{x}") for x in BRAIN_SUFFIXES)]
    if not complete:
        raise DataMissingError(f"no real brain case <case>/<case>_{{{','.join(BRAIN_SUFFIXES)}}}.nii.gz in {folder}")
    return dataset


TWINS = {
    "cardiac": Twin("cardiac", "phantom-cardiac-missing8", ("slice-interp", "mean-available"), (8, 16, 24),
                    real_cardiac_stacks),
    "brain": Twin("brain", "phantom-brats-missing1", ("mean-available", "nearest-contrast"), (1, 2, 3),
                  real_brain_cases),
}


# -- scoring ---------------------------------------------------------------------------------------------------------
def missing_patterns(task: TaskSpec, missing: int) -> list[np.ndarray]:
    """Every availability mask (C, D) with ``missing`` elements missing: each modality choice, or each run start."""
    depth = task.preprocess.shape[0]
    if task.problem == "missing-modality":
        return [availability_from_missing(task.problem, task.channels, depth, list(chosen))
                for chosen in combinations(range(task.channels), missing)]
    return [availability_from_missing(task.problem, 1, depth, missing, run_start=start)
            for start in range(depth - missing + 1)]


def pattern_psnr(method, subject: Subject, mask: np.ndarray, problem: str) -> float:
    """Mean PSNR over the missing elements of one pattern, the output clipped and the observed part written back."""
    complete = torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]
    availability = torch.from_numpy(mask)[None]
    output = method.synthesize(Batch.from_complete(complete, availability, [subject.subject_id])).clamp(0, 1)
    output = torch.where(expand_mask(availability, complete.shape), complete, output)
    return float(np.mean([psnr(pred, target) for _, pred, target in element_arrays(output, complete, availability,
                                                                                     problem)]))


def floor_scores(floor: str, task: TaskSpec, subjects: list[Subject], missing: tuple[int, ...], workdir: Path,
                 ) -> dict[int, float]:
    """Missing count → mean over subjects of the mean PSNR over every pattern, for one floor fitted on ``subjects``."""
    from mribench.plugins import registry

    method_cls = registry().method(floor)
    method = method_cls(method_cls.presets["cpu"], seed=0)
    by_id = {s.subject_id: s for s in subjects}
    method.fit(SubjectSet(list(by_id), by_id.__getitem__), task, workdir, None)
    with torch.inference_mode():
        return {k: float(np.mean([np.mean([pattern_psnr(method, s, mask, task.problem)
                                           for mask in missing_patterns(task, k)]) for s in subjects]))
                for k in missing}


# -- the report ------------------------------------------------------------------------------------------------------
def check_request(real_root: Path, twins: list[str]) -> None:
    """Fail in one line, before any work, on an unknown twin or when the folder or a twin's real cases are absent."""
    unknown = [name for name in twins if name not in TWINS]
    if unknown:
        raise MribenchError(f"unknown twin {unknown[0]!r} (known: {', '.join(TWINS)})")
    if not real_root.is_dir():
        raise DataMissingError(f"real data folder not found: {real_root}")
    with tempfile.TemporaryDirectory() as workdir:
        for name in twins:
            TWINS[name].real_dataset(real_root, Path(workdir))


def calibrate_twin(name: str, real_root: Path, phantom_subjects: int, progress=None) -> TwinReport:
    """Score the twin's floors on its first ``phantom_subjects`` phantom subjects and on the real cases."""
    from mribench.plugins import registry

    twin = TWINS[name]
    task = get_task(twin.task)
    dataset_cls = registry().dataset(task.dataset)
    options = {**task.dataset_options, "subjects": phantom_subjects}  # subject i is the same for any count
    phantom = dataset_cls(dataset_cls.prepare_root(options, progress), options)
    with tempfile.TemporaryDirectory() as workdir:
        real = twin.real_dataset(real_root, Path(workdir))
        columns = {"phantom": (phantom, phantom.subject_ids()[:phantom_subjects]), "real": (real, real.subject_ids())}
        scores: dict[str, dict[str, dict[int, float]]] = {}
        with progress_task(progress, f"calibrate the {name} twin", 2 * len(twin.floors)) as advance:
            for column, (dataset, ids) in columns.items():
                subjects = [dataset.load(subject_id, task.preprocess) for subject_id in ids]
                scores[column] = {}
                for floor in twin.floors:
                    scores[column][floor] = floor_scores(floor, task, subjects, twin.missing, Path(workdir))
                    advance()
    rows = [CalibrationRow(name, floor, k, scores["phantom"][floor][k], scores["real"][floor][k])
            for floor in twin.floors for k in twin.missing]
    return TwinReport(twin, task, columns["phantom"][1], columns["real"][1], rows)


def render_markdown(reports: list[TwinReport]) -> str:
    """The side-by-side table (Markdown) and one line per twin naming what was compared."""
    lines = ["| twin | floor | missing | phantom PSNR (dB) | real PSNR (dB) | phantom − real "
             f"| within ±{TOLERANCE_DB:g} dB |", "|---|---|---:|---:|---:|---:|---|"]
    for report in reports:
        for row in report.rows:
            lines.append(f"| {row.twin} | {row.floor} | {row.missing} | {row.phantom_db:.2f} | {row.real_db:.2f} | "
                         f"{row.difference_db:+.2f} | {'yes' if row.within_tolerance else 'NO'} |")
    lines.append("")
    for report in reports:
        lines.append(f"{report.twin.name}: phantom = {len(report.phantom_ids)} subjects of {report.task.dataset} "
                     f"(task {report.task.name} v{report.task.version}); real = {len(report.real_ids)} "
                     f"({', '.join(report.real_ids)}); every pattern of each missing count, preprocessed as the task.")
    outside = sum(not row.within_tolerance for report in reports for row in report.rows)
    lines.append(f"{outside} of {sum(len(r.rows) for r in reports)} rows outside ±{TOLERANCE_DB:g} dB")
    return "\n".join(lines) + "\n"
