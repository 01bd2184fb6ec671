"""Leaderboard tables from fabricated results: seed aggregation, significance, paper layouts, formats, reference."""
import csv
import dataclasses
import io
import re
from dataclasses import asdict

import html5lib
import numpy as np
import pytest
from typer.testing import CliRunner

from mribench.cli import app
from mribench.errors import MribenchError
from mribench.leaderboard.cells import Cell, metric_cell
from mribench.leaderboard.collect import collect
from mribench.leaderboard.layouts.paper import INVERSION_MARGIN, build_paper_tables, reported_for
from mribench.leaderboard.layouts.plain import build_table
from mribench.leaderboard.readme import outdated_methods, readme_block
from mribench.leaderboard.grid import Grid, GridCell, GridRow
from mribench.leaderboard.render import FORMATS, html_table, render
from mribench.metrics.aggregate import summarize
from mribench.method import config_hash
from mribench.plugins import Registry, registry, set_registry
from mribench.results import Result, run_dir, write_result

cli = CliRunner()
SUBJECTS = [f"s{i:02d}" for i in range(12)]
BASE = np.linspace(20.0, 26.0, len(SUBJECTS))  # per-subject PSNR spread


def _metric(values: dict[str, float], **extra) -> dict:
    return {"status": "ok", "reason": None, "per_subject": values, "aggregate": {**summarize(values), **extra},
            "extractor": None}


def fabricate(runs, task, method, psnr, seed=0, preset="cpu", dataset="phantom-brats", missing=1, ssim=None,
              dice=None, elements=("T1", "T1ce", "T2", "FLAIR"), problem="missing-modality", jitter=0.01,
              described=True):
    """Write a result.json whose per-subject PSNR is ``psnr`` (array over SUBJECTS) plus a zero-mean jitter (no tied
    paired differences: scipy's exact Wilcoxon falls back to a slow permutation test on ties); FID 'not computed'.

    ``described``: the metrics and the method describe themselves as the runner writes them (from the installed
    classes; an unknown method as itself, family "other"); False: a result written before those fields existed."""
    noise = np.random.default_rng([seed, missing, *method.encode()]).normal(0, jitter, len(SUBJECTS))
    psnr = np.asarray(psnr) + noise - noise.mean()
    metrics = {"psnr": _metric(dict(zip(SUBJECTS, map(float, psnr)))),
               "fid": {"status": "not computed", "reason": "weights absent", "per_subject": {}, "aggregate": {},
                       "extractor": None}}
    if ssim is not None:
        metrics["ssim"] = _metric(dict(zip(SUBJECTS, map(float, np.asarray(ssim) + (noise - noise.mean()) / 100))))
    if dice is not None:
        metrics["dice"] = dice
    method_entry = {"name": method}
    if described:
        for name, entry in metrics.items():
            entry.update(vars(registry().metric_description(name)))
        shown = registry().method_description(method)
        method_entry.update(display_name=shown.display_name if shown else method,
                            family=shown.family if shown else "other",
                            ablation_rows=[asdict(row) for row in shown.ablation_rows] if shown else [])
    result = Result(
        task={"name": task, "version": 1, "hash": f"{task}-hash".ljust(64, "0"), "split_hash": "b" * 64,
              "dataset": dataset, "problem": problem, "missing": missing, "elements": list(elements),
              "n_test": len(SUBJECTS)},
        method={**method_entry, "version": "0.1.0", "plugin": "test", "preset": preset, "config": "{}",
                "config_hash": _installed_hash(method, preset, problem), "reads_mask": True},
        seed=seed, metrics=metrics, subjects=list(SUBJECTS), provenance={"packages": {"mribench": "9.9.9"}})
    write_result(result, run_dir(runs, task, method, preset, seed))


def _installed_hash(method: str, preset: str, problem: str) -> str:
    """The config hash a run of the installed preset records on ``problem`` (so tables with the registry as fallback
    do not mark the row outdated); a made-up one for a method that is not installed."""
    config = registry().preset_config(method, preset, problem)
    return "c" * 16 if config is None else config_hash(config)


def _row(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_seeds_are_aggregated_mean_of_means_with_seed_std(tmp_path):
    for seed, shift in enumerate([0.0, 0.3, 0.9]):
        fabricate(tmp_path, "t1", "mmgan", BASE + shift, seed=seed, jitter=0.0)
    cell = metric_cell(collect(["t1"], tmp_path).get("t1", ("mmgan", "cpu")), "psnr")
    assert cell.seeds == 3 and cell.mean == pytest.approx(BASE.mean() + 0.4)
    assert cell.seed_std == pytest.approx(np.std([0.0, 0.3, 0.9], ddof=1))
    assert cell.std == pytest.approx(BASE.std())
    assert cell.text(2) == f"{BASE.mean() + 0.4:.2f} ± {BASE.std():.2f} [{np.std([0, 0.3, 0.9], ddof=1):.2f}]"


def test_best_carries_dagger_only_when_the_test_holds_in_every_seed(tmp_path):
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        fabricate(tmp_path, "t1", "m2dn", BASE + 1.0 + rng.normal(0, 0.05, len(SUBJECTS)), seed=seed)
        fabricate(tmp_path, "t1", "mmgan", BASE, seed=seed)
        fabricate(tmp_path, "t1", "zero-fill", BASE - 10, seed=seed)
    text = render(build_table(["t1"], tmp_path), "md")
    assert _row(text, "m2dn (cpu)")[1].startswith("**") and "†" in _row(text, "m2dn (cpu)")[1]
    assert _row(text, "mmgan (cpu)")[1].startswith("_") and text.split("\n\n")[0].count("†") == 1
    # seed 1 of the runner-up now ties the best on half the subjects, the other half the other way: no dagger
    noise = np.where(np.arange(len(SUBJECTS)) % 2 == 0, 0.8, -0.8)
    fabricate(tmp_path, "t1", "mmgan", BASE + 1.0 + noise, seed=1)
    text = render(build_table(["t1"], tmp_path), "md")
    assert _row(text, "m2dn (cpu)")[1].startswith("**") and "†" not in _row(text, "m2dn (cpu)")[1]


def _brain_runs(runs, described=True):
    """phantom-brats missing 1/2/3: floors, GAN, diffusion, CoPeDiT, and MMT with +Prompts."""
    levels = {"zero-fill": -12, "mmgan": 0.0, "mmt": 0.4, "mmt+prompts": 0.9, "m2dn": 1.2, "copedit": 2.0}
    for missing in (1, 2, 3):
        for method, level in levels.items():
            fabricate(runs, f"phantom-brats-missing{missing}", method, BASE + level - 0.3 * missing,
                      missing=missing, ssim=np.full(len(SUBJECTS), 0.5 + level / 100), described=described)


def test_paper_layout_groups_families_and_marks_best_and_second(tmp_path):
    _brain_runs(tmp_path)
    tasks = [f"phantom-brats-missing{k}" for k in (3, 1, 2)]
    grids = build_paper_tables(tasks, tmp_path)
    assert [g.key for g in grids] == ["phantom-brats", "prompts"]
    main = grids[0]
    assert [group for group, _ in main.columns[::3]] == ["missing 1", "missing 2", "missing 3"]
    assert [label for _, label in main.columns[:3]] == ["PSNR", "SSIM", "FID"]
    labels = [(row.kind, row.label) for row in main.rows]
    assert labels == [("section", "Floors"), ("result", "zero-fill"), ("section", "GAN-based"), ("result", "MMGAN"),
                      ("result", "MMT"), ("section", "Diffusion-based"), ("result", "M2DN"),
                      ("section", "CoPeDiT (the paper's method)"), ("result", "CoPeDiT")]
    text = render(grids, "md")
    assert _row(text, "CoPeDiT")[1].startswith("**") and _row(text, "M2DN")[1].startswith("_")
    assert _row(text, "MMGAN")[3] == "n/a", "FID not computed shows n/a"
    footer = "\n".join(main.footnote)
    for fact in ("phantom-brats-missing1: v1", "split hash bbbbbbbbbbbb", "mribench 9.9.9", "cpu preset, seeds 0"):
        assert fact in footer
    prompts = render(grids[1], "md")
    assert "MMT+Prompts" not in text.split("### +Prompts")[0], "+prompts rows only in their own table"
    assert _row(prompts, "MMT")[3] == "+0.50†", "constant shift over subjects: significant in every seed"


def test_latex_csv_and_html_formats(tmp_path):
    _brain_runs(tmp_path)
    grids = build_paper_tables(["phantom-brats-missing1", "phantom-brats-missing2"], tmp_path)
    latex = render(grids, "latex")
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex and r"\cmidrule(lr){2-4}" in latex
    copedit = next(line for line in latex.splitlines() if line.startswith("CoPeDiT"))
    assert copedit.split(" & ")[1].startswith(r"\textbf{") and r"$\pm$" in copedit
    m2dn = next(line for line in latex.splitlines() if line.startswith("M2DN"))
    assert m2dn.split(" & ")[1].startswith(r"\underline{")
    assert r"\multicolumn{7}{l}{\textit{GAN-based}}" in latex
    rows = list(csv.DictReader(io.StringIO(render(grids, "csv"))))
    best = [r for r in rows if r["table"] == "phantom-brats" and r["column"] == "PSNR" and r["mark"] == "best"]
    assert {r["row"] for r in best} == {"CoPeDiT"} and float(best[0]["mean"]) == pytest.approx(BASE.mean() + 1.7)
    assert any(r["text"] == "n/a" and r["reason"] == "weights absent" for r in rows)
    page = render(grids, "html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "<b>" in page and "<u>" in page
    parser = html5lib.HTMLParser(strict=True)  # parsed as a browser parses it; any parse error fails
    parser.parse(page)
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", page) and "http://" not in page and "https://" not in page
    fid_cells = re.findall(r'<td title="([^"]*)">n/a</td>', page)
    assert fid_cells and set(fid_cells) == {"weights absent [note 1]"}, "each n/a cell's tooltip names its note"
    tables_with_na = sum('title="weights absent' in table for table in page.split("<table>")[1:])
    assert page.count("[note 1] weights absent</p>") == tables_with_na, "the reason is written once under its table"


def test_a_long_reason_is_written_once_per_html_table_and_its_head_is_the_tooltip():
    reason = "weights file w.pth for fid not found (looked in: a; b); get it from somewhere"
    cells = [GridCell("n/a", Cell(status="not computed", reason=reason)) for _ in range(3)]
    grid = Grid(key="k", title="t", columns=[("", "FID"), ("", "FID 2"), ("", "FID 3")],
                rows=[GridRow("m", cells)], footnote=[])
    table = html_table(grid)
    assert table.count(reason) == 1 and table.count('title="weights file w.pth for fid not found [note 1]"') == 3


def test_reference_rows_come_from_the_real_twin_and_are_never_marked(tmp_path):
    assert reported_for("phantom-brats-missing1").task == "brats-missing1"
    assert reported_for("ixi-missing2").values["psnr"]["CoPeDiT"] == 23.92
    _brain_runs(tmp_path)
    # LDM is in no result here: its family comes from the installed plugin
    grids = build_paper_tables(["phantom-brats-missing1"], tmp_path, reference=True, fallback=registry())
    text = render(grids, "md")
    mmgan = _row(text, "*MMGAN — reported (paper)*")
    assert mmgan[1] == "*24.71 ± 1.57*" and "**" not in mmgan[1]
    assert _row(text, "*LDM — reported (paper)*")[1] == "*23.84*", "methods only the paper has get their own row"
    labels = [row.label for row in grids[0].rows]
    assert labels.index("LDM — reported (paper)") > labels.index("Diffusion-based")
    assert "real data, not comparable" in "\n".join(grids[0].footnote)
    assert _row(render(grids[1], "md"), "*MMT — reported (paper)*")[1:4] == ["*25.19 ± 1.41*", "*25.68*", "*+0.49*"]


def test_dice_table_has_full_missing_and_methods_in_percent(tmp_path):
    def dice(level):
        jitter = np.random.default_rng(int(level * 100)).normal(0, 0.001, len(SUBJECTS))
        values = dict(zip(SUBJECTS, map(float, np.linspace(0.8, 0.9, len(SUBJECTS)) + level + jitter)))
        regions = {"WT": 0.9 + level, "TC": 0.85 + level, "ET": 0.8 + level}
        return _metric(values, synthesis={**regions, "mean": float(np.mean(list(regions.values())))},
                       full={"WT": 0.95, "TC": 0.9, "ET": 0.85, "mean": 0.9},
                       missing={"WT": 0.8, "TC": 0.75, "ET": 0.7, "mean": 0.75})

    for method, level in (("mmgan", 0.0), ("copedit", 0.03)):
        fabricate(tmp_path, "phantom-brats-missing1", method, BASE, dice=dice(level))
    grids = build_paper_tables(["phantom-brats-missing1"], tmp_path, reference=True)
    table = render(next(g for g in grids if g.key == "phantom-brats-dice"), "md")
    assert "| method | WT | TC | ET | avg |" in table
    assert _row(table, "Full (all real)")[1:] == ["95.00", "90.00", "85.00", "90.00"]
    assert _row(table, "Missing (available only)")[1] == "80.00"
    assert _row(table, "*Missing — reported (paper)*")[1:] == ["*86.08*", "*84.67*", "*81.59*", "*84.11*"]
    assert _row(table, "CoPeDiT")[1] == "**93.00**" and _row(table, "MMGAN")[1] == "_90.00_"


def test_dice_table_refuses_full_below_missing_naming_the_segmenter_and_its_validation_dice(tmp_path):
    values = dict(zip(SUBJECTS, [0.1] * len(SUBJECTS)))
    entry = _metric(values, synthesis={"WT": 0.2, "TC": 0.03, "ET": 0.1, "mean": 0.11},
                    full={"WT": 0.25, "TC": 0.03, "ET": 0.08, "mean": 0.121},
                    missing={"WT": 0.5, "TC": 0.03, "ET": 0.31, "mean": 0.28},
                    segmenter_validation={"WT": 0.31, "TC": 0.02, "ET": 0.05, "mean": 0.127})
    entry["extractor"] = {"name": "segmenter-cpu-full", "sha256": "e" * 64}
    fabricate(tmp_path, "phantom-brats-missing1", "mmgan", BASE, dice=entry)
    with pytest.raises(MribenchError) as refused:
        build_paper_tables(["phantom-brats-missing1"], tmp_path)
    message = str(refused.value)
    assert "Full (all real) averages 12.10 % but Missing (available only) 28.00 %" in message
    assert "segmenter-cpu-full" in message and "WT 0.310, TC 0.020, ET 0.050, mean 0.127" in message
    result = cli.invoke(app, ["leaderboard", "--task", "phantom-brats-missing1", "--runs", str(tmp_path),
                              "--layout", "paper"])
    assert result.exit_code == 2 and "segmenter-cpu-full" in result.output and "Traceback" not in result.output
    # the committed folder and the report withhold the table instead, saying why in its place
    withheld = [grid for grid in build_paper_tables(["phantom-brats-missing1"], tmp_path, withhold_refused=True)
                if grid.key == "phantom-brats-dice"]
    assert withheld[0].title.endswith(": withheld") and "segmenter-cpu-full" in withheld[0].rows[0].cells[0].text
    assert "12.10" in render(withheld, "md") and "Full (all real)" not in withheld[0].title
    # the same results with the Full row above the Missing row render, and so does a Full row below it by noise
    # (within INVERSION_MARGIN points), while one further below is refused
    for full_mean, renders in ((0.9, True), (0.28 - 0.5 * INVERSION_MARGIN / 100, True),
                               (0.28 - 1.5 * INVERSION_MARGIN / 100, False)):
        entry["aggregate"]["full"] = {"WT": 0.95, "TC": 0.9, "ET": 0.85, "mean": full_mean}
        fabricate(tmp_path, "phantom-brats-missing1", "mmgan", BASE, dice=entry)
        dice = [grid for grid in build_paper_tables(["phantom-brats-missing1"], tmp_path, withhold_refused=True)
                if grid.key == "phantom-brats-dice"]
        assert len(dice) == 1 and dice[0].title.endswith(": withheld") != renders


def _every_table(runs, tasks, fallback=None) -> dict[str, str]:
    plain, paper = build_table(tasks, runs, fallback=fallback), build_paper_tables(tasks, runs, fallback=fallback)
    return {f"{layout} {fmt}": render(grids, fmt) for layout, grids in (("plain", plain), ("paper", paper))
            for fmt in FORMATS}


def test_tables_render_from_results_alone_with_no_plugin_installed(tmp_path, monkeypatch):
    _brain_runs(tmp_path / "described")
    tasks = [f"phantom-brats-missing{k}" for k in (1, 2, 3)]
    expected = _every_table(tmp_path / "described", tasks)
    assert "MMGAN" in expected["paper md"] and "**" in expected["plain md"] and "psnr ↑" in expected["plain md"]
    # no plugin at all: not even the built-in metrics, nor the baselines and CoPeDiT
    empty = Registry(entry_points=False)
    empty._items = {kind: {} for kind in empty._items}
    set_registry(empty)
    monkeypatch.setattr("mribench.plugins.Registry", None)  # building another registry would fail loudly
    try:
        assert registry().names("method") == [] and registry().names("metric") == []
        assert _every_table(tmp_path / "described", tasks) == expected
    finally:
        set_registry(None)


def test_results_written_before_self_description_are_described_by_the_installed_plugins(tmp_path):
    tasks = [f"phantom-brats-missing{k}" for k in (1, 2, 3)]
    _brain_runs(tmp_path / "described")
    _brain_runs(tmp_path / "old", described=False)
    assert _every_table(tmp_path / "old", tasks, fallback=registry()) == _every_table(tmp_path / "described", tasks)
    bare = _every_table(tmp_path / "old", tasks)  # nothing to describe them: registry names, no direction
    assert "MMGAN" not in bare["paper md"] and "| mmgan |" in bare["paper md"] and "Other methods" in bare["paper md"]
    assert "**" not in bare["plain md"] and "psnr ↑" not in bare["plain md"]


def test_cli_paper_layout_formats_and_reference_flag(tmp_path):
    _brain_runs(tmp_path)
    base = ["leaderboard", "--task", "phantom-brats-missing1", "--runs", str(tmp_path)]
    page = tmp_path / "board.html"
    result = cli.invoke(app, base + ["--layout", "paper", "--reference", "--format", "html", "--output", str(page)])
    assert result.exit_code == 0, result.output
    assert "reported (paper)" in page.read_text() and "CoPeDiT" in page.read_text()
    refused = cli.invoke(app, base + ["--reference"])
    assert refused.exit_code == 2 and "--layout paper" in refused.output


# -- the paper's ablation tables ---------------------------------------------------------------------------------
ABLATION_LEVELS = {"copedit": 2.0, "copedit-no-count": 1.0, "copedit-no-prompts": -0.5, "copedit-unet": 0.5}


def _ablation_runs(runs, seeds=(0, 1, 2)):
    """CoPeDiT and three variants on the BraTS twin, missing 1, each seed shifted by 0.1 dB × seed."""
    for method, level in ABLATION_LEVELS.items():
        for seed in seeds:
            fabricate(runs, "phantom-brats-missing1", method, BASE + level + 0.1 * seed, seed=seed,
                      ssim=np.full(len(SUBJECTS), 0.6 + level / 100))


def _labels(grid):
    return [(row.kind, row.label) for row in grid.rows]


def test_ablation_tables_have_the_papers_rows_labelled_references_and_the_results_means(tmp_path):
    _ablation_runs(tmp_path)
    grids = build_paper_tables(["phantom-brats-missing1"], tmp_path, fallback=registry())
    ablations = {g.key: g for g in grids if g.key.startswith("ablation-")}
    task = "phantom-brats-missing1-cpu"
    assert list(ablations) == [f"ablation-prompts-{task}", f"ablation-diffuser-{task}"], \
        "a table with fewer than two rows run (injection position, joint loss: CoPeDiT only) is not shown"
    prompts = ablations[f"ablation-prompts-{task}"]
    assert [label for _, label in prompts.columns] == ["PSNR", "SSIM"]
    assert _labels(prompts) == [
        ("result", "full (count + position + assessment prompts) (copedit)"),
        ("reported", "full (count + position + assessment prompts) — reported (paper)"),
        ("result", "w/o prompts (copedit-no-prompts)"), ("reported", "w/o prompts — reported (paper)"),
        ("result", "w/o count prompt (copedit-no-count)"), ("reported", "w/o count prompt — reported (paper)"),
        ("result", "w/o position prompt (copedit-no-position)"), ("reported", "w/o position prompt — reported (paper)"),
        ("result", "w/o assessment prompt (copedit-no-assessment)"),
        ("reported", "w/o assessment prompt — reported (paper)"),
        ("result", "binary mask codes instead of prompts (copedit-maskcode)"),
        ("reported", "binary mask codes instead of prompts — reported (paper)")]
    rows = {row.label: row for row in prompts.rows}
    paper = {"full (count + position + assessment prompts)": 28.26, "w/o prompts": 25.92, "w/o count prompt": 27.35,
             "w/o position prompt": 26.92, "w/o assessment prompt": 27.56,
             "binary mask codes instead of prompts": 27.18}
    for label, value in paper.items():
        reported = rows[f"{label} — reported (paper)"].cells
        assert reported[0].text == f"{value:.2f}" and reported[0].mark is None and reported[1].text == "–"
    for method, level in ABLATION_LEVELS.items():
        if method == "copedit-unet":
            continue
        label = next(row.label for row in prompts.rows if row.label.endswith(f"({method})"))
        expected = np.mean([BASE.mean() + level + 0.1 * seed for seed in (0, 1, 2)])
        assert rows[label].cells[0].cell.mean == pytest.approx(expected, abs=1e-9), "mean over seeds of the means"
        assert rows[label].cells[0].cell.seeds == 3
    for method in ("copedit-no-position", "copedit-no-assessment", "copedit-maskcode"):
        label = next(row.label for row in prompts.rows if row.label.endswith(f"({method})"))
        assert [cell.text for cell in rows[label].cells] == ["not run", "not run"], "never invented"
    assert rows["full (count + position + assessment prompts) (copedit)"].cells[0].mark == "best"
    assert rows["w/o count prompt (copedit-no-count)"].cells[0].mark == "second"
    assert any("brats-missing1 — real data, not comparable" in line for line in prompts.footnote)

    diffuser = ablations[f"ablation-diffuser-{task}"]
    assert [label for kind, label in _labels(diffuser) if kind == "result"] == [
        "MDiT3D (copedit)", "3D U-Net (copedit-unet)", "DiT (copedit-dit)", "DiT-3D (copedit-dit3d)"]
    assert [row.cells[0].text for row in diffuser.rows if row.kind == "reported"] == \
        ["28.26", "25.61", "26.78", "26.84"]


def test_ablation_tables_need_no_plugin_and_render_in_every_format(tmp_path):
    """Results describe their ablation rows: without the installed plugins the tables show the rows run."""
    _ablation_runs(tmp_path, seeds=(0,))
    fabricate(tmp_path, "phantom-brats-missing1", "copedit-inject-both", BASE + 1.5, ssim=np.full(12, 0.6))
    grids = [g for g in build_paper_tables(["phantom-brats-missing1"], tmp_path) if g.key.startswith("ablation-")]
    assert [g.title for g in grids] == [f"Ablation: {name} — phantom-brats-missing1, cpu preset"
                                        for name in ("Prompts", "Injection position", "Diffuser")]
    assert [label for kind, label in _labels(grids[1]) if kind == "result"] == [
        "primary blocks (Modal / Spatial) (copedit)", "both (copedit-inject-both)"]
    assert not any("not run" in cell.text for g in grids for row in g.rows for cell in row.cells)
    rows = list(csv.DictReader(io.StringIO(render(grids, "csv"))))
    reported = [r for r in rows if r["row_kind"] == "reported" and r["column"] == "PSNR"]
    assert {r["row"]: r["mean"] for r in reported}["both — reported (paper)"] == "27.76"
    assert not any(r["mark"] for r in reported)
    latex = render(grids, "latex")
    assert r"\textit{both — reported (paper)} & \textit{27.76} & \textit{--}" in latex
    html5lib.HTMLParser(strict=True).parse(render(grids, "html"))
    assert "| *w/o count prompt — reported (paper)* | *27.35* | – |" in render(grids, "md")


def test_the_readme_block_names_rows_made_with_another_config_of_the_installed_preset(tmp_path, monkeypatch):
    tasks = [f"phantom-brats-missing{k}" for k in (1, 2, 3)]
    for k in (1, 2, 3):
        fabricate(tmp_path, tasks[k - 1], "mmgan", [20.0] * len(SUBJECTS), missing=k)
        fabricate(tmp_path, tasks[k - 1], "mmt", [21.0] * len(SUBJECTS), missing=k)
    assert outdated_methods(collect(tasks, tmp_path, registry())) == []
    assert "Outdated rows" not in readme_block(tasks, tmp_path, registry())
    mmgan = registry().method("mmgan")
    monkeypatch.setitem(mmgan.presets, "cpu", dataclasses.replace(mmgan.presets["cpu"], steps=1))
    assert outdated_methods(collect(tasks, tmp_path, registry())) == ["MMGAN"]
    assert "`make leaderboard` redoes them): MMGAN." in " ".join(readme_block(tasks, tmp_path, registry()).split())
    assert outdated_methods(collect(tasks, tmp_path)) == []  # no installed presets to compare with: no claim
