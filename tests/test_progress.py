"""Progress in a pipe or a log file: plain lines at a fixed interval instead of rich's live bars."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from mribench.errors import MribenchError
from mribench.progress import PROGRESS_INTERVAL_ENV, PlainProgress, make_progress, progress_task

FIXTURES = Path(__file__).parent / "fixtures"
LINE = re.compile(r"^tiny-slow fit: (\d+)/12 \(\d+%\)  loss (\S+)  elapsed (\d+:\d\d:\d\d)  eta (\d+:\d\d:\d\d|\?)$")


def _console(buffer: io.StringIO) -> Console:
    return Console(file=buffer, force_terminal=False, width=40)


def test_smoke_training_with_output_to_a_file_prints_plain_progress_lines(tmp_path):
    """`mribench run` with stdout and stderr in a file: the fit phase reports step/total, loss, elapsed and ETA."""
    site = tmp_path / "site"
    (site / "mribench_tiny-0.1.dist-info").mkdir(parents=True)
    shutil.copy(FIXTURES / "tiny_plugin.py", site / "mribench_tiny_plugin.py")
    (site / "mribench_tiny-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mribench-tiny\n"
                                                                  "Version: 0.1\n")
    (site / "mribench_tiny-0.1.dist-info" / "entry_points.txt").write_text("[mribench]\ntiny = mribench_tiny_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path]), "TINY_TASKS": str(FIXTURES / "tasks"),
           "TINY_SLOW_DELAY": "0.1", PROGRESS_INTERVAL_ENV: "0.15"}
    log = tmp_path / "log.txt"
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-m", "mribench", "run", "--method", "tiny-slow-linear", "--task",
                        "tiny-brain-missing1", "--preset", "smoke", "--out", str(tmp_path / "runs")],
                       env=env, stdout=handle, stderr=subprocess.STDOUT, check=True, timeout=300)
    text = log.read_text()
    lines = [match for line in text.splitlines() if (match := LINE.match(line))]
    assert len(lines) >= 3, text
    steps = [int(match[1]) for match in lines]
    assert steps == sorted(steps) and steps[-1] == 12 and steps[0] < 12
    assert all(float(match[2]) >= 0 for match in lines)
    assert "\x1b[" not in text and "━" not in text  # no escape codes, no bars
    assert "wrote" in text  # the run finished


def test_a_step_longer_than_the_interval_still_prints_and_short_phases_stay_silent():
    buffer = io.StringIO()
    with PlainProgress(_console(buffer), interval=0.1) as progress:
        with progress_task(progress, "quick", 3) as advance:
            for _ in range(3):
                advance()
        with progress_task(progress, "slow", 2) as advance:
            time.sleep(0.45)  # one step lasting several intervals
            advance(loss=0.5)
            advance(loss=0.25)
    lines = buffer.getvalue().splitlines()
    assert not any(line.startswith("quick") for line in lines)
    waiting = [line for line in lines if line.startswith("slow: 0/2 (0%)  elapsed ")]
    assert len(waiting) >= 2 and all(line.endswith("eta ?") for line in waiting)
    assert lines[-1].startswith("slow: 2/2 (100%)  loss 0.25  elapsed 0:00:0")
    assert all(line.startswith("slow: ") for line in lines)  # nothing else, and never wrapped at 40 columns


def test_a_phase_resumed_with_nothing_left_prints_nothing():
    buffer = io.StringIO()
    with PlainProgress(_console(buffer), interval=0.05) as progress, progress_task(progress, "done", 4, 4):
        time.sleep(0.2)
    assert buffer.getvalue() == ""


def test_terminal_gets_rich_bars_and_a_file_gets_plain_lines(monkeypatch):
    monkeypatch.delenv(PROGRESS_INTERVAL_ENV, raising=False)
    assert isinstance(make_progress(Console(file=io.StringIO(), force_terminal=True)), Progress)
    plain = make_progress(_console(io.StringIO()))
    assert isinstance(plain, PlainProgress) and plain.interval == 30.0


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_interval_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, value)
    with pytest.raises(MribenchError, match=PROGRESS_INTERVAL_ENV):
        make_progress(_console(io.StringIO()))
