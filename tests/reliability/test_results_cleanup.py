"""Cleanup: phantom pool workers die with their parent, what a killed process left (staging folders, temp files) is
swept at the next start, and files get the user's umask."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mribench.runner import RunRequest, run

POOL_PROBE = """\
import os, sys, time
from pathlib import Path
from mribench.data.phantom_common import PhantomOptions, generate_root

def write(folder, options, index):
    (Path(folder) / f"worker-{os.getpid()}").write_text("")
    time.sleep(float(sys.argv[1]))
    (Path(folder) / f"subject{index}.txt").write_text(str(index))

if __name__ == "__main__":
    print(generate_root("probe-phantom", PhantomOptions(subjects=2), write))
"""


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc (Linux)")
def test_killed_generation_leaves_no_workers_and_its_staging_is_swept(tmp_path, subprocess_env):
    probe = tmp_path / "probe.py"
    probe.write_text(POOL_PROBE)
    phantoms = tmp_path / "cache" / "phantoms"
    parent = subprocess.Popen([sys.executable, str(probe), "600"], env=subprocess_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    workers = lambda: sorted(phantoms.glob(".*.tmp-*/worker-*"))  # noqa: E731
    deadline = time.monotonic() + 120
    while len(workers()) < 2:
        assert parent.poll() is None and time.monotonic() < deadline, "the pool did not start"
        time.sleep(0.1)
    pids = [int(path.name.split("-")[1]) for path in workers()]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in pids if _alive(pid)]
    for pid in survivors:  # do not leave them sleeping when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "pool workers outlived their killed parent"
    assert len(list(phantoms.glob(".*.tmp-*"))) == 1  # the killed run's staging folder

    again = subprocess.run([sys.executable, str(probe), "0"], env=subprocess_env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    root = Path(again.stdout.strip())
    assert sorted(p.name for p in root.glob("subject*")) == ["subject0.txt", "subject1.txt"]
    assert [p.name for p in phantoms.iterdir() if not p.name.endswith(".lock")] == [root.name]


def test_temp_files_of_a_killed_run_are_swept_at_the_next_start(tiny_registry, tmp_path):
    request = RunRequest(method="nearest-contrast", task="tiny-brain-missing1", preset="smoke", out=tmp_path / "runs")
    folder = run(request).folder
    model_dir = next((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0"))
    subject = next(p for p in (folder / "predictions").iterdir())
    prediction = next(subject.glob("*.nii.gz"))
    leftovers = [subject / f".{prediction.name}.tmp-k1ll3d00.nii.gz", folder / ".result.json.tmp-abcd1234.tmp",
                 folder / "work" / "pred" / f".{subject.name}.npy.tmp-0a1b2c3d.npy",
                 model_dir / "work" / ".fit.pt.tmp-zz99yy88.tmp"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    kept = folder / "notes.txt"  # not ours: never swept
    kept.write_text("mine")
    (folder / "result.json").write_text("")  # damaged, so the rerun reaches the model too
    assert run(request).status == "done"
    assert [path for path in leftovers if path.exists()] == []
    assert kept.read_text() == "mine" and prediction.is_file()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_files_are_created_with_the_users_umask(tiny_registry, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        folder = run(RunRequest(method="nearest-contrast", task="tiny-brain-missing1", preset="smoke",
                                out=tmp_path / "runs")).folder
    finally:
        os.umask(previous)
    model = next((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    files = [folder / "result.json", folder / "per_subject.csv", model, *(folder / "predictions").rglob("*.nii.gz")]
    assert {oct(stat.S_IMODE(path.stat().st_mode)) for path in files} == {oct(mode)}
