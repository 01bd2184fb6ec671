"""Renderers of grids: Markdown, CSV, LaTeX and a self-contained HTML page."""
from __future__ import annotations

import csv
import html
import io
import re
from typing import Callable

from mribench.errors import MribenchError
from mribench.leaderboard.grid import Grid, GridCell

FORMATS = ("md", "csv", "latex", "html")


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
    """One grid as an HTML <table> followed by its footnote (no page around it). A cell with a reason (n/a) gets a
    tooltip with the head of the reason and its note number; each distinct reason is written out once, as a numbered
    note under the table (the same long reason in every FID cell would otherwise fill the page)."""
    esc = html.escape
    reasons = {reason: number for number, reason in enumerate(dict.fromkeys(
        cell.cell.reason for row in grid.rows for cell in row.cells if cell.cell and cell.cell.reason), 1)}
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
            reason = cell.cell.reason if cell.cell else None
            title = f' title="{esc(_reason_head(reason))} [note {reasons[reason]}]"' if reason else ""
            cells.append(f"<td{title}>{text}</td>")
        out.append(f'<tr class="{row.kind}"><td>{esc(row.label)}</td>{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    out += [f'<p class="footnote">[note {number}] {esc(reason)}</p>' for reason, number in reasons.items()]
    out += [f'<p class="footnote">{esc(line)}</p>' for line in grid.footnote]
    return "\n".join(out)


def _reason_head(reason: str) -> str:
    """A reason up to its first parenthesis or semicolon ("weights file X for fid not found")."""
    return re.split(r" \(|; ", reason, maxsplit=1)[0]


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
