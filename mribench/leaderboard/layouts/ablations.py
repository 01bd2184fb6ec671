"""The paper's ablation tables, part of the paper layout (``leaderboard/ablations`` is written with them).

* **Method ablations** (prompts, injection position, diffuser, joint loss, ...): every method records in its results
  the rows it fills (:class:`~mribench.method.AblationRow`: table, row label, order, the paper's numbers); the full
  method fills one row of each table, a variant the row of what it changes. One table per (task, preset, table
  title), shown when at least two of its rows were run. A row whose method the installed plugins know but nobody
  ran shows "not run" (never a number); under each row with a paper number, an italic row labelled
  "reported (paper)" shows it (a phantom task shows its real twin's numbers, which the footnote says).
* **Analysis tables** (e.g. the tokenizer reconstruction table of ``mribench analyze tokenizer``): an analysis stores
  an :class:`~mribench.analyze.AnalysisTable` in a run folder; rows of kind ``result`` are averaged over the seeds'
  runs (the seed std in brackets), rows of kind ``reported`` are shown as stored, labelled.

The paper's numbers are always shown in these tables (they compare directions, the point of an ablation); they never
take part in the best/second marks. The core knows no method here: tables, rows and numbers come from the results'
self-description (else the installed plugins' descriptions, for results that predate it).
"""
from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

import numpy as np

from mribench.analyze import AnalysisTable, analysis_tables
from mribench.leaderboard.cells import Cell, metric_cell
from mribench.leaderboard.collect import Collection, RowKey
from mribench.leaderboard.grid import LEGEND, Grid, GridCell, GridRow, column_digits, digits, footnote, marked_cells
from mribench.leaderboard.layouts.reference import REPORTED, real_twin
from mribench.method import AblationRow

ABLATION_METRICS = ("psnr", "ssim")
NOT_RUN = "not run"


@dataclass(frozen=True)
class Placed:
    """A method's row in an ablation table."""

    method: str
    row: AblationRow


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def ablation_tables(collection: Collection, task: str) -> dict[str, list[Placed]]:
    """Table title → its rows (by order), tables ordered by their first row: every method with results on ``task``
    plus every method the fallback (installed plugins) knows, each described by its results first."""
    methods = list(dict.fromkeys([m for m, _ in collection.rows(task)] +
                                 [d.name for d in (collection.fallback.method_descriptions()
                                                   if collection.fallback else [])]))
    tables: dict[str, list[Placed]] = {}
    for method in methods:
        for row in collection.method_description(method).ablation_rows:
            tables.setdefault(row.table, []).append(Placed(method, row))
    ordered = sorted(tables.items(), key=lambda item: min(p.row.order for p in item[1]))
    return {table: sorted(rows, key=lambda p: (p.row.order, p.method)) for table, rows in ordered}


def ablation_grids(collection: Collection) -> list[Grid]:
    """Every method-ablation table the results allow (see the module docs)."""
    grids = []
    for task in collection.tasks:
        metrics = [m for m in ABLATION_METRICS if m in collection.metrics(task)]
        twin = real_twin(task) or task
        presets = sorted({preset for _, preset in collection.rows(task)})
        for preset in presets:
            for table, placed in ablation_tables(collection, task).items():
                ran = [p for p in placed if collection.get(task, (p.method, preset))]
                if len(ran) < 2:
                    continue
                grids.append(_ablation_grid(collection, task, preset, table, placed, metrics, twin))
    return grids


def _ablation_grid(collection: Collection, task: str, preset: str, table: str, placed: list[Placed],
                   metrics: list[str], twin: str) -> Grid:
    keys: dict[int, RowKey] = {i: (p.method, preset) for i, p in enumerate(placed)}
    labels = {i: f"{p.row.row} ({p.method})" for i, p in enumerate(placed)}
    cells = {metric: marked_cells({keys[i]: metric_cell(collection.get(task, keys[i]), metric)
                                   for i in keys if collection.get(task, keys[i])},
                                  collection.higher_is_better(metric), digits(metric))
             for metric in metrics}
    grid = Grid(key=f"ablation-{_slug(table)}-{task}-{preset}", title=f"Ablation: {table} — {task}, {preset} preset",
                columns=[("", collection.metric_label(m)) for m in metrics], rows=[])
    any_reported = False
    for index, item in enumerate(placed):
        grid.rows.append(GridRow(labels[index], [cells[m].get(keys[index], GridCell(NOT_RUN)) for m in metrics]))
        reported = item.row.reported.get(twin, {})
        if any(m in reported for m in metrics):
            any_reported = True
            grid.rows.append(GridRow(f"{item.row.row} — {REPORTED}", [
                GridCell(f"{reported[m]:.{digits(m)}f}", Cell(mean=float(reported[m]))) if m in reported
                else GridCell("–") for m in metrics], kind="reported"))
    ran = {keys[i]: label for i, label in labels.items() if collection.get(task, keys[i])}
    grid.footnote = footnote(collection, [task], ran, f"{NOT_RUN}: no result of this method here; " + LEGEND)
    if any_reported:
        grid.footnote.append(f"{REPORTED}: the paper's ablation numbers on {twin}" +
                             (" — real data, not comparable with phantom numbers; compare directions"
                              if twin != task else ""))
    return grid


# -- analysis tables -------------------------------------------------------------------------------------------
def analysis_grids(collection: Collection, analyses: Container[str] | None = None) -> list[Grid]:
    """Every stored :class:`~mribench.analyze.AnalysisTable` of the collection's runs (of the ``analyses`` named,
    None: all), one grid per (task, method, preset, table): result rows averaged over the seeds' runs."""
    grids = []
    for task in collection.tasks:
        for row in collection.rows(task):
            found: dict[str, list[tuple[int, AnalysisTable]]] = {}
            for path, result in collection.results[(task, *row)]:
                for name, table in analysis_tables(path.parent):
                    if analyses is not None and name not in analyses:
                        continue
                    found.setdefault(table.key, []).append((result.seed, table))
            grids += [_analysis_grid(collection, task, row, tables) for tables in found.values()]
    return grids


def _analysis_grid(collection: Collection, task: str, row: RowKey, tables: list[tuple[int, AnalysisTable]]) -> Grid:
    first = tables[0][1]
    seeds = [seed for seed, _ in tables]
    labels = list(dict.fromkeys(r.label for _, t in tables for r in t.rows if r.kind == "result"))
    averaged: dict[str, dict[str, Cell]] = {}
    for key, _ in first.columns:
        column = {}
        for label in labels:
            values = [r.values.get(key) for _, t in tables for r in t.rows if r.kind == "result" and r.label == label]
            values = [float(v) for v in values if v is not None]
            column[label] = (Cell(mean=float(np.mean(values)), seeds=len(values),
                                  seed_std=float(np.std(values, ddof=1)) if len(values) > 1 else None)
                             if values else Cell(status="not computed", reason=f"no {key} in the stored tables"))
        averaged[key] = column
    known = set(collection.metrics(task))
    marked = {key: marked_cells(averaged[key], collection.higher_is_better(key) if key in known else None,
                                digits(key)) for key, _ in first.columns}
    grid = Grid(key=f"{first.key}-{task}-{row[0]}-{row[1]}",
                title=f"{first.title} — {task}, {collection.display_name(row[0])} ({row[1]} preset)",
                columns=[("", label) for _, label in first.columns], rows=[])
    for table_row in first.rows:
        if table_row.kind == "result":
            grid.rows.append(GridRow(table_row.label, [marked[key][table_row.label] for key, _ in first.columns]))
    for table_row in (r for r in first.rows if r.kind == "reported"):
        reported = {key: table_row.values.get(key) for key, _ in first.columns}
        grid.rows.append(GridRow(table_row.label, [
            GridCell(f"{value:.{column_digits([Cell(mean=value)], digits(key))}f}", Cell(mean=value))
            if value is not None else GridCell("–") for key, value in reported.items()], kind="reported"))
    grid.footnote = [f"mean over seeds {', '.join(map(str, seeds))} of {row[0]} ({row[1]}) on {task} "
                     "([s]: std over seeds; each seed's table is in its run folder's analysis/ folder)"]
    grid.footnote += [first.note] if first.note else []
    return grid
