"""A lock per run folder and per cache entry: a second identical command waits (saying so) and never crashes;
phantom generation and segmenter training happen once when two processes want them at the same time."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from mribench.atomic import file_lock

TASK_NAME = "rel-brats-missing1"  # the brats_task fixture's


def _run_command(task: Path, method: str, data_root: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mribench", "run", "--method", method, "--task", str(task), "--preset", "smoke",
            "--data-root", str(data_root), "--out", str(out)]


def _wait_for(predicate, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_identical_runs_at_once_both_finish_with_one_result(brats_source, brats_task, tmp_path,
                                                                subprocess_env):
    out = tmp_path / "runs"
    command = _run_command(brats_task, "nearest-contrast", brats_source, out)
    processes = [subprocess.Popen(command, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    answers = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], answers
    said = sorted(stdout.split()[0].rstrip(":") for stdout, _ in answers)
    assert said == ["complete", "wrote"]  # one did the work, the other found it done
    assert len(list(out.rglob("result.json"))) == 1
    assert not any("Traceback" in stderr or "error" in stderr for _, stderr in answers)


def test_a_second_command_waits_for_the_run_lock_and_says_so(brats_source, brats_task, tmp_path, subprocess_env):
    out = tmp_path / "runs"
    lock = out / TASK_NAME / "mean-available" / ".smoke-seed0.lock"
    stderr = tmp_path / "stderr.txt"
    with file_lock(lock), stderr.open("w") as sink:  # as if another mribench held the run
        process = subprocess.Popen(_run_command(brats_task, "mean-available", brats_source, out),
                                   env=subprocess_env, stdout=subprocess.DEVNULL, stderr=sink)
        _wait_for(lambda: "waiting for another mribench process" in stderr.read_text())
        assert process.poll() is None and not (lock.parent / "smoke-seed0").exists()
    assert process.wait(timeout=600) == 0
    assert str(lock) in " ".join(stderr.read_text().split())
    assert (lock.parent / "smoke-seed0" / "result.json").is_file()


SEGMENTER_PROBE = """\
import sys
from mribench.cli import app
from mribench.metrics import segmenter

train, log_path = segmenter.train_network, sys.argv[1]

def counted(*args, **kwargs):
    with open(log_path, "a") as log:
        log.write(args[-1] + "\\n")  # the description: "segmenter <variant>"
    return train(*args, **kwargs)

segmenter.train_network = counted
sys.argv = ["mribench", *sys.argv[2:]]
app()
"""


def test_two_methods_at_once_train_each_segmenter_once(brats_source, brats_task, tmp_path, subprocess_env):
    probe, log, out = tmp_path / "probe.py", tmp_path / "trained.log", tmp_path / "runs"
    probe.write_text(SEGMENTER_PROBE)
    processes = [subprocess.Popen([sys.executable, str(probe), str(log),
                                   *_run_command(brats_task, method, brats_source, out)[3:]],
                                  env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for method in ("mean-available", "nearest-contrast")]
    answers = [process.communicate(timeout=600) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], answers
    trained = Counter(log.read_text().split("\n")[:-1])
    assert trained["segmenter full"] == 1 and set(trained.values()) == {1}
    results = [json.loads(path.read_text()) for path in sorted(out.rglob("result.json"))]
    assert len(results) == 2
    assert results[0]["metrics"]["dice"]["extractor"] == results[1]["metrics"]["dice"]["extractor"]


PHANTOM_PROBE = """\
import os, sys, time
from pathlib import Path
from mribench.data.phantom_common import PhantomOptions, generate_root

def write(folder, options, index):
    with open(sys.argv[1], "a") as log:
        log.write(f"{index} {os.getpid()}\\n")
    time.sleep(float(sys.argv[2]))
    (Path(folder) / f"subject{index}.txt").write_text(str(index))

if __name__ == "__main__":
    print(generate_root("probe-phantom", PhantomOptions(subjects=4), write))
"""


def test_two_processes_generate_a_phantom_once(tmp_path, subprocess_env):
    probe, log = tmp_path / "probe.py", tmp_path / "written.log"
    probe.write_text(PHANTOM_PROBE)
    processes = [subprocess.Popen([sys.executable, str(probe), str(log), "0.5"], env=subprocess_env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    answers = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], answers
    roots = {stdout.strip() for stdout, _ in answers}
    assert len(roots) == 1
    written = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert written == {str(index): 1 for index in range(4)}
    assert sorted(p.name for p in Path(roots.pop()).iterdir()) == [f"subject{i}.txt" for i in range(4)]
