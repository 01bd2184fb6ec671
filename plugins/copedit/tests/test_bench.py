"""CoPeDiT's benchmarks run through `mribench bench` at tiny sizes: each yields its figures, with the goals of the
issue on the ones that have one (the figures' values at tiny sizes say nothing about speed)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from mribench.cli import app

EXPECTED = {
    "mdit3d-b": [("training step / GEMM", "x", {"relation": ">=", "value": 0.8}), ("training step", "s", None)],
    "mdit3d-c": [("training step / GEMM", "x", {"relation": ">=", "value": 0.8}), ("training step", "s", None)],
    "attention": [("factorised / full at 36 tokens", "x", {"relation": "<=", "value": 0.7}),
                  ("factorised / full at 72 tokens", "x", None),
                  ("factorised / full at 144 tokens", "x", {"relation": "<=", "value": 0.5})],
    "stage2": [("re-encoding / cached step", "x", None), ("stage-II step on cached latents", "s", None)],
    "ddim": [("smoke missing-modality s/volume", "s", None), ("smoke missing-slice s/volume", "s", None)],
}


def test_copedit_benchmarks_run_at_tiny_sizes_and_write_their_figures(tmp_path):
    target = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", *EXPECTED, "--tiny", "--repeats", "2", "--json", str(target)])
    assert result.exit_code == 0, result.output
    benchmarks = json.loads(target.read_text())["benchmarks"]
    assert list(benchmarks) == list(EXPECTED)
    for name, expected in EXPECTED.items():
        figures = benchmarks[name]["figures"]
        assert [(f["name"], f["unit"], f["goal"]) for f in figures] == expected, name
        for figure in figures:
            assert len(figure["samples"]) == 2 and all(value > 0 for value in figure["samples"]), (name, figure)


def test_step_flops_count_the_cpu_attention_kernel_as_the_explicit_matmul_attention():
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from mribench_copedit.bench import step_flops

    torch.manual_seed(0)
    query = torch.randn(2, 3, 5, 8, requires_grad=True)
    key, value = (torch.randn(2, 3, 7, 8, requires_grad=True) for _ in range(2))

    def step() -> None:
        F.scaled_dot_product_attention(query, key, value).square().sum().backward()

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as reference:  # torch counts its bmm calls
        step()
    # QK^T and AV forward (2 * 2*3*5*7*8 each), twice that backward
    assert reference.get_total_flops() == 3 * 2 * (2 * 2 * 3 * 5 * 7 * 8)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # the fused CPU kernel
        assert step_flops(step) == reference.get_total_flops()
