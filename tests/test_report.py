"""Report figures, the self-contained HTML page and the leaderboard folder, from real floor runs on the tiny tasks."""
import io
import json
import re
import shutil
from pathlib import Path

import html5lib
import matplotlib
import matplotlib.image
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mribench.analyze import AnalysisTable, AnalysisTableRow
from mribench.cli import app
from mribench.errors import MribenchError
from mribench.leaderboard.cells import Cell
from mribench.leaderboard.grid import Grid, GridCell, GridRow
from mribench.leaderboard.layouts.paper import GROUP_TITLES, build_paper_tables
from mribench.leaderboard.layouts.plain import build_table
from mribench.leaderboard.readme import (README_BEGIN, README_END, _floor_comparison, ablations_block, markers, readme_block,
                                        write_readme_block)
from mribench.leaderboard.render import render
from mribench.leaderboard.report import GREY_STEP, TABLE_FILES, palette_png, write_leaderboard_folder
from mribench.leaderboard.suite import load_suite
from mribench.metrics.aggregate import summarize
from mribench.plugins import registry
from mribench.results import Result, run_dir, write_result
from mribench.runner import RunRequest, run

BRAIN = ["tiny-brain-missing1", "tiny-brain-missing2"]
CARDIAC = "tiny-cardiac-missing4"


def _floor_runs(out, brain: bool):
    """Floors at the smoke preset on the tiny cardiac task and, with ``brain``, the tiny brain tasks
    (mean-available with two seeds)."""
    for task in BRAIN if brain else []:
        for method, seeds in (("zero-fill", [0]), ("mean-available", [0, 1]), ("nearest-contrast", [0])):
            for seed in seeds:
                run(RunRequest(method=method, task=task, preset="smoke", seed=seed, out=out))
    for method in ("zero-fill", "slice-interp"):
        run(RunRequest(method=method, task=CARDIAC, preset="smoke", out=out))
    return out


def assert_valid_html(page: str) -> None:
    """No browser here: parse as browsers do (the WHATWG algorithm, html5lib) and fail on any parse error."""
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(page)
    assert parser.errors == []


def _external_references(page: str) -> list[str]:
    return re.findall(r"(?:src|href)\s*=\s*[\"']?(?!data:)[^\"' >]+", page) + re.findall(r"https?://", page)


def test_png_folder_holds_readable_palette_figures(tiny_registry, tmp_path):
    runs = _floor_runs(tmp_path / "runs", brain=False)
    result = CliRunner().invoke(app, ["report", "--task", CARDIAC, "--runs", str(runs), "--output",
                                      str(tmp_path / "figures")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "figures").iterdir())
    assert [p.name for p in written] == [f"{CARDIAC}-psnr-box.png", f"{CARDIAC}-qualitative.png"]
    qualitative = next(p for p in written if "qualitative" in p.name)
    grid = matplotlib.image.imread(qualitative)
    assert grid.shape[0] > 500 and grid.shape[1] > 300 and grid[..., :3].std() > 0.05, "an actual picture"
    for path in written:
        with Image.open(path) as image:
            assert image.mode == "P", f"{path.name}: a palette PNG"
    assert qualitative.stat().st_size < 100_000


def test_palette_png_keeps_greys_grey_and_the_error_colours_close():
    greys = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    magma = (matplotlib.colormaps["magma"](np.linspace(0, 1, 256))[None, :, :3] * 255).round().astype(np.uint8)
    for original in (np.stack([greys] * 3, axis=-1), np.repeat(magma, 8, axis=0)):
        png = palette_png(Image.fromarray(original))
        with Image.open(io.BytesIO(png)) as image:
            assert image.mode == "P"
            decoded = np.asarray(image.convert("RGB")).astype(int)
        assert np.abs(decoded - original).max() <= 6
    assert (decoded != np.asarray(Image.fromarray(original))).any(), "quantised, not copied"
    grey_decoded = np.asarray(Image.open(io.BytesIO(palette_png(Image.fromarray(greys)))).convert("RGB")).astype(int)
    assert (grey_decoded[..., 0] == grey_decoded[..., 1]).all() and (grey_decoded[..., 1] == grey_decoded[..., 2]).all()
    assert np.abs(grey_decoded[..., 0] - greys).max() <= GREY_STEP // 2 and grey_decoded.max() == 255


def test_html_report_is_one_self_contained_page(tiny_registry, tmp_path):
    runs = _floor_runs(tmp_path / "runs", brain=False)
    result = CliRunner().invoke(app, ["report", "--task", CARDIAC, "--runs", str(runs), "--output",
                                      str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir() if p.name != "runs"] == ["report.html"]
    page = (tmp_path / "report.html").read_text()
    assert_valid_html(page)
    assert _external_references(page) == [] and page.count('src="data:image/png;base64,') == 2


def test_leaderboard_folder_tables_report_and_result_copies(tiny_registry, tmp_path):
    """Tables rebuild from the folder's own JSON copies; report.html links every figure of figures/ once."""
    runs = _floor_runs(tmp_path / "runs", brain=True)
    tasks = BRAIN + [CARDIAC]
    out = tmp_path / "leaderboard"
    write_leaderboard_folder(runs, out, tasks, dataset_classes=registry().dataset)
    names = {p.name for p in out.iterdir()}
    assert {"leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "leaderboard-reference.md",
            "plain.md", "report.html", "results", "figures"} <= names
    pngs = sorted(p.name for p in (out / "figures").iterdir())
    assert "tiny-brain-missing1-qualitative.png" in pngs and "tiny-brain-psnr-vs-missing.png" in pngs
    copies = sorted(p.relative_to(out / "results").as_posix() for p in (out / "results").glob("**/result.json"))
    assert len(copies) == 2 * 4 + 2 and "tiny-brain-missing1/mean-available/smoke-seed1/result.json" in copies
    rebuilt = render(build_paper_tables(tasks, out / "results"), "md")
    assert (out / "leaderboard.md").read_text() == rebuilt, "the committed tables follow from the committed JSONs"
    assert (out / "plain.md").read_text() == render(build_table(tasks, out / "results"), "md")
    assert "[0.00]" in (out / "leaderboard.md").read_text(), "two seeds of mean-available: seed std shown"
    page = (out / "report.html").read_text()
    assert_valid_html(page)
    assert "data:" not in page and re.findall(r"https?://", page) == []
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert sorted(sources) == [f"figures/{name}" for name in pngs], "each figure stored once, linked relatively"
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == 7
    assert any(c.startswith("tiny-brain-missing1: qualitative") for c in captions)
    assert any(c.startswith("tiny-brain: mean PSNR") for c in captions), "PSNR vs missing count across the dataset"
    assert "<h2>tiny-brain: missing 1 / 2 of 3 modalities (A, B, C)</h2>" in page and "nearest-contrast" in page
    (runs / CARDIAC / "zero-fill").rename(tmp_path / "moved")
    write_leaderboard_folder(runs, out, tasks, dataset_classes=registry().dataset)
    assert not (out / "results" / CARDIAC / "zero-fill").exists(), "copies of removed runs do not linger"


def test_leaderboard_folder_refreshes_from_its_own_results(tiny_registry, tmp_path):
    """Rebuilt from its result copies (no predictions there): the same tables byte for byte, the qualitative figures
    kept as drawn; without an earlier figure to keep, the refusal names the task."""
    tasks = BRAIN + [CARDIAC]
    out = tmp_path / "leaderboard"
    runs = _floor_runs(tmp_path / "runs", brain=True)
    for seed, psnr in ((0, 30.0), (1, 31.0)):  # an analysis' stored table and figure in both seeds' run folders
        folder = run_dir(runs, BRAIN[0], "mean-available", "smoke", seed) / "analysis" / "probe"
        AnalysisTable("probe", "A probe table", [("psnr", "PSNR"), ("acc", "acc.")],
                      [AnalysisTableRow("ours", {"psnr": psnr, "acc": None}),
                       AnalysisTableRow("ablated", {"psnr": 25.0, "acc": 0.5}),
                       AnalysisTableRow("theirs — reported (paper)", {"psnr": 35.05, "acc": None}, "reported")]
                      ).write(folder)
        Image.new("RGB", (4, 4), (200, 10, 10)).save(folder / "curve.png")
        (folder / "analysis.json").write_text(json.dumps({"files": ["analysis.json", "curve.png",
                                                                   "probe.table.json"]}))
        shutil.copytree(folder, folder.parent / ".probe.staging")  # an interrupted rerun's leftovers: never read
    write_leaderboard_folder(runs, out, tasks, dataset_classes=registry().dataset)
    table = (out / "leaderboard.md").read_text().split("### A probe table")[1]
    assert "| ours | **30.50 [0.71]** | n/a |" in table and "| ablated | _25.00 [0.00]_ | 0.500 [0.000] |" in table, \
        "result rows: the mean over seeds (seed std in brackets), marked by the metric's direction"
    assert "| *theirs — reported (paper)* | *35.05* | – |" in table, "reported rows as stored, labelled"
    copied = out / "results" / BRAIN[0] / "mean-available" / "smoke-seed1" / "analysis"
    assert [p.name for p in copied.iterdir()] == ["probe"], "the analysis folder is copied, no staging folder"
    assert sorted(p.name for p in (copied / "probe").iterdir()) == ["analysis.json", "probe.table.json"], \
        "figures/ holds the analysis figures: the copies keep no PNG"
    probe_figures = sorted(p.name for p in (out / "figures").glob("*-probe-curve.png"))
    assert len(probe_figures) == 2
    tables = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    qualitative = (out / "figures" / f"{CARDIAC}-qualitative.png").read_bytes()
    write_leaderboard_folder(out / "results", out, tasks, dataset_classes=registry().dataset)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == tables
    assert (out / "figures" / f"{CARDIAC}-qualitative.png").read_bytes() == qualitative
    assert len(list((out / "results").glob("**/result.json"))) == 10
    assert "### A probe table" in (out / "leaderboard.md").read_text(), "rebuilt from the copied analysis folder"
    assert sorted(p.name for p in (out / "figures").glob("*-probe-curve.png")) == probe_figures, "figures kept"
    (out / "figures" / f"{CARDIAC}-qualitative.png").unlink()
    with pytest.raises(MribenchError, match=f"{CARDIAC}: the runs under .* hold no predictions"):
        write_leaderboard_folder(out / "results", out, tasks, dataset_classes=registry().dataset)


def _result_with_extractor(runs, task, dataset, method, sha256, seed=0, shift=0.0):
    values = {f"s{i}": 20.0 + i + shift + (0.5 if method.endswith("+prompts") else 0.0) for i in range(6)}
    segmenter = {"name": "segmenter-cpu-full", "sha256": sha256}
    metrics = {"psnr": {"status": "ok", "per_subject": values, "aggregate": summarize(values), "extractor": None},
               "fd-seg": {"status": "ok", "per_subject": values, "aggregate": summarize(values),
                          "extractor": segmenter}}
    result = Result(task={"name": task, "version": 1, "hash": task.ljust(64, "0"), "split_hash": "b" * 64,
                          "dataset": dataset, "problem": "missing-modality", "missing": 1, "elements": ["A", "B"],
                          "n_test": 6},
                    method={"name": method, "version": "0.1.0", "plugin": "test", "preset": "cpu", "config": "{}",
                            "config_hash": "c" * 16, "reads_mask": True},
                    seed=seed, metrics=metrics, subjects=sorted(values), provenance={"packages": {"mribench": "9"}})
    write_result(result, run_dir(runs, task, method, "cpu", seed))


def test_footnotes_show_each_datasets_own_segmenter(tmp_path):
    """The +Prompts table spans both datasets: each dataset's cells name its own segmenter's hash."""
    for task, dataset, sha in (("phantom-brats-missing1", "phantom-brats", "a" * 64),
                               ("phantom-cardiac-missing8", "phantom-cardiac", "c" * 64)):
        for method in ("mmt", "mmt+prompts"):
            _result_with_extractor(tmp_path, task, dataset, method, sha)
    grids = {grid.key: grid for grid in build_paper_tables(["phantom-brats-missing1", "phantom-cardiac-missing8"],
                                                           tmp_path)}
    prompts = [line for line in grids["prompts"].footnote if line.startswith("extractors")]
    assert prompts == ["extractors of phantom-brats — fd-seg: segmenter-cpu-full sha256 aaaaaaaaaaaa",
                       "extractors of phantom-cardiac — fd-seg: segmenter-cpu-full sha256 cccccccccccc"]
    brain = "\n".join(grids["phantom-brats"].footnote)
    assert "sha256 aaaaaaaaaaaa" in brain and "cccc" not in brain


def test_prompts_difference_pairs_the_seeds_both_rows_have(tmp_path):
    """A base with seeds 0 and 1 (seed 1 two dB higher) beside a +Prompts run of seed 0 only: the difference is
    seed 0's +0.5 dB, not the +Prompts mean minus the base's mean over both seeds (-0.5 dB)."""
    task = "phantom-brats-missing1"
    _result_with_extractor(tmp_path, task, "phantom-brats", "mmt", "a" * 64, seed=0)
    _result_with_extractor(tmp_path, task, "phantom-brats", "mmt", "a" * 64, seed=1, shift=2.0)
    _result_with_extractor(tmp_path, task, "phantom-brats", "mmt+prompts", "a" * 64, seed=0)
    grid = {grid.key: grid for grid in build_paper_tables([task], tmp_path)}["prompts"]
    assert [part for _, part in grid.columns] == ["base", "+Prompts", "Δ"]
    base, prompts, delta = (cell.text for cell in grid.rows[0].cells)
    assert base.startswith("23.50 ±") and prompts.startswith("23.00 ±") and delta == "+0.50"
    assert any("over the seeds both have" in line for line in grid.footnote)


# -- the README's generated block and the committed folder ------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "leaderboard"


def test_floor_comparison_names_who_beats_every_floor_where():
    def cell(mean):
        return GridCell(f"{mean}", Cell(mean=mean))

    grid = Grid(key="d", title="d", columns=[("", "missing 1"), ("", "missing 2")], rows=[])
    grid.section(GROUP_TITLES["floor"])
    grid.rows += [GridRow("floor-a", [cell(10.0), cell(20.0)]), GridRow("floor-b", [cell(15.0), cell(5.0)])]
    grid.section(GROUP_TITLES["gan"])
    grid.rows += [GridRow("X", [cell(16.0), cell(21.0)]), GridRow("Y", [cell(16.0), cell(19.0)]),
                  GridRow("Z", [cell(15.0), cell(20.0)])]
    assert _floor_comparison(grid) == ("Mean PSNR above every floor (floor-a, floor-b) at every missing count: X; at "
                                       "some: Y (missing 1); at none: Z.")


def test_readme_block_replaces_only_the_text_between_the_markers(tiny_registry, tmp_path):
    runs = _floor_runs(tmp_path / "runs", brain=True)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nprose [x]\n{README_BEGIN}\nstale 1.23\n{README_END}\nafter\n")
    write_readme_block(readme, BRAIN, runs)
    text = readme.read_text()
    assert text.startswith(f"# title\n\nprose [x]\n{README_BEGIN}\n") and text.endswith(f"{README_END}\nafter\n")
    assert "stale" not in text and "| mean-available |" in text and "| method | missing 1 | missing 2 |" in text
    assert "8 runs over 2 tasks at the `smoke` preset" in text and "\n\n\n" not in text
    assert "at every missing count" not in text, "floors only: no method to compare with them"
    write_readme_block(readme, BRAIN, runs)
    assert readme.read_text() == text, "rewriting is idempotent"
    twice = f"{README_BEGIN}\n{README_BEGIN}\n{README_END}\n"
    for broken in ("no markers\n", f"{README_END}\n{README_BEGIN}\n", twice):
        readme.write_text(broken)
        with pytest.raises(MribenchError, match="needs one line <!-- leaderboard:begin -->"):
            write_readme_block(readme, BRAIN, runs)
        assert readme.read_text() == broken


def test_reproduce_from_results_refuses_a_bad_readme_first_then_rebuilds(tiny_registry, tmp_path):
    out = tmp_path / "leaderboard"
    write_leaderboard_folder(_floor_runs(tmp_path / "runs", brain=True), out, BRAIN,
                             dataset_classes=registry().dataset)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    command = ["reproduce", "--from-results", "--output", str(out), "--readme", str(readme)] + \
        [arg for task in BRAIN for arg in ("-t", task)]
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 2 and "needs one line" in refused.output and "Traceback" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "nothing touched"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "the same folder, byte for byte"
    assert readme.read_text() == f"{README_BEGIN}\n{readme_block(BRAIN, out / 'results')}{README_END}\n"


def test_committed_tables_and_readme_regenerate_byte_identical_from_the_committed_results():
    """leaderboard/'s tables and README.md's results block are what the code makes of leaderboard/results (after a
    change to the table code, `make readme` brings them up to date). The committed results predate
    self-description: the installed plugins describe them, as `make readme` does."""
    results, tasks, plugins = COMMITTED / "results", load_suite("phantom").tasks, registry()
    grids = build_paper_tables(tasks, results, withhold_refused=True, fallback=plugins)
    for fmt, name in TABLE_FILES.items():
        assert (COMMITTED / name).read_text() == render(grids, fmt, title="mribench leaderboard"), name
    assert (COMMITTED / "leaderboard-reference.md").read_text() == render(
        build_paper_tables(tasks, results, reference=True, withhold_refused=True, fallback=plugins), "md")
    assert (COMMITTED / "plain.md").read_text() == render(build_table(tasks, results, fallback=plugins), "md")
    readme = (ROOT / "README.md").read_text()
    block = readme.split(README_BEGIN + "\n", 1)[1].split(README_END, 1)[0]
    assert block == readme_block(tasks, results, fallback=plugins), "run `make readme`"


def test_committed_readme_ablations_block_regenerates_from_the_committed_ablation_results():
    """README.md's ablations block is what the code makes of leaderboard/ablations/results: the Prompts ablation
    table, the prompt-corruption table and the corruption figure, whose file is committed."""
    results = COMMITTED / "ablations" / "results"
    readme = (ROOT / "README.md").read_text()
    begin, end = markers("ablations")
    block = readme.split(begin + "\n", 1)[1].split(end, 1)[0]
    assert block == ablations_block(load_suite("ablations").tasks, results, fallback=registry()), "run `make ablations`"
    assert "**Ablation: Prompts — phantom-brats-missing1" in block
    figure = block.split("![", 1)[1].split("](", 1)[1].split(")", 1)[0]
    assert (ROOT / figure).is_file() and figure.endswith("-prompts-corruption.png")


def test_a_suite_without_a_readme_block_is_refused_before_running(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_BEGIN}\n{README_END}\n")
    result = CliRunner().invoke(app, ["reproduce", "--suite", "demo", "--readme", str(readme), "--runs",
                                      str(tmp_path / "runs"), "--task", "phantom-brats-missing2"])
    assert result.exit_code == 2 and "no generated block for 'demo'" in result.output
    assert not (tmp_path / "runs").exists()


def test_committed_leaderboard_is_small_and_stores_each_figure_once():
    size = sum(path.stat().st_size for path in COMMITTED.rglob("*") if path.is_file())
    assert size <= 5_000_000, f"leaderboard/ holds {size / 1e6:.1f} MB"
    page = (COMMITTED / "report.html").read_text()
    figures = sorted(path.name for path in (COMMITTED / "figures").iterdir())
    assert sorted(re.findall(r'<img [^>]*src="figures/([^"]+)"', page)) == figures and "data:" not in page
    for name in figures:
        with Image.open(COMMITTED / "figures" / name) as image:
            assert image.mode == "P", f"{name}: a palette PNG"
