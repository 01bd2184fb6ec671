"""Comparability by content: checkpoints hash the same when their weights are the same, extractors are identified by
name + SHA-256 (never a path), models are keyed by the data they were trained on, and the leaderboard refuses to put
results on other test subjects or other data in one column."""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile

import pytest
import torch
from typer.testing import CliRunner

from mribench.cli import app
from mribench.data.nifti import strip_nifti_suffix
from mribench.errors import MribenchError
from mribench.leaderboard.layouts.plain import build_table
from mribench.protocol import make_split
from mribench.runner import RunRequest, run
from mribench.tasks import get_task
from mribench.training import atomic_torch_save

cli = CliRunner()
TASK_NAME = "rel-brats-missing1"  # the brats_task fixture's


def copy_data(source, destination):
    return shutil.copytree(source, destination)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(task, method, data_root, out, **kw):
    return run(RunRequest(method=method, task=str(task), preset="smoke", data_root=data_root, out=out, **kw))


def test_the_same_weights_give_the_same_checkpoint_bytes(tmp_path):
    torch.manual_seed(0)
    state = {"model": torch.nn.Linear(4, 3).state_dict(), "step": 7}
    first, second = tmp_path / "a" / "model.pt", tmp_path / "b" / "other-name.pt"
    atomic_torch_save(state, first)
    atomic_torch_save(state, second)
    assert _sha256(first) == _sha256(second)
    # the archive's entries carry a fixed name, not the random temp file's
    assert {name.split("/")[0] for name in zipfile.ZipFile(first).namelist()} == {"archive"}
    changed = {"model": {k: v + 1 for k, v in state["model"].items()}, "step": 7}
    atomic_torch_save(changed, second)
    assert _sha256(first) != _sha256(second)


def test_a_run_from_a_second_cache_merges_with_the_committed_results(brats_source, brats_task, tmp_path,
                                                                     monkeypatch):
    """The "add my method" workflow: another machine (other data path, other cache) runs a method and adds its result
    to the committed ones; the same command there reproduces the committed numbers and extractor identity."""
    committed, elsewhere = tmp_path / "committed", tmp_path / "elsewhere"
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache-lab"))
    first = _run(brats_task, "mean-available", copy_data(brats_source, tmp_path / "lab" / "brats"), committed).result

    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache-home"))
    home_data = copy_data(brats_source, tmp_path / "home" / "data" / "BraTS")
    again = _run(brats_task, "mean-available", home_data, elsewhere).result
    added = _run(brats_task, "nearest-contrast", home_data, elsewhere)

    assert again.metrics == first.metrics  # numbers and the segmenter's identity (name + SHA-256)
    assert set(first.metrics["dice"]["extractor"]) == {"name", "sha256", "pin"}
    assert again.task == first.task
    assert sorted(p.name for p in (committed / "_models").iterdir()) == \
        sorted(p.name for p in (elsewhere / "_models").iterdir())  # the model key does not depend on the root

    shutil.copytree(added.folder.parent, committed / TASK_NAME / "nearest-contrast")
    grid = build_table([TASK_NAME], committed)
    assert [row.label for row in grid.rows] == ["mean-available (smoke)", "nearest-contrast (smoke)"]
    assert sum(line.startswith("extractors") for line in grid.footnote) == 1


def test_another_data_root_never_reuses_a_model_trained_on_other_data(brats_source, brats_task, tmp_path):
    out = tmp_path / "runs"
    first = _run(brats_task, "nearest-contrast", copy_data(brats_source, tmp_path / "a"), out).result
    other = copy_data(brats_source, tmp_path / "b")
    subject, donor = sorted(p.name for p in other.iterdir())[:2]  # same subject IDs, other content for one
    for file in (other / subject).iterdir():
        file.write_bytes((other / donor / file.name.replace(subject, donor)).read_bytes())
    second = _run(brats_task, "nearest-contrast", other, out, overwrite="always").result
    assert second.task["split_hash"] == first.task["split_hash"]
    assert second.task["data_fingerprint"] != first.task["data_fingerprint"]
    models = sorted((out / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    assert len(models) == 2  # trained again on the other data, the first model untouched


def _bad_test_subject(task_path, data_root) -> str:
    """Truncate a FLAIR file of one test subject; returns that subject's ID."""
    task = get_task(str(task_path))
    subject = make_split(task, sorted(p.name for p in data_root.iterdir())).test[0]
    flair = next(p for p in (data_root / subject).iterdir() if (strip_nifti_suffix(p.name) or "").endswith("flair"))
    flair.write_bytes(flair.read_bytes()[:400])
    return subject


def test_a_skip_bad_result_on_fewer_subjects_is_refused_beside_a_full_one(brats_source, brats_task, tmp_path):
    out = tmp_path / "runs"
    _run(brats_task, "mean-available", copy_data(brats_source, tmp_path / "good"), out)
    damaged = copy_data(brats_source, tmp_path / "damaged")
    bad = _bad_test_subject(brats_task, damaged)
    short = _run(brats_task, "nearest-contrast", damaged, out, skip_bad=True)
    assert [entry["subject"] for entry in short.result.skipped] == [bad]

    answer = cli.invoke(app, ["leaderboard", "--task", TASK_NAME, "--runs", str(out)])
    assert answer.exit_code == 2 and "Traceback" not in answer.output
    message = " ".join(answer.output.split())
    assert "different test subjects" in message
    assert str(short.folder / "result.json") in message and f"lacks {bad}" in message
    assert f"--skip-bad left out {bad}" in message
    with pytest.raises(MribenchError, match="different test subjects"):
        build_table([TASK_NAME], out)


def _result_with_extractor(folder, sha256: str, file: str, seed: int) -> None:
    data = json.loads((folder / "result.json").read_text())
    data["seed"] = seed
    data["metrics"]["psnr"]["extractor"] = {"name": "segmenter-smoke-full", "sha256": sha256, "file": file}
    target = folder.parent / f"smoke-seed{seed}"
    target.mkdir()
    (target / "result.json").write_text(json.dumps(data))


def test_extractors_are_compared_by_name_and_hash_never_by_path(tiny_registry, tmp_path):
    out = tmp_path / "runs"
    folder = run(RunRequest(method="mean-available", task="tiny-brain-missing1", preset="smoke", out=out)).folder
    _result_with_extractor(folder, "a" * 64, "/cache/one/full.pt", seed=1)
    _result_with_extractor(folder, "a" * 64, "/elsewhere/full.pt", seed=2)
    (folder / "result.json").unlink()
    assert build_table(["tiny-brain-missing1"], out).rows  # same name + hash, other paths: one column
    _result_with_extractor(folder.parent / "smoke-seed1", "b" * 64, "/cache/one/full.pt", seed=3)
    with pytest.raises(MribenchError, match="different extractors") as refused:
        build_table(["tiny-brain-missing1"], out)
    assert "smoke-seed3/result.json" in str(refused.value) and "bbbbbbbb" in str(refused.value)
