"""Datasets: loaders for the official layouts, preprocessing, the preprocessed cache, and the runner's entry point.

:func:`load_task_data` resolves where a task's data is, checks every subject of the split once (building the cache
on the first run) and returns lazily loaded train and test sets.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mribench.data.base import Dataset, Subject, SubjectSet, resolve_root
from mribench.errors import BadDataError, DataMissingError, MribenchError
from mribench.progress import progress_task
from mribench.protocol import Split, make_split
from mribench.tasks import PreprocessSpec, TaskSpec


@dataclass
class TaskData:
    """A task's data: the dataset, its root, the split (bad subjects removed when skipped) and its three sets.

    train: what methods fit on; validation: carved from the protocol's training subjects, for presets, curves and
    tuning (never trained on); test: the leaderboard only.

    skipped: IDs of subjects left out because their data is bad (only with ``skip_bad``); skip_reasons: the one-line
    error of each, in the same order.
    fingerprint: :func:`data_fingerprint` of the subjects of the split (bad ones removed): the same data under
    another root or cache gives the same fingerprint, other data another one.
    """

    dataset: Dataset
    root: Path
    split: Split
    train: SubjectSet
    validation: SubjectSet
    test: SubjectSet
    skipped: list[str] = field(default_factory=list)
    skip_reasons: list[str] = field(default_factory=list)
    fingerprint: str = ""


def data_fingerprint(dataset: Dataset, subject_ids: list[str]) -> str:
    """SHA-256 of what a dataset holds, independent of where it lies: the sorted subject IDs and, for datasets read
    from files, each source file's path relative to the root, size and header SHA-256 (never the root, mtime or
    cache folder)."""
    from mribench.data.nifti import NiftiDataset, file_fingerprint

    root = Path(dataset.root)
    entries: list[object] = []
    for subject_id in sorted(subject_ids):
        sources = []
        if isinstance(dataset, NiftiDataset):
            for path in dataset.source_files(subject_id):
                info = file_fingerprint(path)
                relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
                sources.append([relative, info["size"], info["header_sha256"]])
        entries.append([subject_id, sources])
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()


def check_compatible(task: TaskSpec, dataset_cls: type[Dataset]) -> None:
    """A task must match its dataset's problem and modalities (same names, same order)."""
    if dataset_cls.problem != task.problem:
        raise MribenchError(f"task {task.name}: problem {task.problem!r} but dataset {dataset_cls.name!r} is for "
                            f"{dataset_cls.problem!r}")
    if task.problem == "missing-modality" and list(task.elements) != list(dataset_cls.modalities):
        raise MribenchError(f"task {task.name}: elements {list(task.elements)} do not match the modalities of dataset "
                            f"{dataset_cls.name!r} {list(dataset_cls.modalities)} (names and order must agree)")
    if task.problem == "missing-slice" and len(dataset_cls.modalities) != 1:
        raise MribenchError(f"task {task.name}: dataset {dataset_cls.name!r} has {len(dataset_cls.modalities)} "
                            f"channels, a missing-slice task needs 1")


def subject_loader(dataset: Dataset, spec: PreprocessSpec) -> Callable[[str], Subject]:
    """Load function of a dataset: through the preprocessed cache for NIfTI datasets, directly otherwise."""
    from mribench.data.cache import PreprocessedCache
    from mribench.data.nifti import NiftiDataset

    if isinstance(dataset, NiftiDataset):
        return PreprocessedCache(dataset, spec).load
    return lambda subject_id: dataset.load(subject_id, spec)


def load_task_data(task: TaskSpec, dataset_cls: type[Dataset], data_root: str | Path | None, progress=None,
                   skip_bad: bool = False) -> TaskData:
    """Resolve, split and check a task's data (``dataset_cls``: the task's dataset class, resolved by the caller).

    data_root: ``--data-root`` (None: $MRIBENCH_DATA/<dataset>, the config file, or generation for phantoms).
    Every subject of the split is loaded once (filling the cache); a bad subject raises its one-line
    :class:`BadDataError`, or with ``skip_bad`` is left out of the split and recorded in ``skipped``.
    """
    check_compatible(task, dataset_cls)
    root = resolve_root(dataset_cls, task.dataset_options, data_root, progress)
    dataset = dataset_cls(root, task.dataset_options)
    subject_ids = dataset.subject_ids()
    if not subject_ids:
        raise DataMissingError(f"dataset {dataset_cls.name!r}: no subjects found under {root}; expected layout: "
                               f"{dataset_cls.layout or '(see README)'}")
    split = make_split(task, subject_ids)
    load = subject_loader(dataset, task.preprocess)
    skipped: list[str] = []
    reasons: list[str] = []
    wanted = split.train + split.validation + split.test
    with progress_task(progress, f"check + cache {task.dataset}", len(wanted)) as advance:
        for subject_id in wanted:
            try:
                load(subject_id)
            except BadDataError as exc:
                if not skip_bad:
                    raise
                skipped.append(subject_id)
                reasons.append(str(exc))
            advance()
    if skipped:
        split = split.without(set(skipped))
    if not split.train or not split.test:
        raise BadDataError(f"dataset {dataset_cls.name!r}: after skipping {len(skipped)} bad subjects the split of "
                           f"task {task.name} has {len(split.train)} train / {len(split.validation)} validation / "
                           f"{len(split.test)} test subjects")
    fingerprint = data_fingerprint(dataset, split.train + split.validation + split.test)
    return TaskData(dataset=dataset, root=root, split=split,
                    train=SubjectSet(split.train, load, data_fingerprint=fingerprint),
                    validation=SubjectSet(split.validation, load, data_fingerprint=fingerprint),
                    test=SubjectSet(split.test, load, data_fingerprint=fingerprint),
                    skipped=skipped, skip_reasons=reasons, fingerprint=fingerprint)


__all__ = ["TaskData", "data_fingerprint", "load_task_data", "check_compatible", "subject_loader"]
