"""Safe NIfTI reading and the base class of the loaders that read 3D NIfTI files.

Every check a loader makes on a subject produces a :class:`Problem` (file + one-line description); ``load`` raises the
first one as :class:`~mribench.errors.BadDataError`, ``mribench data verify`` lists them all.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import nibabel as nib
import numpy as np

from mribench.atomic import atomic_path
from mribench.data.base import Dataset, RawSubject, Subject
from mribench.errors import BadDataError, MribenchError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a subject: the file concerned (or the subject folder) and what is wrong.

    severity: ``error`` (the subject cannot be used) or ``excluded`` (the loader leaves the subject out, e.g. an IXI
    subject without all three contrasts).
    """

    subject_id: str
    file: str
    problem: str
    severity: str = "error"

    def line(self) -> str:
        return f"subject {self.subject_id}: {self.file}: {self.problem}"


def find_nifti(folder: Path, stem: str) -> Path | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii``, whichever exists (None when neither does)."""
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def strip_nifti_suffix(name: str) -> str | None:
    """The file name without ``.nii.gz``/``.nii``, or None for other files."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _open(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise BadDataError(f"{path}: file not found")
    try:
        image = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for files that are not NIfTI
        raise BadDataError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise BadDataError(f"{path}: not a NIfTI file (nibabel read it as {type(image).__name__})")
    return image


def read_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume (X, Y, Z) float32 and its affine (4, 4) float64; one-line BadDataError for any unusable file.

    Trailing singleton dimensions (X, Y, Z, 1) are dropped; anything else that is not 3D, a truncated or corrupt file,
    a singular affine and NaN/Inf voxels are errors.
    """
    image = _open(path)
    shape = tuple(int(s) for s in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise BadDataError(f"{path}: expected a 3D volume, got shape {tuple(image.shape)}")
    try:
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    except Exception as exc:  # noqa: BLE001 - truncated gzip streams raise EOFError, zlib.error, OSError ...
        raise BadDataError(f"{path}: voxel data cannot be decoded, the file is truncated or corrupt "
                           f"({type(exc).__name__})") from None
    finite = np.isfinite(data)
    if not finite.all():
        raise BadDataError(f"{path}: {int(finite.size - finite.sum())} voxels are NaN or Inf")
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadDataError(f"{path}: the affine (voxel → world) is singular or not finite")
    return data, affine


def write_volume(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a volume (X, Y, Z[, ...]) as NIfTI with ``affine`` as sform and qform, atomically (temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=suffix) as temporary:
        nib.save(image, temporary)


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime (ns) and SHA-256 of the header of a source file (NIfTI header; whole content of other files, e.g.
    ACDC's Info.cfg): a changed file changes its fingerprint."""
    path = Path(path)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise BadDataError(f"{path}: file not found") from None
    header = _open(path).header.binaryblock if strip_nifti_suffix(path.name) is not None else path.read_bytes()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "header_sha256": hashlib.sha256(header).hexdigest()}


def grid_difference(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...],
                    affine_b: np.ndarray) -> str | None:
    """How grid a differs from grid b ("shape (..) vs (..)" or "affines differ by up to X mm"), None when the same."""
    if tuple(shape_a) != tuple(shape_b):
        return f"shape {tuple(shape_a)} vs {tuple(shape_b)}"
    largest = float(np.abs(np.asarray(affine_a) - np.asarray(affine_b)).max())
    if largest > AFFINE_TOLERANCE_MM:
        return f"affines differ by up to {largest:.3g} mm (tolerance {AFFINE_TOLERANCE_MM:g})"
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


class NiftiDataset(Dataset):
    """A dataset of 3D NIfTI files: one file per contrast (``modalities`` order) and an optional label file.

    Subclasses implement ``subject_ids()`` and ``subject_files(subject_id)``; they may override ``align`` (bring the
    contrasts onto one grid, e.g. IXI's T1 onto the T2 grid). ``option_keys`` lists the ``dataset_options`` a loader
    accepts; any other key is an error.
    """

    option_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: Path, options: dict[str, Any] | None = None):
        super().__init__(root, options)
        unknown = sorted(set(self.options) - set(self.option_keys))
        if unknown:
            raise MribenchError(f"dataset {self.name}: unknown dataset_options {unknown} "
                                f"(accepted: {list(self.option_keys) or 'none'})")

    def subject_files(self, subject_id: str) -> tuple[dict[str, Path], Path | None]:
        """({modality: expected path}, label path or None) of a subject; paths may not exist."""
        raise NotImplementedError

    def source_files(self, subject_id: str) -> list[Path]:
        """The existing files a subject is built from (what the cache fingerprints)."""
        contrasts, label = self.subject_files(subject_id)
        return [p for p in [*contrasts.values(), label] if p is not None and p.is_file()]

    def allowed_labels(self) -> tuple[int, ...] | None:
        return self.label_values

    def excluded_subjects(self) -> list[Problem]:
        """Subjects present under the root that the loader leaves out on purpose (severity ``excluded``)."""
        return []

    # -- checking ----------------------------------------------------------------------------------------------
    def check_subject(self, subject_id: str) -> tuple[RawSubject | None, list[Problem]]:
        """Read and check every file of a subject: (the raw subject, or None when anything is wrong; the problems)."""
        try:
            contrasts, label_path = self.subject_files(subject_id)
        except BadDataError as exc:
            return None, [Problem(subject_id, *_split_path(str(exc)))]
        problems: list[Problem] = []
        volumes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for modality in self.modalities:
            path = contrasts[modality]
            if not path.is_file():
                what = f"contrast {modality}" if len(self.modalities) > 1 else "image file"
                problems.append(Problem(subject_id, str(path), f"missing {what}"))
                continue
            try:
                volumes[modality] = read_volume(path)
            except BadDataError as exc:
                problems.append(Problem(subject_id, str(path), _strip_path(str(exc), path)))
        for modality, (data, _) in volumes.items():
            if float(data.max()) <= float(data.min()):
                problems.append(Problem(subject_id, str(contrasts[modality]),
                                        f"contrast {modality} is constant ({float(data.min()):g}): no foreground"))
        if problems:
            return None, problems
        try:
            image, affine = self.align(volumes, contrasts)
        except BadDataError as exc:
            return None, [Problem(subject_id, *_split_path(str(exc)))]
        label = None
        if label_path is not None and label_path.is_file():
            label, label_problem = self._check_label(label_path, image.shape[1:], affine)
            if label_problem:
                return None, [Problem(subject_id, str(label_path), label_problem)]
        files = [contrasts[m] for m in self.modalities] + ([label_path] if label is not None else [])
        meta = {"source_files": [str(p) for p in files], "source_shape": list(image.shape[1:]),
                "source_spacing_mm": [float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)]}
        return RawSubject(subject_id, image, affine, label, files, meta), []

    def _check_label(self, path: Path, shape: tuple[int, ...], affine: np.ndarray) -> tuple[np.ndarray | None, str]:
        try:
            data, label_affine = read_volume(path)
        except BadDataError as exc:
            return None, _strip_path(str(exc), path)
        difference = grid_difference(data.shape, label_affine, shape, affine)
        if difference:
            return None, f"label is on another grid than the image: {difference}"
        if not np.array_equal(data, np.rint(data)):
            return None, "label values are not integers"
        values = {int(v) for v in np.unique(data)}
        allowed = self.allowed_labels()
        if allowed is not None and not values <= set(allowed):
            unexpected = sorted(values - set(allowed))
            return None, f"unexpected label values {unexpected} (allowed: {sorted(allowed)})"
        return data.astype(np.int16), ""

    def align(self, volumes: dict[str, tuple[np.ndarray, np.ndarray]],
              files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        """Stack the contrasts (C, X, Y, Z) on one grid; by default they must already share shape and affine."""
        reference = self.modalities[0]
        ref_data, ref_affine = volumes[reference]
        for modality in self.modalities[1:]:
            data, affine = volumes[modality]
            difference = grid_difference(data.shape, affine, ref_data.shape, ref_affine)
            if difference:
                raise BadDataError(f"{files[modality]}: contrast {modality} is on another grid than {reference}: "
                                   f"{difference}")
        return np.stack([volumes[m][0] for m in self.modalities]), ref_affine

    def read_raw(self, subject_id: str) -> RawSubject:
        """The checked raw subject; the first problem is raised as a one-line BadDataError."""
        raw, problems = self.check_subject(subject_id)
        if problems:
            raise BadDataError(problems[0].line())
        return raw

    # -- loading -----------------------------------------------------------------------------------------------
    def load(self, subject_id: str, preprocess) -> Subject:
        from mribench.data.preprocess import preprocess_subject

        return preprocess_subject(self.read_raw(subject_id), preprocess)


def _strip_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _split_path(message: str) -> tuple[str, str]:
    head, sep, tail = message.partition(": ")
    return (head, tail) if sep else ("", message)
