"""CoPeDiT sampling check: validation PSNR of a trained cpu model at other DDIM step counts, and of the mean of K
samples, without retraining. A diagnostic of where the model's error comes from, not a method change: averaging
samples approaches the conditional mean, which PSNR favours over any single sample.

Usage: python benchmarks/copedit_sampling_check.py TASK RUNS [ddim=N,N,...] [average=K,K,...]
e.g.   python benchmarks/copedit_sampling_check.py phantom-brats-missing3 runs/leaderboard ddim=10,50 average=4

RUNS is a runs folder in which ``mribench run --method copedit`` trained the task's dataset at the cpu preset,
seed 0. Prints one JSON line per setting (validation subjects only; test subjects are never read).
"""
import json
import sys
import time

import torch

from mribench.curve import validation_psnr
from mribench.data import load_task_data
from mribench.plugins import registry
from mribench.runner import RunRequest, plan
from mribench_copedit.presets import PRESETS

task_name, runs = sys.argv[1], sys.argv[2]
settings = dict(kv.split("=", 1) for kv in sys.argv[3:])
the_plan = plan(RunRequest(method="copedit", task=task_name, preset="cpu", seed=0, out=runs))
data = load_task_data(the_plan.task, registry().dataset(the_plan.task.dataset), None)
checkpoint = the_plan.model_root(data) / "copedit" / "cpu-seed0" / "model.pt"
method = the_plan.method_cls.load(checkpoint, PRESETS["cpu"], 0, the_plan.task)
one_sample = method.synthesize


def report(**setting) -> None:
    started = time.time()
    psnr = validation_psnr(method, the_plan.task, data.validation, 0)
    print(json.dumps({"task": task_name, **setting, "validation_psnr": round(psnr, 3),
                      "seconds": round(time.time() - started, 1)}), flush=True)


def counts(key: str) -> list[int]:
    """The comma-separated integers of ``key=...`` on the command line (none when absent)."""
    return [int(value) for value in settings.get(key, "").split(",") if value]


for steps in counts("ddim"):
    method.config = PRESETS["cpu"].with_diffusion(sample_steps=steps)  # synthesis reads sample_steps from here
    report(sample_steps=steps)
method.config = PRESETS["cpu"]
for k in counts("average"):
    method.synthesize = lambda batch, k=k: torch.stack([one_sample(batch) for _ in range(k)]).mean(0)
    report(samples_averaged=k)
