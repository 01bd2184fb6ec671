"""Tables from stored results: methods as rows, tasks × metrics as columns, mean ± std, best in bold.

Results of one column must share the task hash and the extractor weights; otherwise the table is refused with a
message saying which results differ. Several seeds of one (method, preset) are averaged: the mean over seeds of the
per-seed means, with the per-subject std averaged over seeds.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mribench.errors import MribenchError
from mribench.plugins import registry
from mribench.results import Result, find_results


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    seeds: int = 0
    status: str = "ok"
    reason: str | None = None

    def text(self, digits: int) -> str:
        if self.status != "ok" or self.mean is None or math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.std is not None else f"{self.mean:.{digits}f}"


@dataclass
class Table:
    columns: list[tuple[str, str]]  # (task, metric)
    rows: list[str]
    cells: dict[tuple[str, tuple[str, str]], Cell]
    n_subjects: dict[str, int]
    best: dict[tuple[str, str], str] = field(default_factory=dict)
    footnote: list[str] = field(default_factory=list)


def build_table(tasks: list[str], runs: Path, metrics: list[str] | None = None) -> Table:
    """Collect results of ``tasks`` under ``runs`` into a table; refuses to mix task hashes or extractors."""
    grouped: dict[tuple[str, str], list[tuple[Path, Result]]] = defaultdict(list)
    for task in tasks:
        found = find_results(runs, task)
        if not found:
            raise MribenchError(f"no results for task {task!r} under {runs}; run 'mribench run --task {task} ...'")
        for path, result in found:
            grouped[(task, f"{result.method['name']} ({result.method['preset']})")].append((path, result))
    _check_consistent(grouped)
    columns: list[tuple[str, str]] = []
    for task in tasks:
        names = sorted({m for (t, _), items in grouped.items() if t == task for _, r in items for m in r.metrics},
                       key=_metric_order)
        columns += [(task, m) for m in names if metrics is None or m in metrics]
    rows = sorted({row for (_, row) in grouped})
    cells: dict[tuple[str, tuple[str, str]], Cell] = {}
    n_subjects: dict[str, int] = {}
    for (task, row), items in grouped.items():
        n_subjects[task] = max(n_subjects.get(task, 0), *(r.task["n_test"] for _, r in items))
        for column in (c for c in columns if c[0] == task):
            cells[(row, column)] = _cell([r.metrics.get(column[1]) for _, r in items])
    table = Table(columns=columns, rows=rows, cells=cells, n_subjects=n_subjects)
    table.best = {column: best for column in columns if (best := _best(table, column))}
    table.footnote = _footnote(grouped)
    return table


def _metric_order(name: str) -> tuple[int, str]:
    order = ["psnr", "ssim", "mae", "fid", "fvd", "fd-seg", "dice"]
    return (order.index(name) if name in order else len(order), name)


def _cell(entries: list[dict | None]) -> Cell:
    computed = [e for e in entries if e and e.get("status") == "ok" and e.get("aggregate")]
    if not computed:
        reasons = {e.get("reason") for e in entries if e}
        return Cell(status="not computed", reason="; ".join(sorted(r for r in reasons if r)) or None)
    means = [e["aggregate"]["mean"] for e in computed]
    stds = [e["aggregate"].get("std") for e in computed]
    std = float(np.mean(stds)) if all(s is not None for s in stds) else None
    return Cell(mean=float(np.mean(means)), std=std, n=int(computed[0]["aggregate"].get("n", 0)), seeds=len(computed))


def _check_consistent(grouped) -> None:
    by_task: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    by_extractor: dict[tuple[str, str], dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for (task, _), items in grouped.items():
        for path, result in items:
            by_task[task][result.task["hash"][:12]].append(path)
            for metric, entry in result.metrics.items():
                if entry.get("extractor"):
                    key = ",".join(f"{k}={v}" for k, v in sorted(entry["extractor"].items()))
                    by_extractor[(task, metric)][key].append(path)
    for task, hashes in by_task.items():
        if len(hashes) > 1:
            detail = "; ".join(f"{h}: {paths[0]}" + (f" (+{len(paths) - 1})" if len(paths) > 1 else "")
                               for h, paths in hashes.items())
            raise MribenchError(f"results of task {task!r} have different task hashes ({detail}); the spec changed "
                                "between runs — rerun them, or use separate --runs folders")
    for (task, metric), extractors in by_extractor.items():
        if len(extractors) > 1:
            detail = "; ".join(f"{e}: {paths[0]}" for e, paths in extractors.items())
            raise MribenchError(f"{task} / {metric}: results were computed with different extractors ({detail})")


def _best(table: Table, column: tuple[str, str]) -> str | None:
    try:
        higher = registry().metric(column[1]).higher_is_better
    except MribenchError:
        return None
    scored = [(cell.mean, row) for row in table.rows
              if (cell := table.cells.get((row, column))) and cell.status == "ok" and cell.mean is not None
              and not math.isnan(cell.mean)]
    if len(scored) < 2:
        return None
    return (max if higher else min)(scored)[1]


def _footnote(grouped) -> list[str]:
    lines = []
    tasks = sorted({t for t, _ in grouped})
    for task in tasks:
        result = next(r for (t, _), items in grouped.items() if t == task for _, r in items)
        seeds = sorted({r.seed for (t, _), items in grouped.items() if t == task for _, r in items})
        lines.append(f"{task}: v{result.task['version']}, task hash {result.task['hash'][:12]}, split hash "
                     f"{result.task['split_hash'][:12]}, n={result.task['n_test']}, seeds {seeds}")
    versions = sorted({r.provenance.get("packages", {}).get("mribench", "?") for items in grouped.values()
                       for _, r in items})
    lines.append(f"mribench {', '.join(versions)}; mean ± std over test subjects; best per column in bold.")
    return lines


# -- rendering -----------------------------------------------------------------------------------------------
def _digits(metric: str) -> int:
    return 4 if metric in ("ssim", "mae") else 2


def _header(table: Table) -> list[str]:
    multi = len({t for t, _ in table.columns}) > 1
    return ["method"] + [f"{t} {m}" if multi else m for t, m in table.columns] + \
        [f"n ({t})" for t in dict.fromkeys(t for t, _ in table.columns)]


def _row_values(table: Table, row: str, bold) -> list[str]:
    values = [row]
    for column in table.columns:
        cell = table.cells.get((row, column), Cell(status="missing"))
        text = cell.text(_digits(column[1])) if (row, column) in table.cells else "–"
        values.append(bold(text) if table.best.get(column) == row else text)
    return values + [str(table.n_subjects[t]) for t in dict.fromkeys(t for t, _ in table.columns)]


def render(table: Table, fmt: str) -> str:
    if fmt == "md":
        lines = ["| " + " | ".join(_header(table)) + " |", "|" + "---|" * len(_header(table))]
        lines += ["| " + " | ".join(_row_values(table, row, lambda s: f"**{s}**")) + " |" for row in table.rows]
        return "\n".join(lines + [""] + [f"_{line}_  " for line in table.footnote]) + "\n"
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["method"] + [f"{t}/{m}/{part}" for t, m in table.columns for part in ("mean", "std")])
        for row in table.rows:
            values = [row]
            for column in table.columns:
                cell = table.cells.get((row, column))
                ok = cell is not None and cell.status == "ok"
                values += [f"{cell.mean:.6g}" if ok else "n/a", f"{cell.std:.6g}" if ok and cell.std is not None
                           else ""]
            writer.writerow(values)
        return buffer.getvalue()
    if fmt == "latex":
        header = [_latex_escape(h).replace("±", r"$\pm$") for h in _header(table)]
        lines = [r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule", " & ".join(header) + r" \\",
                 r"\midrule"]
        for row in table.rows:
            values = _row_values(table, row, lambda s: r"\textbf{" + s + "}")
            lines.append(" & ".join(_latex_escape(v, keep_commands=True).replace("±", r"$\pm$")
                                    for v in values) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [f"% {line}" for line in table.footnote]
        return "\n".join(lines) + "\n"
    raise MribenchError(f"unknown format {fmt!r}; use md, csv or latex")


def _latex_escape(text: str, keep_commands: bool = False) -> str:
    out = text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
    return out if keep_commands else out.replace("{", r"\{").replace("}", r"\}")
