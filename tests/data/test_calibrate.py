"""``mribench data calibrate``: the floors scored on the phantom twins and on the real cases of ../shared/data."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from mribench.calibrate import floor_scores, missing_patterns
from mribench.cli import app
from mribench.data.base import Subject
from mribench.tasks import get_task

cli = CliRunner()
ROW = re.compile(r"^\| (cardiac|brain) \| ([a-z-]+) \| (\d+) \| (-?\d+\.\d\d) \| (-?\d+\.\d\d) \| ([+-]\d+\.\d\d) \| "
                 r"(yes|NO) \|$")


def ramp_subject(depth: int, step: float) -> Subject:
    """A stack whose slice d is uniformly ``0.1 + step * d``."""
    values = 0.1 + step * np.arange(depth, dtype=np.float32)
    return Subject("ramp", np.broadcast_to(values[None, :, None, None], (1, depth, 4, 4)).copy(), np.eye(4))


def expected_mean_available_db(depth: int, step: float, missing: int) -> float:
    """Mean over run starts of the mean per-slice PSNR of filling a run with the mean of its two bordering slices
    (the one observed neighbour at an edge of the stack), computed from the ramp's values directly."""
    values = 0.1 + step * np.arange(depth)
    per_start = []
    for start in range(depth - missing + 1):
        before = values[start - 1] if start > 0 else None
        after = values[start + missing] if start + missing < depth else None
        fill = after if before is None else before if after is None else (before + after) / 2
        per_start.append(np.mean([10 * math.log10(1 / (fill - values[d]) ** 2)
                                  for d in range(start, start + missing)]))
    return float(np.mean(per_start))


def test_every_run_start_and_every_modality_choice_is_a_pattern():
    cardiac, brain = get_task("phantom-cardiac-missing8"), get_task("phantom-brats-missing1")
    runs = missing_patterns(cardiac, 24)
    assert len(runs) == 32 - 24 + 1
    assert [int(np.argmin(mask[0])) for mask in runs] == list(range(9))
    assert all((~mask).sum() == 24 for mask in runs)
    pairs = missing_patterns(brain, 2)
    assert sorted(tuple(np.flatnonzero(~mask.all(axis=1))) for mask in pairs) == [
        (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_floor_scores_match_an_independent_computation_on_a_ramp(tmp_path):
    task = get_task("phantom-cardiac-missing8")
    subject = ramp_subject(32, 0.02)
    scores = floor_scores("mean-available", task, [subject], (8, 16), tmp_path)
    for k in (8, 16):
        assert scores[k] == pytest.approx(expected_mean_available_db(32, 0.02, k), abs=1e-3)
    # slice-interp is exact on a ramp inside the stack, and copies the neighbour at the edges
    interpolated = floor_scores("slice-interp", task, [subject], (8,), tmp_path)[8]
    assert interpolated > scores[8] + 10


def test_calibrate_prints_the_phantom_and_the_real_column(shared_data):
    result = cli.invoke(app, ["data", "calibrate", "--real-data", str(shared_data), "--subjects", "1"])
    assert result.exit_code == 0, result.output
    rows = [ROW.match(line).groups() for line in result.stdout.splitlines() if ROW.match(line)]
    assert {(twin, floor, int(k)) for twin, floor, k, *_ in rows} == {
        *(("cardiac", floor, k) for floor in ("slice-interp", "mean-available") for k in (8, 16, 24)),
        *(("brain", floor, k) for floor in ("mean-available", "nearest-contrast") for k in (1, 2, 3))}
    for *_, phantom, real, difference, within in rows:
        assert 5.0 < float(phantom) < 60.0 and 5.0 < float(real) < 60.0
        assert float(difference) == pytest.approx(float(phantom) - float(real), abs=0.011)
        assert (within == "yes") == (abs(float(difference)) <= 1.5)
    assert "real = 4 (SCD0000101_ed, SCD0000101_es, SCD0000201_ed, SCD0000201_es)" in result.stdout
    assert "real = 1 (TCGA-DU-7294)" in result.stdout


def test_calibrate_refuses_a_missing_folder_or_an_unknown_twin_in_one_line(tmp_path):
    absent = cli.invoke(app, ["data", "calibrate", "--real-data", str(tmp_path / "nowhere")])
    assert absent.exit_code == 2 and "real data folder not found" in absent.output
    assert len(absent.output.strip().splitlines()) == 1 and "Traceback" not in absent.output
    (tmp_path / "cardiac").mkdir()
    empty = cli.invoke(app, ["data", "calibrate", "--real-data", str(tmp_path), "--twin", "cardiac"])
    assert empty.exit_code == 2 and "no real short-axis stacks" in empty.output
    unknown = cli.invoke(app, ["data", "calibrate", "--real-data", str(tmp_path), "--twin", "liver"])
    assert unknown.exit_code == 2 and "unknown twin 'liver'" in unknown.output
