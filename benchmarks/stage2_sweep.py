"""CoPeDiT stage-II sweep: train the cpu diffuser with some fields changed behind an already trained tokenizer, and
score validation PSNR along the way.

Usage: python benchmarks/stage2_sweep.py NAME RUNS [task=phantom-brats-missing3] [points=4] [field=python-literal ...]
e.g.   python benchmarks/stage2_sweep.py lr1e-3 runs/leaderboard lr=1e-3
       python benchmarks/stage2_sweep.py w128 runs/leaderboard "size=(128, 4, 4, 2)"
       python benchmarks/stage2_sweep.py tok6400 runs/tok6400 tokenizer.steps=6400 tokenizer.adversarial_start=4800

RUNS is a runs folder in which ``mribench run --method copedit`` (or ``mribench curve``) trained the task's dataset at
the cpu preset, seed 0: its stage-I tokenizer (``_models/<dataset>-.../shared``) is read, never retrained, so every
row of the sweep sits behind the same tokenizer. Fields are ``DiffusionStageConfig`` fields of the task's problem;
``size=(hidden, depth, heads, patch)`` registers an MDiT3D size for this process only (``MDiT3D-sweep``).
``tokenizer.FIELD=value`` changes a ``TokenizerConfig`` field instead: the tokenizer RUNS holds must have been trained
with that configuration (e.g. by ``benchmarks/tokenizer_sweep.py``, its files copied into the tokenizer folder), or
stage I refuses it; this measures what a longer or wider stage I is worth to the synthesis.

Trains on the protocol's training subjects into benchmarks/sweep-runs/stage2/<task>/NAME (resumable), scores the mean
PSNR of the missing elements on the task's validation subjects at ``points`` evenly spaced steps, and appends one JSON
line (the points, fit minutes, parameters, load) to benchmarks/sweep-runs/stage2/results.jsonl. A killed run resumes
from its checkpoint but scores only the points after the resume. Test subjects are never read.
"""
import ast
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from mribench.curve import score_steps, validation_psnr
from mribench.data import load_task_data
from mribench.method import StepHook
from mribench.plugins import registry
from mribench.protocol import derive_seed
from mribench.runner import RunRequest, plan
from mribench.training import seed_everything
from mribench_copedit.mdit3d import MDIT3D_PRESETS, MDiT3DSize
from mribench_copedit.presets import PRESETS

OUT = Path(__file__).resolve().parent / "sweep-runs" / "stage2"
name, runs = sys.argv[1], Path(sys.argv[2])
changes, tokenizer_changes = {}, {}
for kv in sys.argv[3:]:
    key, value = kv.split("=", 1)
    if key.startswith("tokenizer."):
        tokenizer_changes[key.removeprefix("tokenizer.")] = ast.literal_eval(value)
    else:
        changes[key] = value if key == "task" else ast.literal_eval(value)
task_name = changes.pop("task", "phantom-brats-missing3")
points = changes.pop("points", 4)
if "size" in changes:
    hidden, depth, heads, patch = changes.pop("size")
    MDIT3D_PRESETS["MDiT3D-sweep"] = MDiT3DSize(hidden=hidden, depth=depth, heads=heads, patch=patch)
    changes["network"] = "MDiT3D-sweep"

the_plan = plan(RunRequest(method="copedit", task=task_name, preset="cpu", seed=0, out=runs))
task = the_plan.task
base = PRESETS["cpu"]
problem = base.for_problem(task.problem)
config = dataclasses.replace(base, **{"brain" if task.problem == "missing-modality" else "cardiac": dataclasses.replace(
    problem, diffusion=dataclasses.replace(problem.diffusion, **changes),
    tokenizer=dataclasses.replace(problem.tokenizer, **tokenizer_changes))})
data = load_task_data(task, registry().dataset(task.dataset), None)
shared = the_plan.model_root(data) / "shared"
if not (shared / "copedit-tokenizer").exists():
    sys.exit(f"{shared}: no trained copedit tokenizer; run `mribench run --method copedit --task {task_name} "
             f"--out {runs}` first")
steps = config.for_problem(task.problem).diffusion.steps
method = the_plan.method_cls(config, seed=0)
method.shared_dir = shared
method.validation = data.validation
scored = {}
method.step_hook = StepHook(frozenset(score_steps(steps, points, steps)),
                            lambda step, seconds: scored.update({step: (round(seconds / 60, 2), round(
                                validation_psnr(method, task, data.validation, 0), 3))}))
load_before = os.getloadavg()[0]
started = time.time()
seed_everything(derive_seed("fit", 0))
method.fit(data.train, task, OUT / task_name / name, None)
row = {"name": name, "task": task_name, "changes": {k: str(v) for k, v in changes.items()}
       | {f"tokenizer.{k}": str(v) for k, v in tokenizer_changes.items()}, "steps": steps,
       "validation_psnr": {step: psnr for step, (_, psnr) in sorted(scored.items())},
       "training_min": {step: minutes for step, (minutes, _) in sorted(scored.items())},
       "diffuser_parameters": sum(p.numel() for p in method.network.parameters()),
       "wall_min": round((time.time() - started) / 60, 2), "load_1min": [load_before, os.getloadavg()[0]],
       "threads": int(os.environ.get("OMP_NUM_THREADS", "0")), "tokenizer": method.training_report["tokenizer"]}
print(json.dumps(row))
OUT.mkdir(parents=True, exist_ok=True)
with open(OUT / "results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
