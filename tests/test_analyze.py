"""``mribench analyze``: the prompts analysis end to end at the smoke preset (its files, and an unmodified
synthesis equal to the run's own result), the tokenizer ablation, and bad input refused before any work."""
from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mribench.analyze import AnalyzeRequest, analysis_figures, analysis_folder, analysis_tables, analyze
from mribench.cli import app
from mribench.progress import PROGRESS_INTERVAL_ENV

TASK_YAML = """name: tiny-brain16-missing1
version: 1
description: tiny brain-like task with CoPeDiT's smoke shape
dataset: tiny-brain
dataset_options: {subjects: 10}
problem: missing-modality
elements: [A, B, C]
missing: 1
train_missing: [1, 2]
split: {rule: ratio, test_fraction: 0.3, seed: 0}
preprocess: {shape: [16, 16, 16], crop_foreground: false}
metrics: [{name: psnr}]
"""


@pytest.fixture
def task_file(tmp_path, tiny_registry):
    path = tmp_path / "tiny-brain16-missing1.yaml"
    path.write_text(TASK_YAML)
    return path


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_analyze_prompts_at_smoke_writes_every_file_and_starts_from_the_run(task_file, tmp_path, monkeypatch):
    request = AnalyzeRequest("prompts", task=str(task_file), method="copedit", preset="smoke", runs=tmp_path / "runs")
    monkeypatch.setenv(PROGRESS_INTERVAL_ENV, "0.01")
    log = io.StringIO()
    written = analyze(request, console=Console(file=log, width=200))
    assert "prompt analysis: syntheses" in log.getvalue(), "a pipe sees the analysis' progress, not only the run's"
    run_folder = tmp_path / "runs" / "tiny-brain16-missing1" / "copedit" / "smoke-seed0"
    folder = analysis_folder(run_folder, "prompts")
    assert {p.name for p in written} == {"corruption.csv", "corruption.png", "corruption.md", "interventions.csv",
                                         "interventions.png", "interventions.md", "tsne.csv", "tsne.png",
                                         "attention.csv", "attention.png", "analysis.json",
                                         "prompt-corruption.table.json", "prompt-interventions.table.json"}
    assert all(path.parent == folder and path.stat().st_size > 0 for path in written)
    assert not list(folder.parent.glob(".*staging*")), "the staging folder is gone"
    result = json.loads((run_folder / "result.json").read_text())
    facts = json.loads((folder / "analysis.json").read_text())
    assert facts["split"] == "test" and facts["task"]["split_hash"] == result["task"]["split_hash"]
    assert facts["method"]["config_hash"] == result["method"]["config_hash"] and "git" in json.dumps(facts)
    run_psnr = result["metrics"]["psnr"]["aggregate"]["mean"]

    corruption = _rows(folder / "corruption.csv")
    assert len(corruption) == 4 * 5
    for row in corruption:
        if float(row["fraction"]) == 0:
            assert int(row["replaced_subjects"]) == 0
            assert float(row["psnr_mean"]) == pytest.approx(run_psnr, abs=1e-6), \
                "fraction 0 is the run's own (unmodified) PSNR"
    # That edited prompts change the synthesis is tested on a trained smoke model in plugins/copedit/tests/
    # test_ablations.py; this 10-subject task's smoke model gives its two test subjects indistinguishable prompts.

    stored = dict((table.key, table) for _, table in analysis_tables(run_folder))
    assert [row.label for row in stored["prompt-corruption"].rows] == ["count", "position", "assessment", "all"]
    assert [row.values["0.5"] for row in stored["prompt-corruption"].rows] == \
        [float(r["psnr_mean"]) for r in corruption if float(r["fraction"]) == 0.5], "the CSV's numbers"
    interventions = {r["intervention"]: r for r in _rows(folder / "interventions.csv")}
    assert {row.label: row.values["psnr"] for row in stored["prompt-interventions"].rows} == \
        {name: float(r["psnr_mean"]) for name, r in interventions.items()}
    assert set(interventions) == {"none", "zeroed", "random (matched norm)", "shuffled across subjects",
                                  "swap count<->position", "swap count<->assessment", "swap position<->assessment"}
    assert float(interventions["none"]["psnr_mean"]) == pytest.approx(run_psnr, abs=1e-6)
    assert float(interventions["zeroed"]["psnr_change"]) != 0

    tsne = _rows(folder / "tsne.csv")
    n_test = result["task"]["n_test"]
    assert len(tsne) == n_test * 6, "every 1- and 2-of-3 pattern for each test subject"
    assert {r["missing_count"] for r in tsne} == {"1", "2"}
    attention = _rows(folder / "attention.csv")
    assert {r["query"] for r in attention} == {"A", "B", "C"}

    assert {(name, png.name) for name, png in analysis_figures(run_folder)} == {
        ("prompts", name) for name in ("attention.png", "corruption.png", "interventions.png", "tsne.png")}, \
        "mribench report finds the figures"

    assert {r["subject"] for r in attention} == {result["subjects"][0]}, "default: the first test subject"
    assert facts["focus"]["subject"] == result["subjects"][0] and not any(facts["focus"]["chosen"].values())

    first = {p.name: p.read_bytes() for p in written if p.suffix == ".csv"}
    again = analyze(request)  # every edit is seeded: the same files again
    assert {p.name: p.read_bytes() for p in again if p.suffix == ".csv"} == first

    # --subject / --missing choose the attention maps' subject and pattern (the model is reused, not retrained)
    chosen = result["subjects"][-1]
    cli = CliRunner().invoke(app, ["analyze", "prompts", "--task", str(task_file), "--preset", "smoke", "--runs",
                                   str(tmp_path / "runs"), "--subject", chosen, "--missing", "b,C"])
    assert cli.exit_code == 0, cli.output
    attention = _rows(folder / "attention.csv")
    assert {(r["subject"], r["missing"]) for r in attention} == {(chosen, "B,C")}
    facts = json.loads((folder / "analysis.json").read_text())
    assert facts["focus"] == {"what": "the attention maps", "subject": chosen, "missing": "B,C",
                              "chosen": {"subject": True, "missing": True}}
    assert {p.name: (folder / p.name).read_bytes() for p in written if p.name == "corruption.csv"} == \
        {"corruption.csv": first["corruption.csv"]}, "the focus changes the attention maps only"


def test_analyze_tokenizer_trains_each_ablated_tokenizer_beside_the_shared_one(task_file, tmp_path):
    written = analyze(AnalyzeRequest("tokenizer", task=str(task_file), method="copedit", preset="smoke",
                                     runs=tmp_path / "runs"))
    rows = _rows(next(p for p in written if p.name == "reconstruction.csv"))
    assert [r["tokenizer"] for r in rows] == ["full", "no count task", "no position task", "no assessment task",
                                              "no pretext task"]
    assert all(r["split"] == "validation" and float(r["psnr"]) > 0 for r in rows)
    tables = analysis_tables(tmp_path / "runs" / "tiny-brain16-missing1" / "copedit" / "smoke-seed0")
    assert [(name, table.key) for name, table in tables] == [("tokenizer", "tokenizer-reconstruction")]
    stored = tables[0][1]
    assert [(r.label, r.kind) for r in stored.rows] == [(r["tokenizer"], "result") for r in rows]
    assert [r.values["psnr"] for r in stored.rows] == [float(r["psnr"]) for r in rows], "the CSV's numbers"
    folders = sorted(p.name for p in (tmp_path / "runs" / "_models").glob("*/shared/copedit-tokenizer/*")
                     if p.is_dir())
    assert folders == ["smoke-seed0", "smoke-seed0-no-assessment-task", "smoke-seed0-no-count-task",
                       "smoke-seed0-no-position-task", "smoke-seed0-no-pretext-task"]
    assert not list((tmp_path / "runs").glob("*/copedit/*/result.json")), "the tokenizer analysis needs no run"


@pytest.mark.parametrize("arguments, message", [
    (["analyze", "nope"], "unknown analysis 'nope'"),
    (["analyze", "prompts", "--method", "copedit-no-prompts"], "conditioned on 'none', not on prompts"),
    (["analyze", "prompts", "--method", "zero-fill"], "it reads CoPeDiT's CoPeVAE"),
    (["analyze", "prompts", "--preset", "huge"], "unknown preset"),
    (["analyze", "prompts", "--preset", "smoke", "--subject", "nope"], "--subject 'nope' is not a test subject"),
    (["analyze", "prompts", "--preset", "smoke", "--missing", "A,D"], "'D' is not a modality"),
    (["analyze", "prompts", "--preset", "smoke", "--missing", "A,B,C"],
     "3 missing modalities is outside the range 1-2"),
    (["analyze", "tokenizer", "--preset", "smoke", "--subject", "x"], "looks at no single subject"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(task_file, tmp_path, arguments, message):
    result = CliRunner().invoke(app, [*arguments, "--task", str(task_file), "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "runs").exists()
