"""Leaderboard tables from stored results.

Two layouts share one collection step, one cell rule and one set of renderers (Markdown, CSV, LaTeX, HTML):

* ``plain`` (:func:`build_table`): methods × (task, metric);
* ``paper`` (:mod:`mribench.paper_layouts`): the paper's table shapes.

Results of one task must share the task hash and, per metric, the extractor weights; otherwise the table is refused
with a message saying which results differ.

Cell rule: the results of several seeds of one (method, preset) are aggregated as the mean over seeds of the per-seed
means; ``std`` is the per-subject std averaged over seeds (the paper's "± std"), ``seed_std`` the sample std over
seeds of the per-seed means (shown in brackets when there are several seeds). In each column the best cell is bold and
the runner-up second; the best cell carries a dagger when a paired Wilcoxon test over subjects of best vs runner-up
gives p < 0.05, in the right direction, in every seed both share.
"""
from __future__ import annotations

import csv
import html
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from mribench.errors import MribenchError
from mribench.metrics.aggregate import paired_wilcoxon
from mribench.plugins import registry
from mribench.results import DamagedResultError, Result, find_results

SIGNIFICANCE_LEVEL = 0.05
FORMATS = ("md", "csv", "latex", "html")
METRIC_ORDER = ("psnr", "ssim", "mae", "fid", "fvd", "fd-seg", "dice")
RowKey = tuple[str, str]  # (method name, preset)


# -- collection ----------------------------------------------------------------------------------------------
@dataclass
class Collection:
    """Every result of the requested tasks: (task, method, preset) → results sorted by seed, with their paths."""

    tasks: list[str]
    results: dict[tuple[str, str, str], list[tuple[Path, Result]]]

    def rows(self, task: str | None = None) -> list[RowKey]:
        return sorted({(m, p) for (t, m, p) in self.results if task is None or t == task})

    def get(self, task: str, row: RowKey) -> list[Result]:
        return [result for _, result in self.results.get((task, *row), [])]

    def task_info(self, task: str) -> dict:
        return next(items[0][1].task for (t, _, _), items in self.results.items() if t == task)

    def metrics(self, task: str) -> list[str]:
        names = {m for (t, _, _), items in self.results.items() if t == task for _, r in items for m in r.metrics}
        return sorted(names, key=metric_order)

    def all_results(self) -> list[tuple[Path, Result]]:
        return [item for key in sorted(self.results) for item in self.results[key]]


def collect(tasks: list[str], runs: Path) -> Collection:
    """Read the results of ``tasks`` under ``runs``; refuses a task without results or with mixed hashes/extractors."""
    grouped: dict[tuple[str, str, str], list[tuple[Path, Result]]] = defaultdict(list)
    for task in dict.fromkeys(tasks):
        try:
            found = find_results(runs, task)
        except DamagedResultError as exc:
            raise MribenchError(f"{exc}; rerun its 'mribench run' command (it redoes the evaluation) or delete the "
                                "file") from None
        if not found:
            raise MribenchError(f"no results for task {task!r} under {runs}; run 'mribench run --task {task} ...'")
        for path, result in found:
            grouped[(task, result.method["name"], result.method["preset"])].append((path, result))
    for items in grouped.values():
        items.sort(key=lambda item: item[1].seed)
    _check_consistent(grouped)
    return Collection(tasks=list(dict.fromkeys(tasks)), results=dict(grouped))


def _check_consistent(grouped) -> None:
    """Results of one task share a column only when computed on the same thing: same task hash, same test subjects
    (split hash and subject list: a ``--skip-bad`` run on fewer subjects is refused beside a full one), same data
    where recorded, and per metric the same extractor (name + SHA-256 of its weights, never a file path)."""
    by_task: dict[str, list[tuple[Path, Result]]] = defaultdict(list)
    for (task, _, _), items in grouped.items():
        by_task[task].extend(items)
    for task, items in by_task.items():
        items = sorted(items, key=lambda item: str(item[0]))
        _refuse_mixed(task, "task hashes", items, lambda r: r.task["hash"],
                      lambda p, r: f"{p}: task hash {r.task['hash'][:12]}",
                      "the spec changed between runs — rerun them, or use separate --runs folders")
        _refuse_mixed(task, "test subjects", items, lambda r: (r.task["split_hash"], tuple(sorted(r.subjects))),
                      _describe_subjects(items), "numbers over other subjects are not comparable; rerun the short "
                      "one on the full data, or use separate --runs folders")
        recorded = [(p, r) for p, r in items if r.task.get("data_fingerprint")]
        _refuse_mixed(task, "data", recorded, lambda r: r.task["data_fingerprint"],
                      lambda p, r: f"{p}: data fingerprint {r.task['data_fingerprint'][:12]}",
                      "they were computed on other data (another --data-root holding other files?)")
        metrics = sorted({m for _, r in items for m, e in r.metrics.items() if e.get("extractor")})
        for metric in metrics:
            using = [(p, r) for p, r in items if r.metrics.get(metric, {}).get("extractor")]
            _refuse_mixed(f"{task} / {metric}", "extractors", using, lambda r, m=metric: extractor_identity(r, m),
                          lambda p, r, m=metric: f"{p}: {' '.join(extractor_identity(r, m))}",
                          "they were computed with other weights")


def extractor_identity(result: Result, metric: str) -> tuple[str, str]:
    """(name, SHA-256) of the extractor behind a metric: what makes two numbers comparable, wherever it was cached."""
    info = result.metrics[metric]["extractor"]
    return str(info.get("name", "?")), str(info.get("sha256", ""))


def _describe_subjects(items: list[tuple[Path, Result]]) -> Callable[[Path, Result], str]:
    """How a result's test subjects differ from those of the first result."""
    reference = set(items[0][1].subjects)

    def describe(path: Path, result: Result) -> str:
        subjects = set(result.subjects)
        text = f"{path}: {len(subjects)} test subjects, split hash {result.task['split_hash'][:12]}"
        lacking, extra = sorted(reference - subjects), sorted(subjects - reference)
        if lacking:
            text += f", lacks {', '.join(lacking[:5])}" + (f" (+{len(lacking) - 5})" if len(lacking) > 5 else "")
        if extra:
            text += f", has {', '.join(extra[:5])}" + (f" (+{len(extra) - 5})" if len(extra) > 5 else "")
        skipped = [entry.get("subject", "?") for entry in result.skipped]
        if skipped:
            text += f" (--skip-bad left out {', '.join(skipped[:5])})"
        return text

    return describe


def _refuse_mixed(where: str, what: str, items: list[tuple[Path, Result]], key: Callable[[Result], object],
                  describe: Callable[[Path, Result], str], hint: str) -> None:
    """Raise, naming one file per distinct ``key`` and how it differs, when ``items`` do not all share the key."""
    first_of: dict[object, tuple[Path, Result, int]] = {}
    for path, result in items:
        k = key(result)
        first = first_of.get(k)
        first_of[k] = (path, result, 1) if first is None else (first[0], first[1], first[2] + 1)
    if len(first_of) > 1:
        detail = "; ".join(describe(path, result) + (f" (+{count - 1} more like it)" if count > 1 else "")
                           for path, result, count in first_of.values())
        raise MribenchError(f"{where}: results with different {what} cannot share a column: {detail}; {hint}")


def metric_order(name: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def higher_is_better(metric: str) -> bool | None:
    """From the registered metric; None when the metric is not installed (no best/second marks then)."""
    try:
        return bool(registry().metric(metric).higher_is_better)
    except MribenchError:
        return None


# -- cells ---------------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One (row, column) value aggregated over seeds. ``per_seed``: seed → per-subject values (for the test)."""

    mean: float | None = None
    std: float | None = None
    seed_std: float | None = None
    n: int = 0
    seeds: int = 0
    status: str = "ok"
    reason: str | None = None
    per_seed: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.mean is not None and not math.isnan(self.mean)

    def text(self, digits: int) -> str:
        if not self.ok:
            return "n/a"
        out = f"{self.mean:.{digits}f}"
        if self.std is not None:
            out += f" ± {self.std:.{digits}f}"
        if self.seed_std is not None:
            out += f" [{self.seed_std:.{digits}f}]"
        return out


def _finite(value) -> float | None:
    return float(value) if value is not None and not math.isnan(float(value)) else None


def metric_cell(results: list[Result], metric: str, part: str | None = None, scale: float = 1.0) -> Cell:
    """Aggregate ``metric`` over the seeds in ``results``.

    part: None for the metric's mean (with per-subject std and per-subject values), else a path into the aggregate
    such as ``"synthesis.WT"`` (Dice breakdowns; no std). scale multiplies values (Dice in %).
    """
    computed = [(r.seed, e) for r in results if (e := r.metrics.get(metric)) and e.get("status") == "ok"
                and e.get("aggregate")]
    if not computed:
        reasons = {e.get("reason") for r in results if (e := r.metrics.get(metric)) and e.get("reason")}
        return Cell(status="not computed", reason="; ".join(sorted(reasons)) or f"no {metric} in the results")
    values, stds = [], []
    for _, entry in computed:
        node = entry["aggregate"]
        for key in (part.split(".") if part else ["mean"]):
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, (int, float)):
            return Cell(status="not computed", reason=f"no {metric} {part} in the results")
        values.append(float(node) * scale)
        stds.append(_finite(entry["aggregate"].get("std")) if part is None else None)
    std = float(np.mean(stds)) * scale if all(s is not None for s in stds) else None
    per_seed = {seed: entry["per_subject"] for seed, entry in computed if part is None and entry.get("per_subject")}
    return Cell(mean=float(np.mean(values)), std=std,
                seed_std=float(np.std(values, ddof=1)) if len(values) > 1 else None,
                n=int(computed[0][1]["aggregate"].get("n", 0)), seeds=len(values), per_seed=per_seed)


def significant(better: Cell, worse: Cell, higher: bool) -> bool:
    """True when, in every seed both cells share, the paired Wilcoxon test over subjects gives p < 0.05 and the
    mean paired difference favours ``better``. False without shared seeds or per-subject values."""
    seeds = sorted(set(better.per_seed) & set(worse.per_seed))
    if not seeds:
        return False
    for seed in seeds:
        a, b = better.per_seed[seed], worse.per_seed[seed]
        common = sorted(set(a) & set(b))
        if not common:
            return False
        difference = float(np.mean([a[s] - b[s] for s in common]))
        if (difference <= 0 if higher else difference >= 0) or paired_wilcoxon(a, b) >= SIGNIFICANCE_LEVEL:
            return False
    return True


def rank(cells: dict[RowKey, Cell], higher: bool | None) -> tuple[dict[RowKey, str], bool]:
    """Marks {row: "best" | "second"} of a column and whether the best is significantly better than the second."""
    if higher is None:
        return {}, False
    scored = sorted(((cell.mean, row) for row, cell in cells.items() if cell.ok), reverse=higher)
    if len(scored) < 2:
        return {}, False
    best, second = scored[0][1], scored[1][1]
    return {best: "best", second: "second"}, significant(cells[best], cells[second], higher)


# -- grids: what every renderer draws ------------------------------------------------------------------------
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


def arrow(metric: str) -> str:
    """↑ when higher is better, ↓ when lower is, nothing when the metric is not installed."""
    return {True: " ↑", False: " ↓", None: ""}[higher_is_better(metric)]


def marked_cells(cells: dict[RowKey, Cell], metric: str, digits_: int) -> dict[RowKey, GridCell]:
    """Grid cells of one column with best/second marks and the significance dagger."""
    digits_ = column_digits(list(cells.values()), digits_)
    marks, is_significant = rank(cells, higher_is_better(metric))
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
            runs.append(f"{label}: {row[1]} preset, seeds {', '.join(map(str, seeds))}{training_note(results)}")
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


def training_note(results: list) -> str:
    """", 1200 steps, 1.4 min fit, 1.93 M parameters, budget-capped" from the results' recorded training facts.

    Minutes are the mean over the distinct fits (one per seed; the missing counts of a dataset share a model).
    Empty when the results predate these facts or the method learns nothing.
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
    return "".join(f", {part}" for part in parts)


LEGEND = ("mean ± std over test subjects (std averaged over seeds); [s]: std over seeds of the per-seed means; "
          "best bold, second underlined (italic in Markdown); †: best vs second significant (paired Wilcoxon over "
          "subjects, p < 0.05, in every seed); n/a: not computed (the cell's reason is in the CSV and the HTML "
          "tooltip); –: no result of this method on this task")


# -- plain layout --------------------------------------------------------------------------------------------
def build_table(tasks: list[str], runs: Path, metrics: list[str] | None = None) -> Grid:
    """Methods "name (preset)" as rows, (task, metric) as columns, plus the number of test subjects per task."""
    collection = collect(tasks, runs)
    tasks = collection.tasks
    columns = [(task, metric) for task in tasks for metric in collection.metrics(task)
               if metrics is None or metric in metrics]
    rows = {row: f"{row[0]} ({row[1]})" for row in collection.rows()}
    by_column: dict[tuple[str, str], dict[RowKey, GridCell]] = {}
    for task, metric in columns:
        cells = {row: metric_cell(collection.get(task, row), metric) for row in rows if collection.get(task, row)}
        by_column[(task, metric)] = marked_cells(cells, metric, digits(metric))
    grid = Grid(key="leaderboard", title=", ".join(tasks),
                columns=[(t, f"{m}{arrow(m)}") for t, m in columns] + [(t, "n") for t in tasks], rows=[])
    for row, label in rows.items():
        values = [by_column[column].get(row, GridCell("–")) for column in columns]
        values += [GridCell(str(collection.task_info(t)["n_test"]) if collection.get(t, row) else "–") for t in tasks]
        grid.rows.append(GridRow(label, values))
    grid.footnote = footnote(collection, tasks, rows, "↑/↓: higher/lower is better; " + LEGEND)
    return grid


# -- rendering -----------------------------------------------------------------------------------------------
def render(grids: list[Grid] | Grid, fmt: str, title: str = "mribench leaderboard",
           figures: list[tuple[str, str]] | None = None) -> str:
    """Render grids as ``md``, ``csv``, ``latex`` or an ``html`` page (figures: caption, image URL)."""
    grids = [grids] if isinstance(grids, Grid) else grids
    if fmt == "md":
        return "\n".join(_markdown(grid, heading=len(grids) > 1) for grid in grids)
    if fmt == "csv":
        return _csv(grids)
    if fmt == "latex":
        return "\n".join(_latex(grid) for grid in grids)
    if fmt == "html":
        return html_page(title, grids, figures or [])
    raise MribenchError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _show_groups(grid: Grid) -> bool:
    return len({group for group, _ in grid.columns}) > 1


def _decorate(cell: GridCell, bold: Callable[[str], str], second: Callable[[str], str], dagger: str) -> str:
    text = cell.text + (dagger if cell.significant else "")
    if cell.mark == "best":
        return bold(text)
    if cell.mark == "second":
        return second(text)
    return text


def _markdown(grid: Grid, heading: bool) -> str:
    groups = _show_groups(grid)
    header = ["method"] + [f"{g} {label}".strip() if groups else label for g, label in grid.columns]
    lines = [f"### {grid.title}", ""] if heading else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in grid.rows:
        if row.kind == "section":
            lines.append(f"| *{row.label}* |" + " |" * len(grid.columns))
            continue
        label = f"*{row.label}*" if row.kind == "reported" else row.label
        values = [_decorate(c, lambda s: f"**{s}**", lambda s: f"_{s}_", "†") for c in row.cells]
        if row.kind == "reported":
            values = [f"*{v}*" if v not in ("", "–") else v for v in values]
        lines.append("| " + " | ".join([label] + values) + " |")
    return "\n".join(lines + [""] + [f"_{line}_  " for line in grid.footnote]) + "\n"


def _csv(grids: list[Grid]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "row", "row_kind", "column_group", "column", "text", "mean", "std", "seed_std", "seeds",
                     "n", "mark", "significant", "reason"])
    for grid in grids:
        for row in grid.rows:
            if row.kind == "section":
                continue
            for (group, label), value in zip(grid.columns, row.cells):
                cell = value.cell
                numbers = ["" if cell is None or not cell.ok or getattr(cell, name) is None
                           else f"{getattr(cell, name):.6g}" for name in ("mean", "std", "seed_std")]
                writer.writerow([grid.key, row.label, row.kind, group, label, value.text, *numbers,
                                 cell.seeds if cell else "", cell.n if cell else "", value.mark or "",
                                 int(value.significant), (cell.reason or "") if cell else ""])
    return buffer.getvalue()


def _latex_escape(text: str) -> str:
    out = text.replace("\\", r"\textbackslash{}")
    for char in "_%&#$":
        out = out.replace(char, "\\" + char)
    return out.replace("±", r"$\pm$").replace("†", r"$^\dagger$").replace("Δ", r"$\Delta$").replace("–", "--")


def _latex(grid: Grid) -> str:
    width = len(grid.columns) + 1
    lines = [f"% {_latex_escape(grid.title)}", r"\begin{tabular}{l" + "c" * len(grid.columns) + "}", r"\toprule"]
    if _show_groups(grid):
        spans: list[tuple[str, int]] = []
        for group, _ in grid.columns:
            if spans and spans[-1][0] == group:
                spans[-1] = (group, spans[-1][1] + 1)
            else:
                spans.append((group, 1))
        cells, rules, start = [""], [], 2
        for group, count in spans:
            cells.append(rf"\multicolumn{{{count}}}{{c}}{{{_latex_escape(group)}}}")
            if group:
                rules.append(rf"\cmidrule(lr){{{start}-{start + count - 1}}}")
            start += count
        lines += [" & ".join(cells) + r" \\", " ".join(rules)]
    lines += [" & ".join(["Method"] + [_latex_escape(label) for _, label in grid.columns]) + r" \\", r"\midrule"]
    for row in grid.rows:
        if row.kind == "section":
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{_latex_escape(row.label)}}}}} \\")
            continue
        values = [_decorate(GridCell(_latex_escape(c.text), c.cell, c.mark, c.significant),
                            lambda s: r"\textbf{" + s + "}", lambda s: r"\underline{" + s + "}", r"$^\dagger$")
                  for c in row.cells]
        label = _latex_escape(row.label)
        if row.kind == "reported":
            label, values = rf"\textit{{{label}}}", [rf"\textit{{{v}}}" if v else v for v in values]
        lines.append(" & ".join([label] + values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {_latex_escape(line)}" for line in grid.footnote]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{padding:.25em .6em;text-align:center;white-space:nowrap}
thead tr:first-child th{border-top:2px solid #222}thead tr:last-child th{border-bottom:1px solid #222}
tbody tr:last-child td{border-bottom:2px solid #222}
td:first-child,th:first-child{text-align:left}
tr.section td{font-style:italic;color:#555;padding-top:.6em;border-bottom:1px solid #eee}
tr.reported td{font-style:italic;color:#777}
.group{border-bottom:1px solid #999}
.footnote{font-size:.8em;color:#555;margin:.2em 0;max-width:1200px}
figure{margin:1em 0}figcaption{font-size:.9em;color:#444}img{max-width:100%;border:1px solid #eee}
"""


def html_table(grid: Grid) -> str:
    """One grid as an HTML <table> followed by its footnote (no page around it)."""
    esc = html.escape
    out = ["<table>", "<thead>"]
    if _show_groups(grid):
        out.append("<tr><th></th>")
        previous, count = None, 0
        for group, _ in grid.columns + [(None, None)]:
            if group == previous:
                count += 1
                continue
            if previous is not None:
                out.append(f'<th colspan="{count}" class="group">{esc(previous)}</th>')
            previous, count = group, 1
        out.append("</tr>")
    out.append("<tr><th>method</th>" + "".join(f"<th>{esc(label)}</th>" for _, label in grid.columns) + "</tr>")
    out.append("</thead><tbody>")
    for row in grid.rows:
        if row.kind == "section":
            out.append(f'<tr class="section"><td colspan="{len(grid.columns) + 1}">{esc(row.label)}</td></tr>')
            continue
        cells = []
        for cell in row.cells:
            text = _decorate(GridCell(esc(cell.text), cell.cell, cell.mark, cell.significant), lambda s: f"<b>{s}</b>",
                             lambda s: f"<u>{s}</u>", "<sup>†</sup>")
            title = f' title="{esc(cell.cell.reason)}"' if cell.cell and cell.cell.reason else ""
            cells.append(f"<td{title}>{text}</td>")
        out.append(f'<tr class="{row.kind}"><td>{esc(row.label)}</td>{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    out += [f'<p class="footnote">{esc(line)}</p>' for line in grid.footnote]
    return "\n".join(out)


def html_page(title: str, grids: list[Grid], figures: list[tuple[str, str]]) -> str:
    """One page with inline CSS; ``figures`` are (caption, image URL): a data: URL keeps the page self-contained, a
    relative path links a file beside it."""
    esc = html.escape
    body = [f"<h1>{esc(title)}</h1>"]
    for grid in grids:
        body += [f"<h2>{esc(grid.title)}</h2>", html_table(grid)]
    if figures:
        body.append("<h2>Figures</h2>")
    for caption, url in figures:
        body.append(f'<figure><img alt="{esc(caption)}" src="{esc(url)}">'
                    f"<figcaption>{esc(caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
