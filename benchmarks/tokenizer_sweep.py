"""CoPeDiT stage-I sweep: train the cpu tokenizer with some fields changed, score it on validation subjects.

Usage: python benchmarks/tokenizer_sweep.py NAME [task=phantom-brats-missing3] [field=python-literal ...]
e.g.   python benchmarks/tokenizer_sweep.py w32_3200 steps=3200 adversarial_start=2400 "channels=(16,32,32)"

Trains on the protocol's training subjects into benchmarks/sweep-runs/NAME (resumable) and appends one JSON line
(reconstruction PSNR/SSIM and pretext accuracies on the first 8 validation subjects, fit minutes, parameters) to
benchmarks/sweep-runs/results.jsonl. Test subjects are never read. SWEEP_THREADS sets the torch threads (default 2).
"""
import ast
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
import torch
from mribench.tasks import get_task
from mribench.data import load_task_data
from mribench.plugins import registry
from mribench_copedit.presets import PRESETS
from mribench_copedit.data import TrainImages
from mribench_copedit.stage1 import tokenizer_report, train_tokenizer

torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "2")))  # 1 beside other jobs
OUT = Path(__file__).resolve().parent / "sweep-runs"
name = sys.argv[1]
changes = {}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    changes[k] = ast.literal_eval(v) if k != "task" else v
task_name = changes.pop("task", "phantom-brats-missing3")
task = get_task(task_name)
cfg = PRESETS["cpu"].for_problem(task.problem).tokenizer
cfg = dataclasses.replace(cfg, report_subjects=8, **changes)
data = load_task_data(task, registry().dataset(task.dataset), None)
images = TrainImages(data.train, task)
val = TrainImages(data.validation, task)
folder = OUT / name
t0 = time.time()
model, _ = train_tokenizer(cfg, task, images, folder, seed=0)
fit = time.time() - t0
report = tokenizer_report(model, task, val, 0)
params = sum(p.numel() for p in model.parameters())
row = {"name": name, "task": task_name, "changes": {k: str(v) for k, v in changes.items()}, "steps": cfg.steps,
       "fit_min": round(fit / 60, 2), "params": params, **report}
print(json.dumps(row))
with open(OUT / "results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
