"""CoPeDiT stage II: one training step on cached latents vs the same step re-running the tokenizer per sample.

mribench encodes every training subject once per flip variant and trains stage II on the cached latents; the prompt
encoders (light 3D convs) read the cached latents of the sampled pattern's available elements. The authors' released
code instead re-runs the frozen tokenizer on every sample of every step (7 volume encodes per sample). Both steps
below are the same step (same network, batch, conditioning, loss, backward and optimiser update); the second adds
the 7 encodes per sample, under ``no_grad`` as a frozen tokenizer would run. Measured side by side in one run; the
goal is a ratio >= 20x at the paper brain size (CoPeVAE-B + MDiT3D-B, BraTS shape 64 x 192 x 192).

Usage: python benchmarks/bench_stage2.py [--preset paper|cpu] [--batch 1] [--repeats 2] [--threads N]
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch

from mribench.protocol import sample_training_mask
from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.method import reference_task
from mribench_copedit.presets import PRESETS
from mribench_copedit.prompts import mask_latents
from mribench_copedit.trainer import build_network, build_tokenizer, conditioning

ENCODES_PER_SAMPLE = 7  # the authors' code: complete, zero-filled and the pretext views, each through the encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=["paper", "cpu"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = reference_task("missing-modality")
    if args.preset == "cpu":
        task = task.model_copy(update={"preprocess": task.preprocess.model_copy(update={"shape": (32, 96, 96)})})
    settings = PRESETS[args.preset].brain
    tokenizer = build_tokenizer(settings.tokenizer, task).eval().requires_grad_(False)
    network = build_network(settings.diffusion, settings.tokenizer, task)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.diffusion.lr)
    diffusion = GaussianDiffusion()
    volumes = torch.rand(args.batch, task.channels, *task.preprocess.shape)
    with torch.no_grad():
        cached = tokenizer.encode(volumes)  # what the latent cache holds
    mask = sample_training_mask(np.random.default_rng(0), task, args.batch)

    def step(latents: torch.Tensor) -> None:
        available = tokenizer.latent_availability(mask)
        with torch.no_grad():
            inputs = conditioning(tokenizer, mask_latents(latents, available), mask, settings.diffusion, task.problem)
        loss = diffusion.training_loss(partial(network, **inputs), latents, available, torch.Generator().manual_seed(0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), settings.diffusion.grad_clip)
        optimizer.step()

    def cached_step() -> None:
        step(cached)

    def reencoding_step() -> None:
        with torch.no_grad():
            latents = [tokenizer.encode(volumes) for _ in range(ENCODES_PER_SAMPLE)][0]
        step(latents)

    timings: dict[str, list[float]] = {"cached": [], "re-encoding": []}
    cached_step()  # warm-up
    for _ in range(args.repeats):
        for name, function in (("cached", cached_step), ("re-encoding", reencoding_step)):
            start = time.perf_counter()
            function()
            timings[name].append(time.perf_counter() - start)
    cached_s, reencoding_s = (float(np.median(timings[k])) for k in ("cached", "re-encoding"))
    print(f"torch {torch.__version__}, {args.threads} threads, preset {args.preset}, brain {task.preprocess.shape}, "
          f"batch {args.batch}, {args.repeats} repeats (median)")
    print(f"stage II step on cached latents: {cached_s:.2f} s (min {min(timings['cached']):.2f}, "
          f"max {max(timings['cached']):.2f})")
    print(f"same step re-encoding {ENCODES_PER_SAMPLE}x per sample: {reencoding_s:.2f} s "
          f"(min {min(timings['re-encoding']):.2f}, max {max(timings['re-encoding']):.2f})")
    print(f"ratio: {reencoding_s / cached_s:.1f}x (goal >= 20x at the paper size)")


if __name__ == "__main__":
    main()
