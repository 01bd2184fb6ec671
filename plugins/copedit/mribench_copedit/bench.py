"""CoPeDiT's speed benchmarks for ``mribench bench`` (registered by ``mribench_copedit.plugin``).

- ``mdit3d-b`` / ``mdit3d-c``: a training step (forward + backward, batch 1, fp32) at the paper's latents as a
  fraction of the fp32 GEMM rate measured in the same run (model FLOPs counted by torch's ``FlopCounterMode``, plus
  the attention products of the CPU attention kernel, which it does not count: ``attention_flop_formulas``).
  The authors' released code reaches 0.66 (B) and 0.59 (C) here (counted without attention); the goal is 0.80.
- ``attention``: factorised (Spatial + Modal) against full 3D attention, two MDiT3D-B-wide blocks at the paper's
  token count and at 2x and 4x the tokens.
- ``stage2``: a stage-II training step on cached latents against the same step re-running the frozen tokenizer on
  every sample as the authors' code does (7 volume encodes per sample).
- ``ddim``: synthesis latency per volume (batch 1, fp32), from the presets themselves.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mribench.bench import Benchmark, BenchSettings, Figure, Goal, interleaved_times, ratios
from mribench_copedit.mdit3d import MDIT3D_PRESETS, MDiT3D, MDiT3DConfig, MDiTBlock

GEMM_SHAPE = (2304, 768, 3072)  # tokens x hidden -> 4 x hidden: a transformer-like fp32 GEMM
PHANTOM_SHAPE = (32, 96, 96)
ENCODES_PER_SAMPLE = 7  # the authors' stage II: complete, zero-filled and the pretext views, each through the encoder


def attention_flop_formulas() -> dict[object, Callable[..., int]]:
    """``FlopCounterMode`` mappings for the fused attention kernel ``scaled_dot_product_attention`` runs on CPU
    (torch counts its GPU kernels only): the model FLOPs of the two matrix products ``QK^T`` and ``AV``, i.e.
    ``2 * b * h * s_q * s_k * (d_qk + d_v)`` forward and twice that backward (the gradients of both products, as
    the explicit-matmul attention counts; never the kernel's recomputation). Arguments arrive as shapes."""
    def products(query: torch.Size, key: torch.Size, value: torch.Size) -> int:
        return 2 * math.prod(query[:-1]) * key[-2] * (query[-1] + value[-1])

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return products(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return 2 * products(query, key, value)

    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step``, attention included (``attention_flop_formulas``)."""
    with FlopCounterMode(display=False, custom_mapping=attention_flop_formulas()) as counter:
        step()
    return counter.get_total_flops()


def gemm_call(tiny: bool) -> tuple[Callable[[], object], int]:
    """Five fp32 GEMMs and their FLOP count."""
    tokens, inner, outer = (256, 64, 256) if tiny else GEMM_SHAPE
    a, b = torch.randn(tokens, inner), torch.randn(inner, outer)
    return (lambda: [a @ b for _ in range(5)]), 5 * 2 * tokens * inner * outer


class MDiT3DStepBenchmark(Benchmark):
    """A training step of one MDiT3D size over the same-run fp32 GEMM rate (a subclass fixes size and latents)."""

    size: str
    layout: str
    latent_shape: tuple[int, int, int, int, int]
    reference: float

    def run(self, settings: BenchSettings) -> list[Figure]:
        size, shape = ("MDiT3D-T", (self.latent_shape[0], 2, 2, 8, 8)) if settings.tiny else (self.size,
                                                                                              self.latent_shape)
        torch.manual_seed(0)
        model = MDiT3D(MDiT3DConfig(size=size, layout=self.layout), shape)
        latents, timesteps, prompts = torch.randn(1, *shape), torch.tensor([250]), torch.randn(1, 3, 512)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            model(latents, timesteps, prompts).square().mean().backward()

        flops = step_flops(step)
        gemm, gemm_flops = gemm_call(settings.tiny)
        times = interleaved_times({"gemm": gemm, "step": step}, settings.repeats)
        step_rates = [flops / seconds for seconds in times["step"]]
        gemm_rates = [gemm_flops / seconds for seconds in times["gemm"]]
        return [Figure("training step / GEMM", "x", ratios(step_rates, gemm_rates), Goal(">=", 0.80),
                       f"{size}, latents {'x'.join(map(str, shape))}, {flops / 1e12:.3f} TFLOP per step; "
                       f"the authors' code: {self.reference:.2f} (FLOPs without attention)"),
                Figure("training step", "s", tuple(times["step"]))]


class MDiT3DBStepBenchmark(MDiT3DStepBenchmark):
    name = "mdit3d-b"
    summary = "MDiT3D-B training step at the brain latents over the same-run GEMM rate (goal >= 0.80)"
    size, layout, latent_shape, reference = "MDiT3D-B", "modal", (4, 8, 8, 24, 24), 0.66


class MDiT3DCStepBenchmark(MDiT3DStepBenchmark):
    name = "mdit3d-c"
    summary = "MDiT3D-C training step at the cardiac latents over the same-run GEMM rate (goal >= 0.80)"
    size, layout, latent_shape, reference = "MDiT3D-C", "planar", (1, 8, 4, 24, 24), 0.59


class AttentionBenchmark(Benchmark):
    name = "attention"
    summary = "factorised (Spatial + Modal) / full 3D attention, fwd+bwd at 2,304 / 4,608 / 9,216 tokens"
    goals = {1: Goal("<=", 0.7), 4: Goal("<=", 0.5)}  # at the paper's token count and at 4x

    def run(self, settings: BenchSettings) -> list[Figure]:
        dims = MDIT3D_PRESETS["MDiT3D-T" if settings.tiny else "MDiT3D-B"]
        elements, figures = 4, []
        for scale in (1, 2, 4):
            grid = (scale, 3, 3) if settings.tiny else (4 * scale, 12, 12)  # one modality's patch-2 grid, deeper
            torch.manual_seed(0)
            factorised = torch.nn.ModuleList([
                MDiTBlock(dims.hidden, dims.heads, dims.mlp_ratio, ("depth", "plane"), False, "spatial"),
                MDiTBlock(dims.hidden, dims.heads, dims.mlp_ratio, ("element",), True, "modal")])
            full = torch.nn.ModuleList([
                MDiTBlock(dims.hidden, dims.heads, dims.mlp_ratio, ("element", "depth", "plane"), True, "full")
                for _ in range(2)])
            x = torch.randn(1, elements, grid[0] * grid[1] * grid[2], dims.hidden, requires_grad=True)
            condition = torch.randn(1, dims.hidden)
            times = interleaved_times({"factorised": blocks_step(factorised, x, condition, grid),
                                       "full": blocks_step(full, x, condition, grid)}, settings.repeats)
            figures.append(Figure(f"factorised / full at {x.shape[1] * x.shape[2]:,} tokens", "x",
                                  ratios(times["factorised"], times["full"]), self.goals.get(scale),
                                  f"two {'MDiT3D-T' if settings.tiny else 'MDiT3D-B'}-wide blocks, fwd+bwd"))
        return figures


def blocks_step(blocks: torch.nn.ModuleList, x: torch.Tensor, condition: torch.Tensor,
                grid: tuple[int, int, int]) -> Callable[[], None]:
    """Forward + backward through ``blocks`` in sequence."""
    def step() -> None:
        out = x
        for block in blocks:
            out = block(out, condition, grid)
        out.square().mean().backward()
    return step


class Stage2Benchmark(Benchmark):
    name = "stage2"
    summary = "stage-II step re-encoding 7x per sample (the authors' code) / on cached latents, paper brain (>= 20x)"

    def run(self, settings: BenchSettings) -> list[Figure]:
        from mribench.protocol import draw_training_availability
        from mribench_copedit.diffusion import GaussianDiffusion
        from mribench_copedit.method import reference_task
        from mribench_copedit.presets import PRESETS
        from mribench_copedit.prompts import mask_latents
        from mribench_copedit.diffusers import build_network, conditioning
        from mribench_copedit.stage1 import build_tokenizer

        preset = "smoke" if settings.tiny else "paper"
        task = reference_task("missing-modality")
        if settings.tiny:
            task = task.model_copy(update={"preprocess": task.preprocess.model_copy(update={"shape": (16, 48, 48)})})
        stage = PRESETS[preset].brain
        torch.manual_seed(0)
        tokenizer = build_tokenizer(stage.tokenizer, task).eval().requires_grad_(False)
        network = build_network(stage.diffusion, stage.tokenizer, task)
        optimizer = torch.optim.AdamW(network.parameters(), lr=stage.diffusion.lr)
        diffusion = GaussianDiffusion()
        volumes = torch.rand(1, task.channels, *task.preprocess.shape)
        with torch.no_grad():
            cached = tokenizer.encode(volumes)  # what the latent cache holds
        mask = draw_training_availability(np.random.default_rng(0), task, 1)

        def step(latents: torch.Tensor) -> None:
            available = tokenizer.latent_availability(mask)
            with torch.no_grad():
                inputs = conditioning(tokenizer, mask_latents(latents, available), mask, stage.diffusion, task.problem)
            loss = diffusion.training_loss(partial(network, **inputs), latents, available,
                                           torch.Generator().manual_seed(0))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), stage.diffusion.grad_clip)
            optimizer.step()

        def reencoding_step() -> None:
            with torch.no_grad():
                latents = [tokenizer.encode(volumes) for _ in range(ENCODES_PER_SAMPLE)][0]
            step(latents)

        times = interleaved_times({"cached": partial(step, cached), "re-encoding": reencoding_step}, settings.repeats)
        return [Figure("re-encoding / cached step", "x", ratios(times["re-encoding"], times["cached"]),
                       None if settings.tiny else Goal(">=", 20.0),
                       f"preset {preset}, brain {'x'.join(map(str, task.preprocess.shape))}, batch 1"),
                Figure("stage-II step on cached latents", "s", tuple(times["cached"]))]


class DDIMBenchmark(Benchmark):
    name = "ddim"
    summary = "CoPeDiT synthesis latency per volume (batch 1, fp32) of the cpu and paper presets, both problems"

    def run(self, settings: BenchSettings) -> list[Figure]:
        figures = []
        for preset in ("smoke",) if settings.tiny else ("cpu", "paper"):
            for problem in ("missing-modality", "missing-slice"):
                network, step_times, codec_s, steps = ddim_latency(preset, problem, settings.repeats)
                figures.append(Figure(f"{preset} {problem} s/volume", "s",
                                      tuple(step * steps + codec_s for step in step_times),
                                      note=f"{network}, {steps} DDIM steps (one step timed per repeat, "
                                           f"extrapolated) + encode/prompts/decode {codec_s:.2f} s"))
        return figures


@torch.inference_mode()
def ddim_latency(preset: str, problem: str, repeats: int) -> tuple[str, list[float], float, int]:
    """-> (network, seconds of one DDIM step per repeat, seconds of encode + prompts + decode, the preset's DDIM
    steps). The preset's tokenizer and diffuser are built untrained (latency does not depend on the weights) and
    one volume is synthesised as ``copedit`` does; the phantom shape for the non-paper presets."""
    from mribench.protocol import availability_from_missing
    from mribench_copedit.diffusion import GaussianDiffusion
    from mribench_copedit.method import reference_task
    from mribench_copedit.presets import PRESETS
    from mribench_copedit.data import zero_fill
    from mribench_copedit.diffusers import build_network, conditioning
    from mribench_copedit.stage1 import build_tokenizer

    task = reference_task(problem)
    if preset != "paper":
        task = task.model_copy(update={"preprocess": task.preprocess.model_copy(update={"shape": PHANTOM_SHAPE}),
                                       "elements": task.elements if problem == "missing-modality" else 32})
    stage = PRESETS[preset].for_problem(problem)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(stage.tokenizer, task).eval()
    network = build_network(stage.diffusion, stage.tokenizer, task).eval()
    depth = task.preprocess.shape[0]
    mask = torch.from_numpy(availability_from_missing(
        problem, task.channels, depth, [1] if problem == "missing-modality" else depth // 2, run_start=depth // 4))[None]
    image = zero_fill(torch.rand(1, task.channels, *task.preprocess.shape) * 0.9 + 0.05, mask)
    start = time.perf_counter()
    available, availability = tokenizer.available_latents(image)
    inputs = conditioning(tokenizer, available, mask, stage.diffusion, problem)
    tokenizer.decode(available)
    codec_s = time.perf_counter() - start
    diffusion = GaussianDiffusion()
    one_step = partial(diffusion.ddim_sample, partial(network, **inputs), available, availability, 1)
    times = interleaved_times({"step": lambda: one_step(torch.Generator().manual_seed(0))}, repeats)
    return stage.diffusion.network, times["step"], codec_s, stage.diffusion.sample_steps
