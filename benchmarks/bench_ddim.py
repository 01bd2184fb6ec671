"""DDIM latency per volume (batch 1, fp32): seconds per step measured over a few steps, times the preset's steps.

Configurations (stage II of the copedit presets):
- cpu: MDiT3D-S on the phantom tasks' latents (volume 32 x 96 x 96 -> 8 x 4 x 12 x 12 per element), 20 steps;
- paper: MDiT3D-B on BraTS latents (4 x 8 x 8 x 24 x 24), 200 steps; MDiT3D-C on cardiac latents
  (1 x 8 x 4 x 24 x 24), 250 steps.
Each sample re-imposes the observed latents at every step (one missing element / a run of missing latent slices).
The tokenizer's encode/decode is not included.

Usage: python benchmarks/bench_ddim.py [--measure-steps 3] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch

from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.mdit3d import MDiT3DConfig, build_diffuser

CONFIGURATIONS = [
    # preset, problem, size, layout, latent shape (E, c, d, h, w), prompt dim, DDIM steps
    ("cpu", "brain", "MDiT3D-S", "modal", (4, 8, 4, 12, 12), 64, 20),
    ("cpu", "cardiac", "MDiT3D-S", "planar", (1, 8, 4, 12, 12), 64, 20),
    ("paper", "brain", "MDiT3D-B", "modal", (4, 8, 8, 24, 24), 512, 200),
    ("paper", "cardiac", "MDiT3D-C", "planar", (1, 8, 4, 24, 24), 512, 250),
]


def availability_for(latent_shape: tuple[int, ...]) -> torch.Tensor:
    """One missing modality (brain) or the middle latent slices missing (cardiac), as ``(1, E)`` / ``(1, 1, d)``."""
    elements, depth = latent_shape[0], latent_shape[2]
    if elements > 1:
        availability = torch.ones(1, elements, dtype=torch.bool)
        availability[0, 1] = False
        return availability
    availability = torch.ones(1, 1, depth, dtype=torch.bool)
    availability[0, 0, depth // 4: depth // 2] = False
    return availability


@torch.inference_mode()
def seconds_per_step(size: str, layout: str, latent_shape: tuple[int, ...], prompt_dim: int,
                     measure_steps: int) -> float:
    """Wall time of a ``measure_steps``-step DDIM sample of one volume, per step (after a one-step warm-up)."""
    torch.manual_seed(0)
    network = build_diffuser(MDiT3DConfig(size=size, layout=layout, prompt_dim=prompt_dim), latent_shape).eval()
    prompts = torch.randn(1, 3, prompt_dim)
    availability = availability_for(latent_shape)
    observed = torch.randn(1, *latent_shape)
    diffusion = GaussianDiffusion()

    def run(steps: int) -> float:
        start = time.perf_counter()
        diffusion.ddim_sample(lambda x_t, t: network(x_t, t, prompts), observed, availability, steps,
                              generator=torch.Generator().manual_seed(0))
        return time.perf_counter() - start

    run(1)
    return run(measure_steps) / measure_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, fp32")
    print(f"{'preset':>6} {'problem':>8} {'network':>9} {'s/step':>8} {'steps':>6} {'s/volume':>9}")
    for preset, problem, size, layout, latent_shape, prompt_dim, steps in CONFIGURATIONS:
        per_step = seconds_per_step(size, layout, latent_shape, prompt_dim, args.measure_steps)
        print(f"{preset:>6} {problem:>8} {size:>9} {per_step:>8.3f} {steps:>6} {per_step * steps:>9.1f}",
              flush=True)


if __name__ == "__main__":
    main()
