"""Atomic file writes, locks and the sweeping of what a killed process left behind.

Everything mribench writes goes to a temp file in the target's folder, is flushed to disk, then renamed onto the
target — readers (and a rerun after a kill) never see half a file. Temp files carry the marker ``.tmp-`` in their
name (``.<name>.tmp-XXXXXXXX<suffix>``) so that :func:`sweep_temporaries` can delete those of a killed process, and
they get the permissions the user's umask gives a new file (0644 under umask 022), not mkstemp's 0600.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARKER = ".tmp-"


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel tells (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path, directory: bool = False) -> None:
    """Give a file made by mkstemp (0600) / a folder made by mkdtemp (0700) the mode the umask gives new ones."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def temporary_name(path: Path) -> str:
    """The mkstemp prefix of temp files standing in for ``path``."""
    return f".{Path(path).name}{TEMP_MARKER}"


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path next to ``path`` (ending in ``suffix``, for writers that care about extensions); when the
    block succeeds, fsync it and rename it onto ``path``; when it fails, delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path), suffix=suffix)
    os.close(fd)
    temporary = Path(name)
    try:
        apply_umask(temporary)
        yield temporary
        with temporary.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def sweep_temporaries(folder: Path) -> list[Path]:
    """Delete the temp files (and staging folders) that writers killed mid-write left anywhere under ``folder``.
    Call it only while holding the lock that guards ``folder``: a live writer's temp file would go too.
    Returns what was deleted."""
    folder = Path(folder)
    return _remove(sorted(folder.rglob(f".*{TEMP_MARKER}*"))) if folder.is_dir() else []


def sweep_temporaries_of(path: Path) -> list[Path]:
    """Delete the temp files (or staging folders) left beside ``path`` by killed writers of ``path`` only (others
    may be writing their own files in the same folder). Call it while holding the lock that guards ``path``."""
    path = Path(path)
    return _remove(sorted(path.parent.glob(f"{temporary_name(path)}*"))) if path.parent.is_dir() else []


def _remove(paths: list[Path]) -> list[Path]:
    for leftover in paths:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return paths


def wait_notice(console) -> Callable[[str], None] | None:
    """An ``on_wait`` for :func:`file_lock` printing on a rich console (None: silent) as plain text: never
    markup (paths may hold ``[``), never wrapped (a path stays whole in a log)."""
    if console is None:
        return None
    return lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def file_lock(path: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if absent) for the block.

    When another process holds it, ``on_wait`` is called once with a one-line message, then the call blocks until
    the lock is free. The kernel releases the lock when its holder dies, so a killed process never leaves a stale
    lock behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(f"waiting for another mribench process that holds {path} ...")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
