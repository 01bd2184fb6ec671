"""LDM `cpu` diagnosis: what the denoiser predicts, how long it and the autoencoder train, on validation subjects.

Usage: python benchmarks/ldm_prediction_check.py NAME [field=python-literal | autoencoder.field=python-literal ...]
e.g.   python benchmarks/ldm_prediction_check.py x2400 prediction='"sample"' steps=2400
       python benchmarks/ldm_prediction_check.py ae600 autoencoder.steps=600

Fits `ldm` on phantom-brats-missing1's training subjects with the `cpu` preset changed by the given fields, into
benchmarks/sweep-runs/ldm-NAME (resumable). Runs whose autoencoder configs are equal reuse one autoencoder,
benchmarks/sweep-runs/ldm-autoencoder-<its config hash>.pt (trained by the first of them), so they differ only in
the diffusion stage.
Prints the autoencoder's reconstruction PSNR (whole volumes, first 8 validation subjects) and the validation PSNR of
the missing modality as `mribench curve` scores it. Test subjects are never read. SWEEP_THREADS sets the torch
threads (default 2).
"""
import ast
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from mribench.curve import validation_psnr
from mribench.data import load_task_data
from mribench.method import config_hash
from mribench.plugins import registry
from mribench.tasks import get_task
from mribench.training import seed_everything
from mribench_baselines.latent import decode, encode

torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "2")))
OUT = Path(__file__).resolve().parent / "sweep-runs"
name = sys.argv[1]
fields = [kv.split("=", 1) for kv in sys.argv[2:]]
changes = {k: ast.literal_eval(v) for k, v in fields if not k.startswith("autoencoder.")}
autoencoder_changes = {k.removeprefix("autoencoder."): ast.literal_eval(v) for k, v in fields
                       if k.startswith("autoencoder.")}
task = get_task("phantom-brats-missing1")
registry_ = registry()
method_cls = registry_.method("ldm")
preset = method_cls.presets["cpu"]
config = dataclasses.replace(preset, autoencoder=dataclasses.replace(preset.autoencoder, **autoencoder_changes),
                             **changes)
data = load_task_data(task, registry_.dataset(task.dataset), None)
work = OUT / f"ldm-{name}"
work.mkdir(parents=True, exist_ok=True)
shared_autoencoder = OUT / f"ldm-autoencoder-{config_hash(config.autoencoder)[:12]}.pt"
if shared_autoencoder.exists() and not (work / "autoencoder.pt").exists():
    shutil.copy(shared_autoencoder, work / "autoencoder.pt")
seed_everything(0)
method = method_cls(config, seed=0)
started = time.time()
with Progress(disable=True) as progress:
    method.fit(data.train, task, work, progress)
fit_seconds = time.time() - started
if not shared_autoencoder.exists():
    shutil.copy(work / "autoencoder.pt", shared_autoencoder)
reconstruction = []
for subject in list(data.validation)[:8]:
    image = torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]
    with torch.no_grad():
        restored = decode(method.autoencoder, encode(method.autoencoder, image, task.problem), task.problem)
    reconstruction.append(10 * np.log10(1 / ((restored.clamp(0, 1) - image) ** 2).mean().item()))
print(f"{name}: {changes} {autoencoder_changes} fit {fit_seconds / 60:.1f} min, autoencoder reconstruction "
      f"{np.mean(reconstruction):.2f} dB, validation PSNR {validation_psnr(method, task, data.validation, 0):.2f} dB")
