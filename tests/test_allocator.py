"""The allocator setting the ``mribench`` command applies: a training step stops page-faulting its freed memory."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mribench.allocator import retain_freed_memory

STEP_FAULTS = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from mribench.allocator import retain_freed_memory
    assert retain_freed_memory()
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
x = torch.randn(4096, 256)
def step():
    mlp.zero_grad(set_to_none=True)
    mlp(x).square().mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_step(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", STEP_FAULTS, mode], capture_output=True, text=True, check=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not retain_freed_memory(),
                    reason="the setting is glibc's mallopt; this platform's malloc is not glibc's")
def test_training_steps_page_fault_less_with_freed_memory_retained():
    default, retained = faults_per_step("default"), faults_per_step("retain")
    assert default > 500  # glibc's defaults hand the step fresh pages (about 2,700 faults per step measured)
    assert retained < 0.7 * default  # about 1,300 measured

