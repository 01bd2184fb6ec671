"""The paper layout (``mribench leaderboard --layout paper``): the paper's table shapes, built from stored results.

* one main table per dataset: PSNR ± std, SSIM ± std, FID, FVD for each missing count of the dataset's tasks,
  rows grouped by method family (floors, GAN-based, diffusion-based, CoPeDiT, then CoPeDiT's ablation variants);
* the +Prompts table: each baseline beside its "+prompts" variant, with the signed difference;
* one Dice table per dataset with segmentation labels: Full (all real), Missing (available only), each method;
* the ablation tables and the analyses' stored tables (:mod:`~mribench.leaderboard.layouts.ablations`).

With ``reference=True`` the paper's numbers (``reference`` of the task YAMLs; a phantom task borrows its real twin's)
appear in italic rows labelled "reported (paper)" below ours; they never take part in the best/second marks.
"""
from __future__ import annotations

from collections.abc import Container
from pathlib import Path
from typing import Callable

from mribench.errors import MribenchError
from mribench.leaderboard.cells import Cell, metric_cell, significant
from mribench.leaderboard.collect import Collection, Descriptions, RowKey, collect
from mribench.leaderboard.grid import LEGEND, Grid, GridCell, GridRow, digits, footnote, marked_cells
from mribench.leaderboard.layouts.ablations import ablation_grids, analysis_grids
from mribench.leaderboard.layouts.reference import REPORTED, Reported, reported_for
from mribench.metrics.dice import SEGMENTER_VALIDATION

PROMPTS_SUFFIX = "+prompts"
MAIN_METRICS = ("psnr", "ssim", "fid", "fvd")
PROMPT_METRICS = ("psnr", "ssim")
GROUP_ORDER = ("floor", "gan", "diffusion", "other", "proposed", "ablation")
GROUP_TITLES = {"floor": "Floors", "gan": "GAN-based", "diffusion": "Diffusion-based", "other": "Other methods",
                "proposed": "CoPeDiT (the paper's method)", "ablation": "Ablations (CoPeDiT variants)"}


def family(collection: Collection, method: str) -> str:
    """The method's recorded family when it is one of the table's groups, else ``other``."""
    declared = collection.family(method)
    return declared if declared in GROUP_TITLES else "other"


def _reported_note(reported: dict[str, Reported | None]) -> list[str]:
    lines = []
    for task, item in reported.items():
        if item is None:
            lines.append(f"{REPORTED}: none for {task}")
        elif item.borrowed:
            lines.append(f"{REPORTED} beside {task}: the numbers of {item.task} ({item.source}) — real data, "
                         "not comparable with phantom numbers")
        else:
            lines.append(f"{REPORTED} for {task}: {item.source}")
    return lines


# -- shared pieces -------------------------------------------------------------------------------------------
def row_labels(collection: Collection, rows: list[RowKey]) -> dict[RowKey, str]:
    """Display names; the preset is added when one method appears with several presets."""
    presets: dict[str, set[str]] = {}
    for method, preset in rows:
        presets.setdefault(method, set()).add(preset)
    return {(m, p): collection.display_name(m) + (f" ({p})" if len(presets[m]) > 1 else "") for m, p in rows}


def by_dataset(collection: Collection) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for task in collection.tasks:
        groups.setdefault(collection.task_info(task)["dataset"], []).append(task)
    return {dataset: sorted(tasks, key=lambda t: collection.task_info(t)["missing"])
            for dataset, tasks in groups.items()}


def _missing_label(collection: Collection, task: str, tasks: list[str]) -> str:
    missing = [collection.task_info(t)["missing"] for t in tasks]
    return f"missing {collection.task_info(task)['missing']}" if len(set(missing)) == len(missing) else task


def _grouped_rows(collection: Collection, grid: Grid, rows: list[RowKey], labels: dict[RowKey, str], columns: list,
                  cells: dict[tuple, dict[RowKey, GridCell]], reported_cells, reported_only: list[str]) -> None:
    """Append family sections; under each of our rows the reported row (if any); then reported-only methods."""
    for group in GROUP_ORDER:
        ours = sorted((row for row in rows if family(collection, row[0]) == group), key=lambda r: labels[r])
        others = [name for name in reported_only if collection.family_of_display_name(name) == group]
        if not ours and not others:
            continue
        grid.section(GROUP_TITLES[group])
        for row in ours:
            grid.rows.append(GridRow(labels[row], [cells[column].get(row, GridCell("–")) for column in columns]))
            reported = reported_cells(collection.display_name(row[0]))
            if reported:
                grid.rows.append(GridRow(f"{labels[row]} — {REPORTED}", reported, kind="reported"))
        for name in others:
            grid.rows.append(GridRow(f"{name} — {REPORTED}", reported_cells(name), kind="reported"))


def _reported_row(columns, reported: dict[str, Reported | None],
                  metric_of) -> Callable[[str], list[GridCell] | None]:
    """A function paper-name → list of reported grid cells for ``columns`` (None when the paper has none)."""

    def cells(name: str) -> list[GridCell] | None:
        out, any_value = [], False
        for column in columns:
            task, metric = metric_of(column)
            item = reported.get(task)
            cell = item.cell(metric, name) if item else None
            any_value = any_value or cell is not None
            out.append(GridCell(cell.text(digits(metric)) if cell else "–", cell))
        return out if any_value else None

    return cells


# -- the tables ----------------------------------------------------------------------------------------------
def main_grid(collection: Collection, dataset: str, tasks: list[str], reference: bool) -> Grid:
    """PSNR/SSIM/FID/FVD per missing count; methods grouped by family (+prompts variants go to the +Prompts table)."""
    columns = [(task, metric) for task in tasks for metric in MAIN_METRICS if metric in collection.metrics(task)]
    rows = [row for row in collection.rows() if not row[0].endswith(PROMPTS_SUFFIX)
            and any(collection.get(task, row) for task in tasks)]
    labels = row_labels(collection, rows)
    cells = {(task, metric): marked_cells({row: metric_cell(collection.get(task, row), metric) for row in rows
                                           if collection.get(task, row)}, collection.higher_is_better(metric),
                                          digits(metric))
             for task, metric in columns}
    info = collection.task_info(tasks[0])
    counts = " / ".join(str(collection.task_info(t)["missing"]) for t in tasks)
    if info["problem"] == "missing-modality":
        what = f"missing {counts} of {len(info['elements'])} modalities ({', '.join(info['elements'])})"
    else:
        what = f"a run of {counts} of {len(info['elements'])} slices missing"
    grid = Grid(key=f"{dataset}", title=f"{dataset}: {what}",
                columns=[(_missing_label(collection, t, tasks), collection.metric_label(m)) for t, m in columns],
                rows=[])
    reported = {task: reported_for(task) for task in tasks} if reference else {}
    ours = {collection.display_name(row[0]) for row in rows}
    reported_only = [name for item in reported.values() if item for name in item.methods()
                     if name not in ours and "+" not in name and name != "Missing"]
    _grouped_rows(collection, grid, rows, labels, columns, cells,
                  _reported_row(columns, reported, lambda c: c) if reference else (lambda name: None),
                  list(dict.fromkeys(reported_only)))
    grid.footnote = footnote(collection, tasks, labels, LEGEND) + _reported_note(reported)
    return grid


def prompts_grid(collection: Collection, reference: bool) -> Grid | None:
    """Each baseline with a "+prompts" variant: base, +Prompts and the signed difference (dagger: the paired test
    between the two holds in every seed), per task and metric. None when no pair was run."""
    pairs = sorted({(m.removesuffix(PROMPTS_SUFFIX), p) for m, p in collection.rows() if m.endswith(PROMPTS_SUFFIX)
                    and (m.removesuffix(PROMPTS_SUFFIX), p) in collection.rows()})
    tasks = [t for t in collection.tasks if any(collection.get(t, (b + PROMPTS_SUFFIX, p)) and collection.get(t, (b, p))
                                                for b, p in pairs)]
    if not tasks:
        return None
    blocks = [(task, metric) for task in tasks for metric in PROMPT_METRICS if metric in collection.metrics(task)]
    columns = [(f"{task} {collection.metric_label(metric)}", part) for task, metric in blocks
               for part in ("base", "+Prompts", "Δ")]
    grid = Grid(key="prompts", title="+Prompts: the binary mask code replaced by CoPeVAE's learned prompts",
                columns=columns, rows=[])
    labels = row_labels(collection, pairs)
    reported = {task: reported_for(task) for task in tasks} if reference else {}
    for base, preset in pairs:
        values, reported_values, any_reported = [], [], False
        for task, metric in blocks:
            base_cell = metric_cell(collection.get(task, (base, preset)), metric)
            prompt_cell = metric_cell(collection.get(task, (base + PROMPTS_SUFFIX, preset)), metric)
            values += [GridCell(base_cell.text(digits(metric)), base_cell),
                       GridCell(prompt_cell.text(digits(metric)), prompt_cell),
                       _delta(base_cell, prompt_cell, metric, collection.higher_is_better(metric))]
            item = reported.get(task)
            names = (collection.display_name(base), collection.display_name(base + PROMPTS_SUFFIX))
            pair = (item.cell(metric, names[0]), item.cell(metric, names[1])) if item else (None, None)
            any_reported = any_reported or any(c is not None for c in pair)
            reported_values += [GridCell(c.text(digits(metric)) if c else "–", c) for c in pair]
            reported_values.append(_delta(pair[0], pair[1], metric, collection.higher_is_better(metric)) if all(pair)
                                   else GridCell("–"))
        grid.rows.append(GridRow(labels[(base, preset)], values))
        if any_reported:
            grid.rows.append(GridRow(f"{labels[(base, preset)]} — {REPORTED}", reported_values, kind="reported"))
    runs = row_labels(collection, [row for base, preset in pairs for row in ((base, preset), (base + PROMPTS_SUFFIX, preset))])
    grid.footnote = footnote(collection, tasks, runs, "Δ = +Prompts − base, over the seeds both have; †: the "
                             "paired Wilcoxon test over subjects between the two gives p < 0.05 in every seed; "
                             + LEGEND) + \
        _reported_note(reported)
    return grid


def _delta(base: Cell, prompts: Cell, metric: str, higher: bool | None) -> GridCell:
    """+Prompts − base over the seeds both cells have, so a seed only one of them has run does not enter the
    difference ("n/a" without a shared seed; reported cells, which have no seeds, differ by their means)."""
    if not (base.ok and prompts.ok):
        return GridCell("n/a")
    if base.seed_means or prompts.seed_means:
        shared = sorted(set(base.seed_means) & set(prompts.seed_means))
        if not shared:
            return GridCell("n/a")
        difference = sum(prompts.seed_means[s] - base.seed_means[s] for s in shared) / len(shared)
    else:
        difference = prompts.mean - base.mean
    is_significant = higher is not None and (significant(prompts, base, higher) or significant(base, prompts, higher))
    return GridCell(f"{difference:+.{digits(metric)}f}", Cell(mean=difference), significant=is_significant)


def dice_grid(collection: Collection, dataset: str, tasks: list[str], reference: bool) -> Grid | None:
    """Dice (%) per region and average: Full (all real) and Missing (available only) rows, then each method.

    Refused (MribenchError) when a task's Full average is below its Missing average: see
    :func:`_refuse_inverted_references`."""
    rows = [row for row in collection.rows() if any(collection.get(t, row) for t in tasks)]
    regions: dict[str, list[str]] = {}
    for task in tasks:
        for row in rows:
            for result in collection.get(task, row):
                entry = result.metrics.get("dice", {})
                if entry.get("status") == "ok" and isinstance(entry.get("aggregate", {}).get("synthesis"), dict):
                    regions.setdefault(task, [r for r in entry["aggregate"]["synthesis"] if r != "mean"])
    if not regions:
        return None
    tasks = [t for t in tasks if t in regions]
    columns = [(task, region) for task in tasks for region in regions[task] + ["avg"]]
    part = {region: None if region == "avg" else f"synthesis.{region}" for task in tasks
            for region in regions[task] + ["avg"]}
    cells = {(task, region): marked_cells({row: metric_cell(collection.get(task, row), "dice", part[region], 100.0)
                                           for row in rows if collection.get(task, row)},
                                          collection.higher_is_better("dice"), 2)
             for task, region in columns}
    grid = Grid(key=f"{dataset}-dice", title=f"{dataset}: downstream segmentation Dice (%)",
                columns=[(_missing_label(collection, t, tasks), r) for t, r in columns], rows=[])
    reported = {task: reported_for(task) for task in tasks} if reference else {}
    metric_of = {column: (column[0], f"dice-{column[1]}") for column in columns}
    reported_cells = _reported_row(columns, reported, lambda c: metric_of[c]) if reference else (lambda name: None)
    grid.section("Segmenter references")
    for preset in sorted({p for _, p in rows}):
        suffix = f" ({preset})" if len({p for _, p in rows}) > 1 else ""
        samples = {task: next((collection.get(task, row)[:1] for row in rows if row[1] == preset
                               and collection.get(task, row)), []) for task in tasks}
        for task, sample in samples.items():
            _refuse_inverted_references(dataset, task, preset, sample)
        for setting, label in (("full", "Full (all real)"), ("missing", "Missing (available only)")):
            values = []
            for task, region in columns:
                sample = samples[task]
                key = f"{setting}.{'mean' if region == 'avg' else region}"
                cell = metric_cell(sample, "dice", key, 100.0)
                values.append(GridCell(cell.text(2), cell))
            grid.rows.append(GridRow(label + suffix, values))
            reported_missing = reported_cells("Missing") if setting == "missing" else None
            if reported_missing:
                grid.rows.append(GridRow(f"Missing — {REPORTED}", reported_missing, kind="reported"))
    labels = row_labels(collection, rows)
    _grouped_rows(collection, grid, rows, labels, columns, cells, reported_cells, [])
    grid.footnote = footnote(collection, tasks, labels, "Dice in %; avg: mean over regions per subject; " + LEGEND) \
        + _reported_note(reported)
    return grid


# How far (Dice %) the Full (all real) row may fall below the Missing (available only) row before the table is refused:
# with one of four contrasts missing, a segmenter retrained on the other three can match the full one, and the two
# means then differ by segmentation noise (tenths of a point over 20 subjects); a segmenter that has not learned falls
# short by many points (the 12.1 % against 28.0 %).
INVERSION_MARGIN = 1.0


def _refuse_inverted_references(dataset: str, task: str, preset: str, sample: list) -> None:
    """A Dice table whose Full (all real) average is below its Missing (available only) average by more than
    ``INVERSION_MARGIN`` points measures a segmenter that has not learned to segment, not the methods: refuse it,
    naming the segmenter and its validation Dice."""
    full, missing = (metric_cell(sample, "dice", f"{setting}.mean", 100.0) for setting in ("full", "missing"))
    if not (full.ok and missing.ok) or full.mean >= missing.mean - INVERSION_MARGIN:
        return
    entry = sample[0].metrics["dice"]
    segmenter = (entry.get("extractor") or {}).get("name", "unnamed segmenter")
    validation = entry["aggregate"].get(SEGMENTER_VALIDATION)
    scored = ("validation Dice " + ", ".join(f"{region} {value:.3f}" for region, value in validation.items())
              if validation else "no validation Dice recorded")
    raise MribenchError(f"{dataset} Dice table refused: on {task} ({preset}) Full (all real) averages "
                        f"{full.mean:.2f} % but Missing (available only) {missing.mean:.2f} % (more than "
                        f"{INVERSION_MARGIN:g} point below); the downstream "
                        f"segmenter {segmenter} ({scored}) has not learned to segment, so the table would not measure "
                        "the methods; retrain it with a preset that converges")


def build_paper_tables(tasks: list[str], runs: Path, reference: bool = False,
                       withhold_refused: bool = False, fallback: Descriptions | None = None,
                       analyses: Container[str] | None = None) -> list[Grid]:
    """Every paper-shaped table the results of ``tasks`` allow: main tables per dataset, +Prompts, Dice, then the
    ablation tables and the analyses' stored tables (:mod:`~mribench.leaderboard.layouts.ablations`; these always
    show the paper's numbers, ``reference`` or not).

    A refused Dice table (Full below Missing) raises, unless ``withhold_refused``: then a one-cell table in its
    place says why it is withheld (the committed leaderboard folder and the report are written that way).
    ``fallback``: see :func:`~mribench.leaderboard.collect.collect`; ``analyses``: the analyses whose stored tables
    are shown (None: all)."""
    return paper_tables(collect(tasks, runs, fallback), reference, withhold_refused, analyses)


def paper_tables(collection: Collection, reference: bool = False, withhold_refused: bool = False,
                 analyses: Container[str] | None = None) -> list[Grid]:
    """:func:`build_paper_tables` of results already collected (callers that also read the collection collect once)."""
    datasets = by_dataset(collection)
    grids = [main_grid(collection, dataset, dataset_tasks, reference) for dataset, dataset_tasks in datasets.items()]
    prompts = prompts_grid(collection, reference)
    grids += [prompts] if prompts else []
    for dataset, dataset_tasks in datasets.items():
        try:
            grid = dice_grid(collection, dataset, dataset_tasks, reference)
        except MribenchError as refusal:
            if not withhold_refused:
                raise
            grid = withheld_grid(f"{dataset}-dice", f"{dataset}: downstream segmentation Dice (%)", str(refusal))
        grids += [grid] if grid else []
    return grids + ablation_grids(collection) + analysis_grids(collection, analyses)


def withheld_grid(key: str, title: str, reason: str) -> Grid:
    """A table that is not shown, with the reason in its one cell."""
    return Grid(key=key, title=f"{title}: withheld", columns=[("", "why")], rows=[GridRow("withheld", [GridCell(reason)])])
