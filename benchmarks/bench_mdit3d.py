"""MDiT3D speed on this machine, as ratios measured in one run (no assertions).

1. MDiT3D-B training step (forward + backward, batch 1, fp32, paper brain latents 4 x 8 x 8 x 24 x 24): model FLOPs
   (counted by torch's FlopCounterMode) / step time, against the fp32 GEMM GFLOP/s measured in the same run.
   Goal: >= 80 % of GEMM. Reference: the authors' implementation reaches 66 % here. The same for the cardiac
   MDiT3D-C (1 x 8 x 4 x 24 x 24; reference 59 %).
2. Factorised Spatial + Modal attention vs full 3D attention over all tokens: forward + backward time of two
   MDiT3D-B-wide blocks of each kind at the paper's token count (4 modalities x 576) and at 2x and 4x the tokens.

Usage: python benchmarks/bench_mdit3d.py [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from mribench_copedit.mdit3d import MDIT3D_PRESETS, MDiT3D, MDiT3DConfig, MDiTBlock

BRAIN_LATENT = (4, 8, 8, 24, 24)
CARDIAC_LATENT = (1, 8, 4, 24, 24)


def interleaved_best(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each function, the functions run in turn so load changes hit all of them alike."""
    for function in functions.values():
        function()                              # warm-up: allocator, kernels
    best = dict.fromkeys(functions, math.inf)
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def gemm_function() -> tuple[Callable[[], object], float]:
    """fp32 GEMMs at a transformer-like shape (2304 tokens x 768 -> 3072) and their FLOP count."""
    a, b = torch.randn(2304, 768), torch.randn(768, 3072)
    return (lambda: [a @ b for _ in range(5)]), 5 * 2 * 2304 * 768 * 3072


def training_step_efficiency(size: str, layout: str, latent_shape: tuple[int, ...], repeats: int,
                             reference: float) -> None:
    torch.manual_seed(0)
    model = MDiT3D(MDiT3DConfig(size=size, layout=layout), latent_shape)
    latents, timesteps, prompts = torch.randn(1, *latent_shape), torch.tensor([250]), torch.randn(1, 3, 512)

    def step():
        model.zero_grad(set_to_none=True)
        model(latents, timesteps, prompts).square().mean().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    gemm, gemm_flops = gemm_function()
    best = interleaved_best({"gemm": gemm, "step": step}, repeats)
    achieved, gemm_rate = flops / best["step"] / 1e9, gemm_flops / best["gemm"] / 1e9
    print(f"{size} training step (fwd+bwd, batch 1, fp32): {flops / 1e12:.3f} TFLOP in {best['step']:.2f} s "
          f"= {achieved:.0f} GFLOP/s", flush=True)
    print(f"  fp32 GEMM on this machine, same run (interleaved): {gemm_rate:.0f} GFLOP/s")
    print(f"  ratio model / GEMM: {achieved / gemm_rate:.2f}   (goal >= 0.80; reference implementation "
          f"{reference:.2f})",
          flush=True)


def attention_ratio(repeats: int) -> None:
    dims = MDIT3D_PRESETS["MDiT3D-B"]
    print("Factorised (Spatial + Modal) vs full 3D attention, two MDiT3D-B blocks, fwd+bwd, batch 1:")
    print(f"  {'tokens':>7}  {'factorised s':>12}  {'full s':>8}  {'ratio':>6}")
    for scale in (1, 2, 4):
        grid = (4 * scale, 12, 12)              # patch-2 grid of one modality, deeper for more tokens
        elements, tokens = BRAIN_LATENT[0], grid[0] * grid[1] * grid[2]
        torch.manual_seed(0)
        factorised = torch.nn.ModuleList([
            MDiTBlock(dims.hidden, dims.heads, dims.mlp_ratio, ("depth", "plane"), False, "spatial"),
            MDiTBlock(dims.hidden, dims.heads, dims.mlp_ratio, ("element",), True, "modal")])
        full = torch.nn.ModuleList([
            MDiTBlock(dims.hidden, dims.heads, dims.mlp_ratio, ("element", "depth", "plane"), True, "full")
            for _ in range(2)])
        x = torch.randn(1, elements, tokens, dims.hidden, requires_grad=True)
        condition = torch.randn(1, dims.hidden)

        best = interleaved_best({"factorised": blocks_step(factorised, x, condition, grid),
                                 "full": blocks_step(full, x, condition, grid)}, repeats)
        print(f"  {elements * tokens:>7}  {best['factorised']:>12.3f}  {best['full']:>8.3f}  "
              f"{best['factorised'] / best['full']:>6.2f}", flush=True)


def blocks_step(blocks: torch.nn.ModuleList, x: torch.Tensor, condition: torch.Tensor,
                grid: tuple[int, int, int]) -> Callable[[], None]:
    """Forward + backward through ``blocks`` in sequence."""
    def step() -> None:
        out = x
        for block in blocks:
            out = block(out, condition, grid)
        out.square().mean().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads", flush=True)
    training_step_efficiency("MDiT3D-B", "modal", BRAIN_LATENT, args.repeats, reference=0.66)
    training_step_efficiency("MDiT3D-C", "planar", CARDIAC_LATENT, args.repeats, reference=0.59)
    attention_ratio(args.repeats)


if __name__ == "__main__":
    main()
