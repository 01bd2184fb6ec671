"""The plain layout (``mribench leaderboard``, the default): methods × (task, metric)."""
from __future__ import annotations

from pathlib import Path

from mribench.leaderboard.cells import metric_cell
from mribench.leaderboard.collect import Descriptions, RowKey, collect
from mribench.leaderboard.grid import LEGEND, Grid, GridCell, GridRow, arrow, digits, footnote, marked_cells


def build_table(tasks: list[str], runs: Path, metrics: list[str] | None = None,
                fallback: Descriptions | None = None) -> Grid:
    """Methods "name (preset)" as rows, (task, metric) as columns, plus the number of test subjects per task
    (``fallback``: see :func:`~mribench.leaderboard.collect.collect`)."""
    collection = collect(tasks, runs, fallback)
    tasks = collection.tasks
    columns = [(task, metric) for task in tasks for metric in collection.metrics(task)
               if metrics is None or metric in metrics]
    rows = {row: f"{row[0]} ({row[1]})" for row in collection.rows()}
    by_column: dict[tuple[str, str], dict[RowKey, GridCell]] = {}
    for task, metric in columns:
        cells = {row: metric_cell(collection.get(task, row), metric) for row in rows if collection.get(task, row)}
        by_column[(task, metric)] = marked_cells(cells, collection.higher_is_better(metric), digits(metric))
    grid = Grid(key="leaderboard", title=", ".join(tasks),
                columns=[(t, f"{m}{arrow(collection.higher_is_better(m))}") for t, m in columns] + [(t, "n") for t in tasks], rows=[])
    for row, label in rows.items():
        values = [by_column[column].get(row, GridCell("–")) for column in columns]
        values += [GridCell(str(collection.task_info(t)["n_test"]) if collection.get(t, row) else "–") for t in tasks]
        grid.rows.append(GridRow(label, values))
    grid.footnote = footnote(collection, tasks, rows, "↑/↓: higher/lower is better; " + LEGEND)
    return grid
