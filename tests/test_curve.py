"""``mribench curve``: files, validation subjects only, the scored steps, the verdict, resume and bad input."""
from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from typer.testing import CliRunner

import mribench.curve as curve_module
from mribench.cli import app
from mribench.curve import CurveRequest, curve, score_steps, verdict
from mribench.data import load_task_data
from mribench.plugins import registry
from mribench.tasks import get_task
from mribench_baselines.mmgan import MMGAN

TASK = "tiny-brain-missing1"


def _rows(folder):
    with (folder / "curve.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_score_steps_is_one_grid_for_both_runs():
    assert score_steps(40, 4, 40) == [10, 20, 30, 40]
    assert score_steps(40, 4, 80) == [10, 20, 30, 40, 50, 60, 70, 80]
    assert score_steps(10, 3, 20) == [3, 7, 10, 13, 17, 20]


def test_verdict_is_the_half_decibel_rule():
    assert verdict(0.49) == "plateau" and verdict(-2.0) == "plateau"
    assert verdict(0.5) == "not converged" and verdict(3.0) == "not converged"


def test_curve_writes_csv_json_png_scoring_validation_subjects_only(tiny_registry, tmp_path, monkeypatch):
    scored = []
    original = MMGAN.synthesize

    def recording(self, batch):
        scored.extend(batch.subject_ids)
        return original(self, batch)

    monkeypatch.setattr(MMGAN, "synthesize", recording)
    result = CliRunner().invoke(app, ["curve", "--method", "mmgan", "--task", TASK, "--preset", "smoke",
                                      "--points", "4", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "_models").glob("*/mmgan/smoke-seed0"))
    assert "curve.csv" in result.output and ("plateau" in result.output or "not converged" in result.output)
    task = get_task(TASK)
    data = load_task_data(task, registry().dataset(task.dataset), None)
    validation = set(data.validation.subject_ids)
    assert validation and set(scored) == validation
    assert not validation & set(data.test.subject_ids)

    rows = _rows(folder)
    steps = MMGAN.presets["smoke"].steps
    by_run = {}
    for row in rows:
        by_run.setdefault(int(row["schedule_steps"]), []).append(int(row["step"]))
    assert by_run == {steps: score_steps(steps, 4, steps), 2 * steps: score_steps(steps, 4, 2 * steps)}
    assert len(scored) == len(rows) * len(validation)  # one synthesis per validation subject per scored step
    minutes = [float(row["training_minutes"]) for row in rows if int(row["schedule_steps"]) == 2 * steps]
    assert minutes == sorted(minutes) and minutes[0] > 0

    summary = json.loads((folder / "curve.json").read_text())
    preset_row = next(r for r in rows if int(r["schedule_steps"]) == steps and int(r["step"]) == steps)
    long_row = next(r for r in rows if int(r["schedule_steps"]) == 2 * steps and int(r["step"]) == 2 * steps)
    assert summary["psnr_at_preset_steps"] == pytest.approx(float(preset_row["validation_psnr"]), abs=1e-3)
    assert summary["psnr_at_scaled_steps"] == pytest.approx(float(long_row["validation_psnr"]), abs=1e-3)
    assert summary["verdict"] == verdict(summary["gain_db"])
    assert summary["task"]["validation_subjects"] == sorted(validation)
    assert (folder / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (folder / "model.pt").exists()  # the curve never stands in for the run's model

    again = CliRunner().invoke(app, ["curve", "--method", "mmgan", "--task", TASK, "--preset", "smoke",
                                     "--points", "4", "--out", str(tmp_path)])
    assert again.exit_code == 0 and again.output.startswith("complete:")
    monkeypatch.setitem(MMGAN.presets, "smoke", dataclasses.replace(MMGAN.presets["smoke"], lr=1e-4))
    changed = CliRunner().invoke(app, ["curve", "--method", "mmgan", "--task", TASK, "--preset", "smoke",
                                       "--points", "4", "--out", str(tmp_path)])
    assert changed.exit_code == 2 and "made with another config" in changed.output


def test_a_killed_curve_resumes_to_the_same_numbers(tiny_registry, tmp_path, monkeypatch):
    request = CurveRequest(method="mmgan", task=TASK, preset="smoke", points=4, out=tmp_path / "killed")
    calls = {"n": 0}
    original = curve_module.validation_psnr

    def dies_on_the_seventh(*args):
        calls["n"] += 1
        if calls["n"] == 7:  # step 30 of the longer run, after its checkpoint at step 20
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(curve_module, "validation_psnr", dies_on_the_seventh)
    with pytest.raises(KeyboardInterrupt):
        curve(request)
    folder = next((tmp_path / "killed" / "_models").glob("*/mmgan/smoke-seed0"))
    assert not (folder / "curve.csv").exists() and not (folder / "curve.json").exists()
    monkeypatch.setattr(curve_module, "validation_psnr", original)
    resumed = curve(request)
    fresh = curve(CurveRequest(method="mmgan", task=TASK, preset="smoke", points=4, out=tmp_path / "fresh"))
    assert resumed.summary["psnr_at_scaled_steps"] == fresh.summary["psnr_at_scaled_steps"]
    assert [r["validation_psnr"] for r in _rows(resumed.folder)] == [r["validation_psnr"] for r in _rows(fresh.folder)]


@pytest.mark.parametrize("args, message", [
    (["--method", "mmgan", "--points", "0"], "--points must be at least 1"),
    (["--method", "mmgan", "--scale", "1"], "--scale must be at least 2"),
    (["--method", "mean-available"], "does not call the step hook"),
    (["--method", "mmgan", "--preset", "nope"], "unknown preset of mmgan"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_registry, tmp_path, args, message):
    result = CliRunner().invoke(app, ["curve", "--task", TASK, "--preset", "smoke", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.rglob("*"))


def test_curve_refuses_torchrun(tiny_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["curve", "--method", "mmgan", "--task", TASK, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "without torchrun" in result.output
    assert not list(tmp_path.rglob("*"))
