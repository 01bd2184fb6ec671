"""A run killed with SIGKILL in the fit phase or the synthesis phase resumes on rerun with the same numbers."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TASK = "tiny-brain-missing1"


@pytest.fixture
def site(tmp_path):
    """The tiny tests-only plugin installed as a distribution, for subprocesses."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(FIXTURES / "tiny_plugin.py", site / "mribench_tiny_plugin.py")
    info = site / "mribench_tiny-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mribench-tiny\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mribench]\ntiny = mribench_tiny_plugin\n")
    return site


def _command(out: Path):
    return [sys.executable, "-m", "mribench", "run", "--method", "tiny-slow-linear", "--task", TASK, "--preset",
            "smoke", "--out", str(out)]


def _env(site, delay):
    return {**os.environ, "PYTHONPATH": str(site), "TINY_SLOW_DELAY": str(delay), "TINY_TASKS": str(FIXTURES / "tasks")}


def _psnr(out: Path) -> dict:
    result = json.loads(next(out.glob(f"{TASK}/tiny-slow-linear/*/result.json")).read_text())
    return result["metrics"]["psnr"]["per_subject"]


def _kill_when(out: Path, site, ready, timeout=120.0):
    process = subprocess.Popen(_command(out), env=_env(site, 0.4), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_during_fit_and_during_synthesis_resumes_to_the_same_numbers(tmp_path, site):
    clean = tmp_path / "clean"
    subprocess.run(_command(clean), env=_env(site, 0), check=True, capture_output=True, timeout=300)
    reference = _psnr(clean)

    killed = tmp_path / "killed"
    checkpoint = lambda: list(killed.glob("_models/*/tiny-slow-linear/smoke-seed0/work/fit.pt"))  # noqa: E731
    _kill_when(killed, site, lambda: bool(checkpoint()))
    assert checkpoint() and not list(killed.glob("_models/*/tiny-slow-linear/smoke-seed0/model.pt"))

    predictions = lambda: list(killed.glob(f"{TASK}/tiny-slow-linear/smoke-seed0/work/pred/*.npy"))  # noqa: E731
    _kill_when(killed, site, lambda: bool(predictions()))
    assert not list(killed.glob(f"{TASK}/**/result.json"))

    finished = subprocess.run(_command(killed), env=_env(site, 0), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert _psnr(killed) == reference
    assert not list(killed.rglob("*.tmp"))
