"""``mribench data verify``: check every subject of a dataset folder and list what is wrong.

Checks per subject: every contrast present, each file a readable NIfTI whose voxel data decodes, 3D, finite values,
not constant (a foreground exists), contrasts on one grid (shape and affine within 1e-3 mm; IXI's T1 is resampled
instead, T2 and PD must agree), labels on the image grid with values in the dataset's label set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mribench.data.nifti import NiftiDataset, Problem
from mribench.errors import DataMissingError, MribenchError
from mribench.progress import progress_task


def verify_dataset(dataset: NiftiDataset, progress=None) -> list[Problem]:
    """Every problem of every subject under the dataset's root (empty list: all good), excluded subjects included."""
    subject_ids = dataset.subject_ids()
    problems = list(dataset.excluded_subjects())
    if not subject_ids:
        return problems + [Problem("-", str(dataset.root), f"no subjects found; expected layout: {dataset.layout}")]
    with progress_task(progress, f"verify {dataset.name}", len(subject_ids)) as advance:
        for subject_id in subject_ids:
            problems.extend(dataset.check_subject(subject_id)[1])
            advance()
    return problems


def open_dataset(dataset_cls: type, root: str | Path, options: dict[str, Any] | None = None) -> NiftiDataset:
    """The dataset class (resolved by the caller) reading ``root``; a missing or empty root is a
    DataMissingError."""
    if not issubclass(dataset_cls, NiftiDataset):
        raise MribenchError(f"dataset {dataset_cls.name!r} does not read NIfTI folders and cannot be verified")
    root = Path(root)
    if not root.is_dir() or not any(root.iterdir()):
        state = "does not exist" if not root.exists() else "is empty" if root.is_dir() else "is not a folder"
        raise DataMissingError(f"{root} {state}: {dataset_cls.missing_message([f'--data-root: {root}'])}")
    return dataset_cls(root, options)


def problems_table(problems: list[Problem]):
    """A rich table of problems: subject, file, problem, severity."""
    from rich.table import Table
    from rich.text import Text

    table = Table("subject", "file", "problem", "severity")
    table.columns[0].no_wrap = True
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        table.add_row(Text(problem.subject_id), Text(problem.file), Text(problem.problem),
                      Text(problem.severity, style))
    return table


def summary(dataset: NiftiDataset, problems: list[Problem]) -> str:
    """One line: how many subjects were checked, how many have errors, how many were excluded."""
    errors = {p.subject_id for p in problems if p.severity == "error"}
    excluded = [p for p in problems if p.severity == "excluded"]
    return (f"{dataset.name} at {dataset.root}: {len(dataset.subject_ids())} subjects checked, {len(errors)} with "
            f"errors, {len(excluded)} excluded")
