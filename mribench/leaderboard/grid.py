"""The table model every layout builds and every renderer draws: columns, rows of marked cells, a footnote."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from mribench.leaderboard.cells import Cell, rank
from mribench.leaderboard.collect import Collection, RowKey, metric_order


@dataclass
class GridCell:
    text: str
    cell: Cell | None = None
    mark: Literal["best", "second"] | None = None
    significant: bool = False


@dataclass
class GridRow:
    label: str
    cells: list[GridCell]
    kind: Literal["result", "reported", "section"] = "result"


@dataclass
class Grid:
    """A rendered table: columns are (group, label) pairs; the group row is drawn when there are several groups."""

    key: str
    title: str
    columns: list[tuple[str, str]]
    rows: list[GridRow]
    footnote: list[str] = field(default_factory=list)

    def section(self, label: str) -> None:
        self.rows.append(GridRow(label, [GridCell("") for _ in self.columns], kind="section"))


SIGNIFICANT_DIGITS = 3  # every mean is shown with at least this many significant digits
MAX_DECIMALS = 8


def digits(metric: str) -> int:
    """The fewest decimals a metric is shown with (a column gets more when its values need them)."""
    return 4 if metric in ("ssim", "mae") or metric.startswith("ssim") else 2


def column_digits(cells: list[Cell], minimum: int) -> int:
    """Decimals that show every mean of a column with at least SIGNIFICANT_DIGITS significant digits (one count
    for the whole column, so its numbers stay aligned), and never fewer than ``minimum``."""
    magnitudes = [abs(cell.mean) for cell in cells if cell.ok and cell.mean != 0]
    if not magnitudes:
        return minimum
    needed = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(min(magnitudes)))
    return min(max(minimum, needed), MAX_DECIMALS)


def arrow(higher: bool | None) -> str:
    """↑ when higher is better, ↓ when lower is, nothing when the direction is unknown."""
    return {True: " ↑", False: " ↓", None: ""}[higher]


def marked_cells(cells: dict[RowKey, Cell], higher: bool | None, digits_: int) -> dict[RowKey, GridCell]:
    """Grid cells of one column with best/second marks (none when ``higher`` is None) and the significance dagger."""
    digits_ = column_digits(list(cells.values()), digits_)
    marks, is_significant = rank(cells, higher)
    return {row: GridCell(cell.text(digits_), cell, marks.get(row), marks.get(row) == "best" and is_significant)
            for row, cell in cells.items()}


def footnote(collection: Collection, tasks: list[str], rows: dict[RowKey, str], legend: str) -> list[str]:
    """Provenance lines: task versions and hashes, presets and seeds per row, extractor weights, mribench versions."""
    lines = []
    for task in tasks:
        info = collection.task_info(task)
        lines.append(f"{task}: v{info['version']}, task hash {info['hash'][:12]}, split hash "
                     f"{info['split_hash'][:12]}, {info['n_test']} test subjects")
    runs = []
    for row, label in rows.items():
        results = [r for t in tasks for r in collection.get(t, row)]
        seeds = sorted({r.seed for r in results})
        if seeds:
            runs.append(f"{label}: {row[1]} preset, seeds {', '.join(map(str, seeds))}"
                        f"{training_note(results, collection.outdated(row, results))}")
    if runs:
        lines.append("runs — " + "; ".join(runs))
    extractors: dict[str, dict[str, dict[str, None]]] = {}  # dataset → metric → extractor descriptions
    for task in tasks:
        dataset = collection.task_info(task)["dataset"]
        for row in rows:
            for result in collection.get(task, row):
                for metric, entry in result.metrics.items():
                    if info := entry.get("extractor"):
                        extractors.setdefault(dataset, {}).setdefault(metric, {})[
                            f"{info.get('name', '?')} sha256 {info.get('sha256', '')[:12]}"] = None
    for dataset, by_metric in extractors.items():
        lines.append(f"extractors of {dataset} — " + "; ".join(
            f"{metric}: {' / '.join(by_metric[metric])}" for metric in sorted(by_metric, key=metric_order)))
    versions = sorted({r.provenance.get("packages", {}).get("mribench", "?") for t in tasks for row in rows
                       for r in collection.get(t, row)})
    lines.append(f"mribench {', '.join(versions)}; {legend}")
    return lines


def training_note(results: list, outdated: bool = False) -> str:
    """", 1200 steps, 1.4 min fit, 1.93 M parameters, budget-capped" from the results' recorded training facts,
    plus a warning when ``outdated`` (some were made with another config than the installed preset's).

    Minutes are the mean over the distinct fits (one per seed; the missing counts of a dataset share a model).
    Empty when the results predate these facts, the method learns nothing and none is outdated.
    """
    facts = [r.method.get("training") or {} for r in results]
    steps = sorted({f["steps"] for f in facts if f.get("steps")})
    minutes = {(r.seed, f["fit_minutes"]) for r, f in zip(results, facts) if f.get("fit_minutes") is not None}
    parameters = sorted({f["parameters"] for f in facts if f.get("parameters")})
    parts = []
    if steps:
        parts.append("/".join(map(str, steps)) + " steps")
    if steps and minutes:
        parts.append(f"{sum(m for _, m in minutes) / len(minutes):.1f} min fit")
    if parameters:
        parts.append("/".join(f"{p / 1e6:.2f} M" for p in parameters) + " parameters")
    if any(f.get("budget_capped") for f in facts):
        parts.append("budget-capped (no validation plateau within 15 min of training)")
    if outdated:
        parts.append(OUTDATED_NOTE)
    return "".join(f", {part}" for part in parts)


OUTDATED_NOTE = ("OUTDATED: made with an earlier config of this preset than the installed one "
                 "(`make leaderboard` redoes these runs)")
LEGEND = ("mean ± std over test subjects (std averaged over seeds); [s]: std over seeds of the per-seed means; "
          "best bold, second underlined (italic in Markdown); †: best vs second significant (paired Wilcoxon over "
          "subjects, p < 0.05, in every seed); n/a: not computed (the cell's reason is in the CSV, and in the "
          "HTML in its tooltip and a note under the table); –: no result of this method on this task")
