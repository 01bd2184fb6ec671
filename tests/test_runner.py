"""End to end through the runner and the CLI on the tests-only tiny datasets."""
import csv
import io
import json
import math
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mribench.cli import app
from mribench.errors import CheckpointMismatchError, MribenchError, UnknownNameError
from mribench.method import config_hash
from mribench.protocol import evaluation_availability
from mribench.results import read_result
from mribench.runner import RunRequest, run
from mribench.tasks import get_task

cli = CliRunner()


def _run(tmp_path, method="mean-available", task="tiny-brain-missing1", **kw):
    return run(RunRequest(method=method, task=task, preset="smoke", out=tmp_path / "runs", **kw))


def test_run_writes_result_with_provenance_and_predictions(tiny_registry, tmp_path):
    outcome = _run(tmp_path)
    assert outcome.status == "done"
    data = json.loads((outcome.folder / "result.json").read_text())
    assert data["task"]["name"] == "tiny-brain-missing1" and len(data["task"]["hash"]) == 64
    assert len(data["task"]["split_hash"]) == 64 and data["task"]["n_test"] == 3
    assert data["method"]["name"] == "mean-available" and data["method"]["plugin"] == "baselines"
    assert data["seed"] == 0 and "torch" in data["provenance"]["packages"] and data["provenance"]["host"]["cpus"]
    psnr = data["metrics"]["psnr"]
    assert psnr["status"] == "ok" and len(psnr["per_subject"]) == 3 and math.isfinite(psnr["aggregate"]["mean"])
    assert data["observed_changed"]["count"] == 0
    subject = data["subjects"][0]
    files = list((outcome.folder / "predictions" / subject).glob("*.nii.gz"))
    assert len(files) == 1 and nib.load(files[0]).shape == (12, 16, 16)
    rows = list(csv.DictReader((outcome.folder / "per_subject.csv").open()))
    assert list(rows[0])[:3] == ["subject_id", "availability", "psnr"]
    task = get_task("tiny-brain-missing1")
    for row in rows:  # the pattern each subject was scored on: one modality missing
        pattern = evaluation_availability(task, row["subject_id"])
        assert row["availability"] == "".join("1" if pattern[c].all() else "0" for c in range(task.channels))
        assert len(row["availability"]) == task.channels and row["availability"].count("0") == 1
    assert psnr["higher_is_better"] is True and psnr["unit"] == "dB" and psnr["display_name"] == "PSNR"
    assert data["method"]["display_name"] == "mean-available" and data["method"]["family"] == "floor"
    assert not (outcome.folder / "work").exists()


def test_rerun_is_complete_and_overwrite_always_recomputes_same_numbers(tiny_registry, tmp_path):
    first = _run(tmp_path)
    assert _run(tmp_path).status == "complete"
    again = _run(tmp_path, overwrite="always")
    assert again.status == "done"
    assert again.result.metrics["psnr"]["per_subject"] == first.result.metrics["psnr"]["per_subject"]


def test_missing_counts_share_one_trained_model(tiny_registry, tmp_path):
    _run(tmp_path, method="nearest-contrast", task="tiny-brain-missing1")
    models = list((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    assert len(models) == 1
    stamp = models[0].stat().st_mtime_ns
    _run(tmp_path, method="nearest-contrast", task="tiny-brain-missing2")
    assert models[0].stat().st_mtime_ns == stamp


def test_cardiac_floors_fill_the_run(tiny_registry, tmp_path):
    interp = _run(tmp_path, method="slice-interp", task="tiny-cardiac-missing4").result
    zero = _run(tmp_path, method="zero-fill", task="tiny-cardiac-missing4").result
    assert interp.metrics["psnr"]["aggregate"]["mean"] > zero.metrics["psnr"]["aggregate"]["mean"] + 3


def test_interrupted_synthesis_resumes_with_same_numbers(tiny_registry, tmp_path, monkeypatch):
    reference = _run(tmp_path / "a").result
    import mribench_baselines.floors as floors

    calls = {"n": 0}
    original = floors.MeanAvailable.synthesize

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(floors.MeanAvailable, "synthesize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b")
    folder = tmp_path / "b" / "runs" / "tiny-brain-missing1" / "mean-available" / "smoke-seed0"
    assert not (folder / "result.json").exists()
    assert not list(folder.rglob("*.tmp")), "a temp file was left behind"
    assert len(list((folder / "work" / "pred").glob("*.npy"))) == 1
    monkeypatch.setattr(floors.MeanAvailable, "synthesize", original)
    resumed = _run(tmp_path / "b").result
    assert resumed.metrics["psnr"]["per_subject"] == reference.metrics["psnr"]["per_subject"]


def test_unknown_method_and_preset_suggest_names(tiny_registry, tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'mean-available'"):
        _run(tmp_path, method="mean-availble")
    with pytest.raises(UnknownNameError, match="unknown preset of mean-available 'smok'; did you mean 'smoke'"):
        run(RunRequest(method="mean-available", task="tiny-brain-missing1", preset="smok", out=tmp_path))


def test_method_that_does_not_support_the_problem_is_refused(tiny_registry, tmp_path):
    with pytest.raises(MribenchError, match="does not support missing-slice"):
        _run(tmp_path, method="nearest-contrast", task="tiny-cardiac-missing4")


def test_cli_errors_are_one_line_exit_2(tiny_registry, tmp_path):
    result = cli.invoke(app, ["run", "--method", "mean-availble", "--task", "tiny-brain-missing1", "--out",
                              str(tmp_path)])
    assert result.exit_code == 2
    assert "did you mean 'mean-available'" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_missing_data_says_what_and_where(tiny_registry, tmp_path):
    result = cli.invoke(app, ["run", "--method", "mean-available", "--task", "tiny-absent-missing1", "--out",
                              str(tmp_path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "dataset 'tiny-absent' not found" in text and "registration needed" in text
    assert "<root>/<subject>/<subject>_{a,b,c}.nii.gz" in text and "--data-root" in text and "MRIBENCH_DATA" in text


def test_cli_debug_shows_the_traceback(tiny_registry, tmp_path):
    result = cli.invoke(app, ["--debug", "run", "--method", "nope", "--task", "tiny-brain-missing1"])
    assert result.exit_code != 0 and isinstance(result.exception, UnknownNameError)


def test_cli_run_then_complete_then_leaderboard(tiny_registry, tmp_path):
    args = ["run", "--task", "tiny-brain-missing1", "--preset", "smoke", "--out", str(tmp_path)]
    for method in ("mean-available", "zero-fill"):
        assert cli.invoke(app, args + ["--method", method]).exit_code == 0
    again = cli.invoke(app, args + ["--method", "zero-fill"])
    assert again.exit_code == 0 and "complete" in again.output
    board = cli.invoke(app, ["leaderboard", "--task", "tiny-brain-missing1", "--runs", str(tmp_path)])
    assert board.exit_code == 0
    lines = board.output.splitlines()
    assert lines[0] == "| method | psnr ↑ | ssim ↑ | mae ↓ | n |"
    mean_row = next(line for line in lines if line.startswith("| mean-available (smoke)"))
    assert "**" in mean_row.split("|")[2], "the better method is bold in the PSNR column"
    latex = cli.invoke(app, ["leaderboard", "--task", "tiny-brain-missing1", "--runs", str(tmp_path), "--format",
                             "latex"])
    assert r"\toprule" in latex.output and r"\textbf{" in latex.output


def test_leaderboard_refuses_mixed_task_hashes(tiny_registry, tmp_path):
    outcome = _run(tmp_path)
    other = outcome.folder.parent / "smoke-seed1"
    other.mkdir()
    data = json.loads((outcome.folder / "result.json").read_text())
    data["task"]["hash"] = "f" * 64
    (other / "result.json").write_text(json.dumps(data))
    result = cli.invoke(app, ["leaderboard", "--task", "tiny-brain-missing1", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "different task hashes" in result.output


def test_checkpoint_from_another_config_is_refused_under_overwrite_never_and_retrained_else(tiny_registry, tmp_path):
    _run(tmp_path, method="nearest-contrast")
    checkpoint = next((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    cpu_dir = checkpoint.parent.parent / "cpu-seed0"
    cpu_dir.mkdir()
    cpu_dir.joinpath("model.pt").write_bytes(checkpoint.read_bytes())
    request = RunRequest(method="nearest-contrast", task="tiny-brain-missing1", preset="cpu", out=tmp_path / "runs")
    with pytest.raises(MribenchError, match="trained with another config of the cpu preset.*--overwrite never"):
        run(replace(request, overwrite="never"))
    assert run(request).status == "done"
    assert torch.load(cpu_dir / "model.pt", weights_only=True)["config_hash"] != \
        torch.load(checkpoint, weights_only=True)["config_hash"]


def test_tasks_methods_plugins_commands(tiny_registry):
    tasks = cli.invoke(app, ["tasks"])
    assert tasks.exit_code == 0 and "tiny-brain-missing1" in tasks.output and "absent" in tasks.output
    show = cli.invoke(app, ["tasks", "show", "brats-missing1"])
    assert show.exit_code == 0 and "task hash" in show.output and "28.26" in show.output
    methods = cli.invoke(app, ["methods"])
    assert methods.exit_code == 0 and "mean-available" in methods.output and "slice-interp" in methods.output
    assert cli.invoke(app, ["methods", "show", "nearest-contrast"]).exit_code == 0
    plugins = cli.invoke(app, ["plugins"])
    assert plugins.exit_code == 0 and "baselines" in plugins.output and "tiny" in plugins.output


def test_methods_show_lists_a_presets_replacement_on_one_problem(tiny_registry, monkeypatch):
    from mribench_baselines.mmgan import MMGAN

    smoke = MMGAN.presets["smoke"]
    monkeypatch.setattr(MMGAN, "problem_presets", {"smoke": {"missing-slice": replace(smoke, steps=smoke.steps + 7)}})
    shown = cli.invoke(app, ["methods", "show", "mmgan"])
    assert shown.exit_code == 0
    smoke_part = shown.output.split("\nsmoke\n")[1].split("\ncpu\n")[0]
    replaced = smoke_part.split("on missing-slice tasks, instead:\n")[1]
    assert replaced.strip().splitlines() == [f"steps: {smoke.steps + 7}"]  # only what differs


def test_result_roundtrip(tiny_registry, tmp_path):
    outcome = _run(tmp_path)
    assert read_result(outcome.folder / "result.json").metrics.keys() == outcome.result.metrics.keys()
    assert np.isfinite(outcome.result.metrics["ssim"]["aggregate"]["mean"])


def test_bench_lists_the_benchmarks_and_refuses_unknown_names():
    listing = cli.invoke(app, ["bench", "--list"])  # without --list, bench runs every benchmark
    assert listing.exit_code == 0 and "ssim" in listing.output
    unknown = cli.invoke(app, ["bench", "ssimm"])
    assert unknown.exit_code == 2 and "did you mean 'ssim'" in unknown.output


def test_predictions_preprocessed_only_writes_the_task_grid(tiny_registry, tmp_path):
    outcome = _run(tmp_path, predictions="preprocessed")
    assert not (outcome.folder / "predictions").exists()
    files = sorted((outcome.folder / "predictions-preprocessed").glob("*/*.nii.gz"))
    assert [f.parent.name for f in files] == outcome.result.subjects
    assert all(nib.load(f).shape == (12, 16, 16) for f in files)
    recorded = read_result(outcome.folder / "result.json").outputs  # the choice is part of the result
    assert recorded == {"predictions": "preprocessed", "folders": ["predictions-preprocessed"]}


def _change_smoke_preset(monkeypatch):
    """nearest-contrast's smoke preset as if a later release had changed it (another config hash)."""
    import mribench_baselines.floors as floors

    changed = {**floors.NearestContrast.presets, "smoke": floors.FloorConfig(max_train_subjects=7)}
    monkeypatch.setattr(floors.NearestContrast, "presets", changed)
    return floors


def test_a_result_and_model_of_an_older_preset_are_redone_not_skipped(tiny_registry, tmp_path, monkeypatch):
    first = _run(tmp_path, method="nearest-contrast")
    model = next((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    _change_smoke_preset(monkeypatch)
    with pytest.raises(MribenchError, match="made with another smoke config of nearest-contrast.*--overwrite never"):
        _run(tmp_path, method="nearest-contrast", overwrite="never")
    console = Console(file=io.StringIO(), width=400)
    again = run(RunRequest(method="nearest-contrast", task="tiny-brain-missing1", preset="smoke",
                           out=tmp_path / "runs"), console=console)
    notices = console.file.getvalue()
    assert again.status == "done"
    assert again.result.method["config_hash"] != first.result.method["config_hash"]
    assert json.loads((again.folder / "result.json").read_text())["method"]["config"] == '{"max_train_subjects": 7}'
    assert "redoing the run with today's preset" in notices and "training it again with today's preset" in notices
    assert torch.load(model, weights_only=True)["config_hash"] == again.result.method["config_hash"]
    assert _run(tmp_path, method="nearest-contrast").status == "complete"


def test_a_half_trained_model_of_an_older_preset_starts_afresh(tiny_registry, tmp_path, monkeypatch):
    floors = _change_smoke_preset(monkeypatch)
    original = floors.NearestContrast.fit

    def fit_resuming_a_checked_checkpoint(self, train, task, workdir, progress):
        marker = workdir / "train.marker"  # stands for a resumable checkpoint that records its config
        if marker.exists() and marker.read_text() != config_hash(self.config):
            raise CheckpointMismatchError(f"{marker}: written by another config")
        workdir.mkdir(parents=True, exist_ok=True)
        marker.write_text(config_hash(self.config))
        original(self, train, task, workdir, progress)

    monkeypatch.setattr(floors.NearestContrast, "fit", fit_resuming_a_checked_checkpoint)
    _run(tmp_path / "probe", method="nearest-contrast")  # learn where the model folder goes
    model_dir = next((tmp_path / "probe" / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0"))
    relative = model_dir.relative_to(tmp_path / "probe" / "runs")
    stale = tmp_path / "runs" / relative / "work" / "train.marker"
    stale.parent.mkdir(parents=True)
    stale.write_text("0123456789abcdef")
    assert _run(tmp_path, method="nearest-contrast").status == "done"
    assert (tmp_path / "runs" / relative / "model.pt").exists()
    assert stale.read_text() == config_hash(floors.NearestContrast.presets["smoke"])
