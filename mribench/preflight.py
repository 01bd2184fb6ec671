"""Checks made before any work starts, so that a fixable mistake costs one line (exit 2), not a fit followed by a
crash: output paths can be written (each check writes nothing but a probe file it removes at once), and a task's
metrics accept its options and its shape."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from mribench.errors import MribenchError
from mribench.tasks import TaskSpec

MEMORY_FRACTION = 0.25  # one preprocessed subject may use at most this share of the machine's memory


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_can_create_in(folder: Path, flag: str, target: Path) -> None:
    """``folder`` (an existing path) must be a folder in which this process can create files."""
    if not folder.is_dir():
        raise MribenchError(f"{flag} {target}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mribench-write-probe-")
    except OSError as exc:
        raise MribenchError(f"{flag} {target}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_folder(path: Path, flag: str) -> None:
    """``path`` is a folder, or can be created as one, and is writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MribenchError(f"{flag} {path}: is a file, not a folder")
    _check_can_create_in(_nearest_existing(path), flag, path)


def check_output_file(path: Path, flag: str, example: str) -> None:
    """``path`` names a file (not a folder) whose folder exists or can be created, and is writable."""
    path = Path(path)
    if path.is_dir():
        raise MribenchError(f"{flag} {path}: is a folder; give a file name, e.g. {path / example}")
    _check_can_create_in(_nearest_existing(path.parent), flag, path)


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_task(task: TaskSpec) -> None:
    """Every metric of ``task`` is registered, accepts its options and can score its shape, and one preprocessed
    subject fits in memory."""
    from mribench.plugins import registry

    shape = tuple(task.preprocess.shape)
    reg = registry()
    for spec in task.metrics:
        metric_cls = reg.metric(spec.name)
        try:
            metric_cls.check_options(spec.options)
        except ValueError as exc:
            raise MribenchError(f"task {task.name}: metric {spec.name!r}: {exc}") from None
        problem = metric_cls.shape_problem(task.problem, shape)
        if problem:
            raise MribenchError(f"task {task.name}: metric {spec.name!r} cannot score preprocess.shape {list(shape)}: "
                                f"{problem}")
    subject_bytes = 4 * task.channels * math.prod(shape)
    memory = physical_memory_bytes()
    if memory and subject_bytes > MEMORY_FRACTION * memory:
        raise MribenchError(f"task {task.name}: preprocess.shape {list(shape)} makes one subject "
                            f"{subject_bytes / 2**30:.3g} GiB (float32, {task.channels} channel(s)); this machine has "
                            f"{memory / 2**30:.3g} GiB of memory")
