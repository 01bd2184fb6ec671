"""The dataset contract: a Dataset lists its subjects and loads each one preprocessed for a task.

Real loaders (brats, ixi, acdc, nifti_folder) read an official layout under a root folder; phantom datasets
generate that same layout into the cache on first use and then read it with the real loaders.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mribench.errors import DataMissingError
from mribench.locations import DATA_ENV, cache_dir, config_file, first_nonempty, root_candidates

__all__ = ["Subject", "SubjectSet", "RawSubject", "Dataset", "resolve_root", "cache_dir", "config_file"]


@dataclass
class Subject:
    """One preprocessed subject.

    image: (C, D, H, W) float32 in [0, 1]; C = modalities (brain) or 1 (cardiac), D = slice axis.
    affine: (4, 4) float64 voxel → world (RAS mm) of the preprocessed grid, axes ordered (D, H, W).
    label: (D, H, W) int16 segmentation on the same grid, or None.
    meta: anything else the loader knows (source files, original shape, spacing ...).
    """

    subject_id: str
    image: np.ndarray
    affine: np.ndarray
    label: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class SubjectSet(Sequence):
    """A lazily loaded, ordered set of subjects (sorted IDs).

    ``identity``: SHA-256 of the subject IDs and the fingerprint of the data they come from
    (:func:`mribench.data.data_fingerprint`, when known): what a model trained on this set depends on.
    """

    def __init__(self, subject_ids: Sequence[str], loader: Callable[[str], Subject], data_fingerprint: str = ""):
        self.subject_ids = list(subject_ids)
        self._loader = loader
        self.identity = hashlib.sha256("\n".join([data_fingerprint, *self.subject_ids]).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.subject_ids)

    def __getitem__(self, index: int) -> Subject:
        return self._loader(self.subject_ids[index])

    def stack(self) -> torch.Tensor:
        """All images as one tensor (N, C, D, H, W) — fine for phantom-sized data."""
        return torch.from_numpy(np.stack([s.image for s in self])).float()


class Dataset:
    """Base class of a dataset loader, registered through ``mribench_register_datasets``.

    Class attributes:
        name: registry key used by task specs.
        problem: ``missing-modality`` or ``missing-slice``.
        modalities: channel names in order (brain) or ``("sax",)`` (cardiac).
        label_values: the allowed label values (including 0), or None when the dataset has no labels.
        source: where a user obtains the data.
        layout: the expected folder layout, shown when the data is absent.
        generated: True for phantoms, which need no root.
    """

    name: ClassVar[str]
    problem: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]]
    label_values: ClassVar[tuple[int, ...] | None] = None
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    generated: ClassVar[bool] = False

    def __init__(self, root: Path, options: dict[str, Any] | None = None):
        self.root = Path(root)
        self.options = dict(options or {})

    # -- to implement -----------------------------------------------------------------------------------
    def subject_ids(self) -> list[str]:
        """Sorted IDs of the subjects under ``root``."""
        raise NotImplementedError

    def load(self, subject_id: str, preprocess) -> Subject:
        """One subject preprocessed as ``preprocess`` (a :class:`mribench.tasks.PreprocessSpec`) says."""
        raise NotImplementedError

    # -- where the data is --------------------------------------------------------------------------------
    @classmethod
    def prepare_root(cls, options: dict[str, Any], progress=None) -> Path:
        """For generated datasets: create the data (once) and return its root."""
        raise NotImplementedError(f"dataset {cls.name} is not generated")

    @classmethod
    def missing_message(cls, looked: list[str]) -> str:
        where = "; ".join(looked) if looked else "nowhere (no location configured)"
        return (f"dataset {cls.name!r} not found (looked in: {where}). Get it from {cls.source or 'its provider'}; "
                f"expected layout: {cls.layout or '(see README)'}; point mribench at it with --data-root PATH, "
                f"or ${DATA_ENV}=DIR holding DIR/{cls.name}/, or 'data: {{{cls.name}: PATH}}' in {config_file()}")


def resolve_root(dataset_cls: type[Dataset], options: dict[str, Any], data_root: str | Path | None,
                 progress=None) -> Path:
    """The root folder of a dataset: --data-root, then $MRIBENCH_DATA/<name>, then the config file."""
    if dataset_cls.generated and data_root is None:
        return dataset_cls.prepare_root(options, progress)
    candidates = root_candidates(dataset_cls.name, data_root)
    root = first_nonempty(candidates)
    if root is None:
        raise DataMissingError(dataset_cls.missing_message([f"{how}: {p}" for how, p in candidates]))
    return root


@dataclass
class RawSubject:
    """A subject read and checked, before preprocessing.

    image: (C, X, Y, Z) float32 raw intensities on one voxel grid; affine: (4, 4) voxel → world (RAS mm) of that grid;
    label: (X, Y, Z) int16 on the same grid or None; files: the source files read.
    """

    subject_id: str
    image: np.ndarray
    affine: np.ndarray
    label: np.ndarray | None
    files: list[Path]
    meta: dict[str, Any] = field(default_factory=dict)
