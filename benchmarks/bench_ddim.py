"""CoPeDiT synthesis latency per volume (batch 1, fp32), from the presets themselves.

For each preset (cpu on the phantom shape 32 x 96 x 96, paper on the paper's shapes) and problem, the preset's
tokenizer and diffuser are built untrained (latency does not depend on the weights) and one volume is synthesised
as ``copedit`` does: encode the zero-filled input, prompts from its available latents, DDIM with the observed latents
re-imposed at every step, decode. The DDIM loop is timed over ``--measure-steps`` steps after a one-step warm-up and
extrapolated to the preset's step count; encode + prompts + decode are timed once.

Usage: python benchmarks/bench_ddim.py [--measure-steps 2] [--threads N] [--presets cpu,paper]
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from mribench.protocol import availability_for_missing
from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.method import reference_task
from mribench_copedit.presets import PRESETS
from mribench_copedit.trainer import build_network, build_tokenizer, conditioning, zero_fill

PHANTOM_SHAPE = (32, 96, 96)


@torch.inference_mode()
def latency(preset: str, problem: str, measure_steps: int) -> tuple[str, float, float, int]:
    """-> (network, seconds per DDIM step, seconds of encode + prompts + decode, DDIM steps of the preset)."""
    task = reference_task(problem)
    if preset != "paper":
        task = task.model_copy(update={"preprocess": task.preprocess.model_copy(update={"shape": PHANTOM_SHAPE}),
                                       "elements": task.elements if problem == "missing-modality" else 32})
    settings = PRESETS[preset].for_problem(problem)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(settings.tokenizer, task).eval()
    network = build_network(settings.diffusion, settings.tokenizer, task).eval()
    depth = task.preprocess.shape[0]
    mask = availability_for_missing(problem, task.channels, depth, [1] if problem == "missing-modality" else depth // 2,
                                    run_start=depth // 4)
    image = zero_fill(torch.rand(1, task.channels, *task.preprocess.shape) * 0.9 + 0.05, torch.from_numpy(mask)[None])
    start = time.perf_counter()
    available, availability = tokenizer.available_latents(image)
    inputs = conditioning(tokenizer, available, torch.from_numpy(mask)[None], settings.diffusion, problem)
    tokenizer.decode(available)
    codec_s = time.perf_counter() - start
    diffusion = GaussianDiffusion()

    def ddim(steps: int) -> float:
        began = time.perf_counter()
        diffusion.ddim_sample(partial(network, **inputs), available, availability, steps, torch.Generator().manual_seed(0))
        return time.perf_counter() - began

    ddim(1)
    return settings.diffusion.network, ddim(measure_steps) / measure_steps, codec_s, settings.diffusion.sample_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--presets", default="cpu,paper")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, fp32")
    print(f"{'preset':>6} {'problem':>16} {'network':>16} {'s/step':>8} {'steps':>6} {'codec s':>8} {'s/volume':>9}")
    for preset in args.presets.split(","):
        for problem in ("missing-modality", "missing-slice"):
            network, per_step, codec_s, steps = latency(preset, problem, args.measure_steps)
            print(f"{preset:>6} {problem:>16} {network:>16} {per_step:>8.3f} {steps:>6} {codec_s:>8.2f} "
                  f"{per_step * steps + codec_s:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
