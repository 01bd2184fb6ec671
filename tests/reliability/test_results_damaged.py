"""Results validated on read: a result.json that does not parse or fails its schema is damaged, not complete; the
rerun redoes the evaluation and keeps a valid model; the leaderboard names the damaged file."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mribench.cli import app
from mribench.errors import MribenchError
from mribench.results import DamagedResultError, compact_result_json, read_result
from mribench.runner import RunRequest, run

cli = CliRunner()
TASK = "tiny-brain-missing1"


def _request(tmp_path, **kw):
    return RunRequest(method="nearest-contrast", task=TASK, preset="smoke", out=tmp_path / "runs", **kw)


def _without(key):
    def damage(text: str) -> str:
        data = json.loads(text)
        data.pop(key)
        return json.dumps(data)
    return damage


def _seed_as_text(text: str) -> str:
    data = json.loads(text)
    data["seed"] = "zero"
    return json.dumps(data)


def _metric_without_status(text: str) -> str:
    data = json.loads(text)
    del data["metrics"]["psnr"]["status"]
    return json.dumps(data)


def _compact_list_one_short(text: str) -> str:
    data = json.loads(compact_result_json(text))
    data["metrics"]["psnr"]["per_subject"].pop()
    return json.dumps(data)


DAMAGES = {
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "empty": (lambda text: "", "empty file"),
    "not an object": (lambda text: "[]", "damaged result"),
    "no metrics": (_without("metrics"), "key 'metrics'"),
    "seed not a number": (_seed_as_text, "key 'seed'"),
    "metric without status": (_metric_without_status, "key 'metrics.psnr.status'"),
    "compact values not one per subject": (_compact_list_one_short,
                                           "key 'metrics.psnr.per_subject': 2 values for 3 subjects"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_result_is_redone_and_the_model_kept(tiny_registry, tmp_path, damage):
    first = run(_request(tmp_path))
    path = first.folder / "result.json"
    model = next((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    stamp = model.stat().st_mtime_ns
    transform, expected = DAMAGES[damage]
    path.write_text(transform(path.read_text()))
    with pytest.raises(DamagedResultError, match=expected):
        read_result(path)

    console = io.StringIO()
    again = run(_request(tmp_path), console=Console(file=console, width=400))
    assert again.status == "done"
    assert f"{path}: damaged result" in console.getvalue() and "redoing its evaluation" in console.getvalue()
    assert model.stat().st_mtime_ns == stamp  # the valid model was loaded, not retrained
    assert read_result(path).metrics["psnr"]["per_subject"] == first.result.metrics["psnr"]["per_subject"]


def test_with_overwrite_never_a_damaged_result_is_reported_not_redone(tiny_registry, tmp_path):
    path = run(_request(tmp_path)).folder / "result.json"
    path.write_text("{")
    with pytest.raises(MribenchError, match="damaged result .* --overwrite never"):
        run(_request(tmp_path, overwrite="never"))
    assert path.read_text() == "{"


def test_an_unreadable_model_checkpoint_is_trained_again(tiny_registry, tmp_path):
    first = run(_request(tmp_path))
    (first.folder / "result.json").write_text("")
    model = next((tmp_path / "runs" / "_models").glob("*/nearest-contrast/smoke-seed0/model.pt"))
    model.write_bytes(model.read_bytes()[:100])
    console = io.StringIO()
    again = run(_request(tmp_path), console=Console(file=console, width=400))
    assert again.status == "done" and "unreadable checkpoint" in console.getvalue()
    assert again.result.metrics["psnr"]["per_subject"] == first.result.metrics["psnr"]["per_subject"]


def test_the_leaderboard_names_a_damaged_result_in_one_line(tiny_registry, tmp_path):
    path = run(_request(tmp_path)).folder / "result.json"
    path.write_text(path.read_text()[:200])
    answer = cli.invoke(app, ["leaderboard", "--task", TASK, "--runs", str(tmp_path / "runs")])
    assert answer.exit_code == 2
    assert "Traceback" not in answer.output and "KeyError" not in answer.output
    message = " ".join(answer.output.split())
    assert f"{path}: damaged result (not valid JSON" in message
    assert "rerun its 'mribench run' command" in message
    assert len(answer.output.strip().splitlines()) == 1


def test_the_compact_form_reads_as_the_result_it_was_made_from(tiny_registry, tmp_path):
    path = run(_request(tmp_path)).folder / "result.json"
    full = json.loads(path.read_text())
    full["metrics"]["psnr"]["per_subject"].pop(full["subjects"][0])  # a metric without a value for every subject
    path.write_text(json.dumps(full))
    compact = json.loads(compact_result_json(path.read_text()))
    assert compact["metrics"]["ssim"]["per_subject"] == list(full["metrics"]["ssim"]["per_subject"].values())
    assert compact["metrics"]["psnr"]["per_subject"] == full["metrics"]["psnr"]["per_subject"], \
        "a metric that did not score every subject keeps its dict"
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(compact, separators=(",", ":")))
    assert read_result(copy) == read_result(path)
    assert len(copy.read_text()) < len(json.dumps(full, separators=(",", ":"))), "the subject IDs are not repeated"
