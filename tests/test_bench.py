"""`mribench bench`: the figures, the ratio table, the JSON a release keeps, and bad input refused before any work."""
from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from mribench.bench import BenchSettings, Figure, Goal, bench_rows, ratios
from mribench.cli import app
from mribench.errors import MribenchError


def test_a_figure_is_judged_on_its_median():
    figure = Figure("step / GEMM", "x", (0.9, 0.7, 0.85, 0.6, 0.82), Goal(">=", 0.8))
    assert figure.median == 0.82  # sorted: 0.6 0.7 0.82 0.85 0.9
    assert figure.met is True
    assert Figure("t", "s", (1.2, 0.9, 1.1), Goal("<=", 1.0)).met is False  # median 1.1
    assert Figure("t", "s", (1.2,)).met is None
    row = next(bench_rows({"mdit3d-c": [figure]}))
    assert row == ("mdit3d-c", "step / GEMM", "0.82x", "0.6x", "0.9x", ">= 0.8", "yes")


def test_ratios_pair_the_repeats_and_settings_refuse_zero_repeats():
    assert ratios([2.0, 9.0], [1.0, 3.0]) == (2.0, 3.0)
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])
    with pytest.raises(MribenchError, match="--repeats 0"):
        BenchSettings(repeats=0)
    with pytest.raises(ValueError):
        Goal("==", 1.0)


def test_bench_runs_the_cheapest_benchmark_and_writes_its_json(tmp_path):
    target = tmp_path / "history" / "bench.json"
    result = CliRunner().invoke(app, ["bench", "ssim", "--tiny", "--repeats", "3", "--threads", "1",
                                      "--json", str(target)])
    assert result.exit_code == 0, result.output
    assert "others / mribench" in result.output and ">= 3" in result.output
    data = json.loads(target.read_text())
    assert data["machine"]["cores"] == os.cpu_count() and data["machine"]["cpu"]
    assert data["machine"]["threads"] == 1 and data["machine"]["torch"].split("+")[0].count(".") == 2
    assert data["repeats"] == 3 and data["tiny"] is True
    assert len(data["load_average_1_5_15min"]["before"]) == 3
    assert list(data["benchmarks"]) == ["ssim"]
    ratio, seconds = data["benchmarks"]["ssim"]["figures"]
    assert ratio["name"] == "others / mribench" and ratio["unit"] == "x"
    assert ratio["goal"] == {"relation": ">=", "value": 3.0}
    assert len(ratio["samples"]) == 3 and ratio["min"] <= ratio["median"] <= ratio["max"]
    assert ratio["met"] == (ratio["median"] >= 3.0)
    assert seconds["unit"] == "s" and seconds["goal"] is None and all(s > 0 for s in seconds["samples"])
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert [p.name for p in target.parent.iterdir()] == ["bench.json"]  # no temp file left


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("arguments, message", [
    (["bench", "sssim"], "sssim"),
    (["bench", "ssim", "--repeats", "0"], "--repeats 0"),
    (["bench", "ssim", "--threads", "0"], "--threads 0"),
])
def test_bad_input_is_one_line_and_exit_2(arguments, message):
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert "running" not in result.output


def test_a_json_path_that_is_a_folder_is_refused_before_any_benchmark_runs(tmp_path):
    result = CliRunner().invoke(app, ["bench", "ssim", "--json", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output and "running" not in result.output


def test_list_names_every_benchmark_of_the_issue():
    result = CliRunner().invoke(app, ["bench", "--list"])
    assert result.exit_code == 0
    names = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    assert names == {"mdit3d-b", "mdit3d-c", "stage2", "attention", "ddim", "ssim", "cache", "phantoms"}
