"""Progress of long phases: live bars on a terminal, plain lines in a pipe or a log file (a utility: imports nothing
of mribench but errors)."""
from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from mribench.errors import MribenchError


PROGRESS_INTERVAL_ENV = "MRIBENCH_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL_S = 30.0


def progress_interval() -> float:
    """Seconds between two plain progress lines of a running phase: ``$MRIBENCH_PROGRESS_INTERVAL``, else 30."""
    text = os.environ.get(PROGRESS_INTERVAL_ENV)
    if text is None:
        return DEFAULT_PROGRESS_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise MribenchError(f"${PROGRESS_INTERVAL_ENV}={text!r}: expected a number of seconds > 0")
    return value


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class _Phase:
    description: str
    total: int
    completed: int
    info: str
    started: float
    completed_at_start: int
    last_line: float
    printed: bool = False
    finished: bool = False

    def line(self, now: float) -> str:
        elapsed = now - self.started
        done = self.completed - self.completed_at_start
        remaining = max(self.total - self.completed, 0)
        eta = _clock(elapsed / done * remaining) if done > 0 else "?"
        percent = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
        info = f"  {self.info}" if self.info else ""
        return f"{self.description}: {self.completed}/{self.total}{percent}{info}  elapsed {_clock(elapsed)}  eta {eta}"


class PlainProgress:
    """Progress for output that is not a terminal (CI logs, ``nohup``, ``make demo > log 2>&1``), where rich's live
    bars draw nothing until the end: every running phase prints one plain line every ``interval`` seconds (phase,
    step/total, percent, the latest info such as the loss, elapsed, ETA), from a background thread so a slow step
    cannot hold it back, and a last line when a phase that printed one finishes. Phases shorter than ``interval`` stay
    silent. Offers the part of :class:`rich.progress.Progress` that :func:`progress_task` uses."""

    def __init__(self, console: Console, interval: float, disable: bool = False):
        self.console = console
        self.interval = interval
        self.disable = disable
        self._phases: list[_Phase] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PlainProgress":
        if not self.disable:
            self._thread = threading.Thread(target=self._heartbeat, name="mribench-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def add_task(self, description: str, total: int, completed: int = 0, info: str = "") -> int:
        now = time.monotonic()
        with self._lock:
            phase = _Phase(description, int(total), int(completed), info, now, int(completed), now)
            phase.finished = phase.completed >= phase.total  # e.g. a resumed phase with nothing left to do
            self._phases.append(phase)
            return len(self._phases) - 1

    def update(self, task_id: int, advance: int = 0, info: str | None = None) -> None:
        with self._lock:
            phase = self._phases[task_id]
            phase.completed += advance
            if info is not None:
                phase.info = info
            if phase.completed >= phase.total and not phase.finished:
                phase.finished = True
                if phase.printed:
                    self._print(phase.line(time.monotonic()))

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            now = time.monotonic()
            with self._lock:
                for phase in self._phases:
                    if not phase.finished and now - phase.last_line >= self.interval:
                        phase.last_line, phase.printed = now, True
                        self._print(phase.line(now))

    def _print(self, line: str) -> None:
        if not self.disable:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def heading(console: Console, text: str) -> None:
    """A section heading: a rule across a terminal; one plain ``== text ==`` line in a pipe or file, whose console
    may be as wide as every character of a path needs (a rule would fill that width)."""
    if console.is_terminal:
        console.rule(Text(text))
    else:
        console.print(f"== {text} ==", markup=False, highlight=False, soft_wrap=True)


def _is_main_rank() -> bool:
    """True but in a non-zero rank of a torch.distributed process group (torchrun)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def make_progress(console: Console | None = None, disable: bool = False) -> Progress | PlainProgress:
    """Live rich bars with ETA on a terminal; plain lines every ``$MRIBENCH_PROGRESS_INTERVAL`` s (default 30)
    otherwise; silent on non-zero ranks."""
    console = console or Console(stderr=True)
    disable = disable or not _is_main_rank()
    if not (console.is_terminal or console.is_jupyter):
        return PlainProgress(console, progress_interval(), disable=disable)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=console, disable=disable, transient=False)


@contextmanager
def progress_task(progress: Progress | PlainProgress | None, description: str, total: int, completed: int = 0):
    """Add a task to ``progress`` (or a silent one when None); yields ``advance(n=1, **info)``."""
    if progress is None:
        yield lambda n=1, **info: None
        return
    task_id = progress.add_task(description, total=total, completed=completed, info="")

    def advance(n: int = 1, **info: Any) -> None:
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
        progress.update(task_id, advance=n, info=text)

    yield advance
