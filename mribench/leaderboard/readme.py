"""The README's generated blocks, built from the same tables as the committed folders: the results block (between
its ``leaderboard:begin`` / ``leaderboard:end`` markers, from ``leaderboard/``) and the ablations block
(``ablations:begin`` / ``ablations:end``, from ``leaderboard/ablations/``). A suite writes the block named by its
``make_target``."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Callable

from mribench.analyze import analysis_figures
from mribench.atomic import atomic_write_text
from mribench.errors import MribenchError
from mribench.leaderboard.collect import Collection, Descriptions, collect
from mribench.leaderboard.grid import Grid, GridRow
from mribench.leaderboard.layouts.paper import GROUP_TITLES, REPORTED, by_dataset, paper_tables, prompts_grid
from mribench.leaderboard.render import render
from mribench.leaderboard.report import analysis_figure_name

README_BEGIN = "<!-- leaderboard:begin -->"
README_END = "<!-- leaderboard:end -->"
README_WIDTH = 120
README_NOTE = "<!-- generated from leaderboard/results by `make leaderboard` / `make readme`; edits here are lost -->"
ABLATIONS_NOTE = "<!-- generated from leaderboard/ablations/results by `make ablations`; edits here are lost -->"


def markers(block: str) -> tuple[str, str]:
    """The begin and end marker lines of the README block ``block`` (``leaderboard`` or ``ablations``)."""
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


def _readme_parts(readme: Path, block: str = "leaderboard") -> tuple[str, str]:
    """The README up to and including the block's begin-marker line, and from its end-marker line on."""
    if block not in README_BLOCKS:
        raise MribenchError(f"the README has no generated block for '{block}' (blocks: {', '.join(README_BLOCKS)})")
    begin, end = markers(block)
    try:
        lines = Path(readme).read_text().splitlines(keepends=True)
    except OSError as error:
        raise MribenchError(f"cannot read the README {readme}: {error.strerror or error}") from error
    begins = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise MribenchError(f"{readme}: needs one line {begin} and, below it, one line {end} around "
                            f"the generated {block} block")
    return "".join(lines[:begins[0] + 1]), "".join(lines[ends[0]:])


def check_readme(readme: Path, block: str = "leaderboard") -> None:
    """Refuses, before any long work, a README the block cannot be written into."""
    _readme_parts(readme, block)


def write_readme_block(readme: Path, tasks: list[str], results: Path, fallback: Descriptions | None = None,
                       block: str = "leaderboard") -> Path:
    """Replace the text between the block's markers with its markdown (:func:`readme_block` or
    :func:`ablations_block`, from the leaderboard folder's ``results``); the rest is kept byte for byte."""
    before, after = _readme_parts(readme, block)
    figures = Path(os.path.relpath(Path(results).parent / "figures", Path(readme).parent)).as_posix()
    atomic_write_text(readme, before + README_BLOCKS[block](tasks, results, fallback, figures) + after)
    return readme


def readme_block(tasks: list[str], results: Path, fallback: Descriptions | None = None,
                 figures: str = "leaderboard/figures") -> str:
    """Markdown for the README's results section, built from the same tables as ``leaderboard/``: the run count and
    time, per dataset the PSNR columns of its main table and which methods beat the strongest floor, and the
    +Prompts differences beside the paper's."""
    collection = collect(tasks, results, fallback)
    found = [result for _, result in collection.all_results()]
    minutes = sum(sum(result.timings.values()) for result in found) / 60
    fit = sum(result.timings.get("fit_or_load_s", 0.0) for result in found) / 60
    presets = ", ".join(sorted({result.method["preset"] for result in found}))
    parts = [README_NOTE, "",
             _wrap(f"{len(found)} runs over {len(collection.tasks)} tasks at the `{presets}` preset: {minutes:.0f} min "
                   f"of run time summed over the results' timings, {fit:.0f} min of it fitting or loading models. PSNR "
                   "in dB on the missing elements, mean ± std over test subjects, [std over seeds] when there are "
                   "several; best bold, second italic; †: the paired Wilcoxon test against the runner-up holds in "
                   "every seed. The full tables (SSIM, FID, FVD, Dice, provenance) are in "
                   "[`leaderboard/`](leaderboard/)."), ""]
    if outdated := outdated_methods(collection):
        parts += [_wrap("**Outdated rows** (made with an earlier config of their preset than the installed one; "
                        f"`make leaderboard` redoes them): {', '.join(outdated)}."), ""]
    main = {grid.key: grid for grid in paper_tables(collection, withhold_refused=True)}
    psnr_label = collection.metric_label("psnr")
    for dataset, dataset_tasks in by_dataset(collection).items():
        psnr = _columns_of(main[dataset], lambda group, label: label == psnr_label, lambda g, _: g)
        subjects = " / ".join(sorted({str(collection.task_info(task)["n_test"]) for task in dataset_tasks}))
        parts += [f"**{main[dataset].title}** ({subjects} test subjects)", "", render(psnr, "md").rstrip("\n"), ""]
        parts += [comparison, ""] if (comparison := _floor_comparison(psnr)) else []
    parts += [_wrap(f"**{grid.title}**: {grid.rows[0].cells[0].text}") + "\n"
              for grid in main.values() if grid.title.endswith(": withheld")]
    if prompts := prompts_grid(collection, reference=True):
        suffix = f" {psnr_label}"
        delta = _columns_of(prompts, lambda group, label: label == "Δ" and group.endswith(suffix),
                            lambda group, _: group.removesuffix(suffix))
        parts += [_wrap("**+Prompts − base, PSNR difference (dB)** over the seeds both have; †: the paired test "
                        f"between the two holds in every seed; *{REPORTED}*: the paper's numbers on the real dataset "
                        "(not comparable with the phantoms)"), "",
                  render(delta, "md").rstrip("\n"), ""]
    return "\n".join(parts)


def outdated_methods(collection: Collection) -> list[str]:
    """Display names of the rows with a result made with another config than the installed preset's."""
    return sorted({collection.display_name(method) for method, preset in collection.rows()
                   if collection.outdated((method, preset), [result for task in collection.tasks
                                                              for result in collection.get(task, (method, preset))])})


def ablations_block(tasks: list[str], results: Path, fallback: Descriptions | None = None,
                    figures: str = "leaderboard/ablations/figures") -> str:
    """Markdown for the README's ablations section: the paper's Prompts ablation table and the prompt-corruption
    table (with the paper's rows where it has them), and the corruption figure (``figures``: the URL of the folder's
    ``figures/`` from the README)."""
    collection = collect(tasks, results, fallback)
    grids = paper_tables(collection, reference=True, withhold_refused=True)
    shown = [grid for grid in grids if grid.key.startswith(("ablation-prompts-", "prompt-corruption-"))]
    seeds = sorted({result.seed for _, result in collection.all_results()})
    parts = [ABLATIONS_NOTE, "",
             _wrap(f"Seeds {', '.join(map(str, seeds))}; PSNR in dB and SSIM on the missing elements of the test "
                   "subjects, mean ± std over subjects; best bold, second italic; *reported (paper)*: the paper's "
                   "number on real BraTS (compare directions, not values). The footnotes (steps, fit minutes, "
                   "extractors) are in [`leaderboard/ablations/`](leaderboard/ablations/leaderboard.md)."), ""]
    for grid in shown:
        bare = Grid(key=grid.key, title=grid.title, columns=grid.columns, rows=grid.rows)
        parts += [f"**{grid.title}**", "", render(bare, "md").rstrip("\n"), ""]
    for task in collection.tasks:
        for row in collection.rows(task):
            for path, result in collection.results[(task, *row)]:
                if any(png.name == "corruption.png" for _, png in analysis_figures(path.parent)):
                    name = analysis_figure_name(task, row, result.seed, "prompts", "corruption") + ".png"
                    parts += [f"![prompt corruption, {task}, {row[0]} seed {result.seed}]({figures}/{name})", ""]
    return "\n".join(parts)


README_BLOCKS: dict[str, Callable[..., str]] = {"leaderboard": readme_block, "ablations": ablations_block}


def _columns_of(grid: Grid, keep, label) -> Grid:
    """A copy of ``grid`` with only the columns ``keep(group, label)`` accepts, relabelled ``label(group, label)``,
    without footnote."""
    chosen = [i for i, (group, name) in enumerate(grid.columns) if keep(group, name)]
    rows = [GridRow(row.label, [row.cells[i] for i in chosen], row.kind) for row in grid.rows]
    return Grid(key=grid.key, title=grid.title, columns=[("", label(*grid.columns[i])) for i in chosen], rows=rows)


def _floor_comparison(grid: Grid) -> str:
    """Which methods' mean beats every floor's at every missing count (column), at some (named) and at none."""
    floors, others, section = [], [], None
    for row in grid.rows:
        if row.kind == "section":
            section = row.label
        elif row.kind == "result":
            (floors if section == GROUP_TITLES["floor"] else others).append(row)
    means = [[c.cell.mean if c.cell is not None and c.cell.ok else None for c in row.cells] for row in floors]
    best = [max((m[i] for m in means if m[i] is not None), default=None) for i in range(len(grid.columns))]
    if not floors or not others or None in best:
        return ""
    groups: dict[str, list[str]] = {"every": [], "some": [], "none": []}
    for row in others:
        above = [grid.columns[i][1] for i, cell in enumerate(row.cells)
                 if cell.cell is not None and cell.cell.ok and cell.cell.mean > best[i]]
        if len(above) == len(grid.columns):
            groups["every"].append(row.label)
        elif above:
            groups["some"].append(f"{row.label} ({', '.join(above)})")
        else:
            groups["none"].append(row.label)
    return _wrap(f"Mean PSNR above every floor ({', '.join(row.label for row in floors)}) at every missing count: "
                 f"{', '.join(groups['every']) or 'none'}; at some: {', '.join(groups['some']) or 'none'}; at none: "
                 f"{', '.join(groups['none']) or 'none'}.")


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=README_WIDTH, break_long_words=False, break_on_hyphens=False)
