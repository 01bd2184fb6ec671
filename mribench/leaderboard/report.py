"""Figures and the HTML report of stored runs, and the committed ``leaderboard/`` folder (the README's results block
is :mod:`mribench.leaderboard.readme`).

* :func:`qualitative_figure`: per task, a few test subjects; top row ground truth, observed inputs and each method's
  synthesis (title: the subject's PSNR), bottom row the absolute error of each synthesis;
* :func:`psnr_boxplot`: per-subject PSNR of each method on one task;
* :func:`psnr_vs_missing`: mean PSNR of each method against the missing count, across the tasks of one dataset.

matplotlib with the Agg backend (no display); every figure is stored as an 8-bit palette PNG (:func:`palette_png`).
:func:`write_report` writes one self-contained HTML page (tables and figures inline, no external asset) or a folder of
PNGs; :func:`write_leaderboard_folder` regenerates ``leaderboard/``, whose ``report.html`` links ``figures/`` by
relative path so each image is stored once.
"""
from __future__ import annotations

import base64
import functools
import io
import shutil
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mribench.analyze import ANALYSIS_FOLDER, analysis_figures
from mribench.atomic import atomic_write_bytes, atomic_write_text
from mribench.errors import MribenchError
from mribench.leaderboard.cells import metric_cell
from mribench.leaderboard.collect import Collection, Descriptions, collect
from mribench.leaderboard.layouts.paper import PROMPTS_SUFFIX, build_paper_tables, by_dataset, paper_tables, row_labels
from mribench.leaderboard.layouts.plain import build_table
from mribench.leaderboard.render import render
from mribench.results import RESULT_FILE, compact_result_json, run_dir
from mribench.runner import PREDICTION_FOLDERS

DatasetClasses = Callable[[str], type]  # dataset name -> its class (e.g. the registry's ``dataset``)
TABLE_FILES = {"md": "leaderboard.md", "csv": "leaderboard.csv", "latex": "leaderboard.tex",
               "html": "leaderboard.html"}
FIGURES_FOLDER = "figures"


@dataclass
class Figure:
    """A rendered figure: file stem, caption and PNG bytes."""

    name: str
    caption: str
    png: bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Figures are drawn at FIGURE_DPI and stored as 8-bit palette PNGs: a fixed palette of 129 greys, 96 steps of the error
# maps' colour map and matplotlib's ten line colours, each pixel mapped to its nearest entry (a grey stays grey).
FIGURE_DPI = 100
GREY_STEP = 2
ERROR_CMAP = "magma"
ERROR_CMAP_STEPS = 96
# A qualitative panel is about the phantoms' 96 pixels wide; the leaderboard folder shows one subject per task (its
# per-subject spread is in the box plots), which keeps the folder small.
PANEL_INCHES = 1.0
LEADERBOARD_SUBJECTS = 1


@functools.cache
def _palette() -> np.ndarray:
    """(entries, 3) uint8: the greys, the error colour map's steps and matplotlib's line colours, without repeats."""
    from matplotlib import colormaps, colors

    greys = [(v, v, v) for v in [*range(0, 255, GREY_STEP), 255]]
    ramp = [colormaps[ERROR_CMAP](x)[:3] for x in np.linspace(0, 1, ERROR_CMAP_STEPS)]
    lines = [colors.to_rgb(f"C{i}") for i in range(10)]
    return np.array(list(dict.fromkeys(greys + [tuple(int(round(255 * c)) for c in rgb) for rgb in ramp + lines])),
                    dtype=np.uint8)


def palette_png(image) -> bytes:
    """A PIL image as an optimised PNG in :func:`_palette`'s colours, each pixel its nearest entry (no dithering)."""
    from PIL import Image

    palette = _palette()
    rgb = np.asarray(image.convert("RGB")).astype(np.int32)
    packed, inverse = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2], return_inverse=True)
    colours = np.stack([packed >> 16, (packed >> 8) & 255, packed & 255], axis=1)
    distances = ((colours[:, None, :] - palette[None].astype(np.int32)) ** 2).sum(axis=2)
    indexed = Image.fromarray(distances.argmin(axis=1).astype(np.uint8)[inverse].reshape(rgb.shape[:2]))
    indexed.putpalette(palette.ravel().tolist())  # the grey "L" image becomes "P"
    buffer = io.BytesIO()
    indexed.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _png(figure) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
    _pyplot().close(figure)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return palette_png(image)


def _upright(plane: np.ndarray, row_axis_world: np.ndarray) -> np.ndarray:
    """Flip a 2D plane (rows, cols) so that its row axis's dominant world direction points up."""
    return plane[::-1] if row_axis_world[np.argmax(np.abs(row_axis_world))] > 0 else plane


def _focus_slice(label: np.ndarray | None, depth: int) -> int:
    """Slice index through the labels' centroid (e.g. the tumour) when there are labels, else the middle slice."""
    if label is None or not (label > 0).any():
        return depth // 2
    return int(round(float(np.argwhere(label > 0)[:, 0].mean())))


def _first_run(collection: Collection, task: str, row) -> Path:
    """Run folder of the lowest seed of (method, preset) on ``task``."""
    return collection.results[(task, *row)][0][0].parent


def _predictions_folder(run: Path) -> Path:
    """A run's predictions on the preprocessed grid when it kept them (drawn as they are), else on the source grid."""
    preprocessed = run / PREDICTION_FOLDERS["preprocessed"]
    return preprocessed if preprocessed.is_dir() else run / PREDICTION_FOLDERS["native"]


# -- qualitative grid ----------------------------------------------------------------------------------------
def qualitative_figure(task: str, collection: Collection, data_root: Path | None, subjects: int,
                       dataset_classes: DatasetClasses | None) -> Figure:
    """Rows: ``subjects`` test subjects (the first ones, sorted by ID, that every method predicted), each as an image
    row and an error row. Columns: ground truth, observed inputs, one per method. Brain: the axial slice through the
    labels' centroid (else the middle one) of the subject's first missing modality; cardiac: the middle slice of
    the missing run, and the observed stack cut along the long axis (the gap is black). ``dataset_classes``: dataset
    name → class (the installed plugins', which the CLI passes)."""
    from mribench.data import load_task_data
    from mribench.metrics.score import read_on_preprocessed_grid
    from mribench.protocol import evaluation_availability
    from mribench.tasks import get_task

    spec = get_task(task)
    rows = collection.rows(task)
    labels = row_labels(collection, rows)
    folders = {row: _predictions_folder(_first_run(collection, task, row)) for row in rows}
    if dataset_classes is None:
        raise MribenchError(f"{task}: the qualitative figure reads the test subjects, and no dataset classes were given")
    data = load_task_data(spec, dataset_classes(spec.dataset), data_root)
    chosen = [sid for sid in sorted(data.test.subject_ids)
              if all((folders[row] / sid).is_dir() for row in rows)][:subjects]
    if not chosen:
        raise MribenchError(f"{task}: no test subject has predictions from every method under the runs folder")
    index = {sid: i for i, sid in enumerate(data.test.subject_ids)}
    psnr = {row: collection.get(task, row)[0].metrics.get("psnr", {}).get("per_subject") or {} for row in rows}
    observed_columns = spec.channels - spec.missing if spec.problem == "missing-modality" else 1
    columns = 1 + observed_columns + len(rows)
    plt = _pyplot()
    figure, axes = plt.subplots(2 * len(chosen), columns,
                                figsize=(PANEL_INCHES * columns + 0.8, 2.3 * PANEL_INCHES * len(chosen) + 0.4),
                                squeeze=False, layout="constrained")
    for position, sid in enumerate(chosen):
        subject = data.test[index[sid]]
        mask = evaluation_availability(spec, sid)
        direction = np.asarray(subject.affine)[:3, 1]
        if spec.problem == "missing-modality":
            channel = next(c for c in range(spec.channels) if not mask[c].any())
            element, depth = spec.element_names[channel], _focus_slice(subject.label, subject.image.shape[1])
            observed = [(f"observed {spec.element_names[c]}", subject.image[c, depth])
                        for c in range(spec.channels) if mask[c].any()]
        else:
            channel, element = 0, "sax"
            gap = np.flatnonzero(~mask[0])
            depth = int(gap[len(gap) // 2])
            stack = subject.image[0] * mask[0][:, None, None]
            observed = [("observed stack (long axis)", stack[:, stack.shape[1] // 2, :][::-1])]
        truth = subject.image[channel, depth]
        predictions = {row: read_on_preprocessed_grid(folders[row] / sid / f"{element}.nii.gz", subject,
                                                      spec.preprocess.shape)[depth] for row in rows}
        errors = {row: np.abs(prediction - truth) for row, prediction in predictions.items()}
        error_max = max(float(np.percentile(np.concatenate([e.ravel() for e in errors.values()]), 99.5)), 1e-3)
        top, bottom = axes[2 * position], axes[2 * position + 1]
        panels = [(f"{sid}\ntruth {element} (slice {depth})", _upright(truth, direction))]
        panels += [(title, image if spec.problem == "missing-slice" else _upright(image, direction))
                   for title, image in observed]
        panels += [(labels[row] + (f"\n{psnr[row][sid]:.2f} dB" if sid in psnr[row] else ""),
                    _upright(predictions[row], direction)) for row in rows]
        for ax, (title, image) in zip(top, panels):
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            ax.set_title(title, fontsize=6)
        for ax, row in zip(bottom[1 + observed_columns:], rows):
            shown = ax.imshow(_upright(errors[row], direction), cmap=ERROR_CMAP, vmin=0, vmax=error_max,
                              interpolation="nearest", aspect="auto")
        figure.colorbar(shown, ax=list(bottom[1 + observed_columns:]), fraction=0.03, pad=0.01)
        for ax in list(top) + list(bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in bottom[:1 + observed_columns]:
            ax.axis("off")
        bottom[observed_columns].text(0.95, 0.5, "|synthesis − truth| →", ha="right", va="center", fontsize=7,
                                      transform=bottom[observed_columns].transAxes)
    figure.suptitle(f"{task}: ground truth, observed inputs, syntheses and their absolute errors", fontsize=10)
    return Figure(f"{task}-qualitative", _qualitative_caption(task), _png(figure))


def _qualitative_caption(task: str) -> str:
    return f"{task}: qualitative comparison (error maps share one colour scale per subject)"


def _has_predictions(collection: Collection, task: str) -> bool:
    return all((_first_run(collection, task, row) / "predictions").is_dir() for row in collection.rows(task))


def _kept_qualitative(task: str, runs: Path, kept: Path | None) -> Figure:
    """The qualitative figure already under ``kept`` (drawn when the predictions existed): the result copies of a
    leaderboard folder hold no predictions."""
    path = kept / f"{task}-qualitative.png" if kept else None
    if path is None or not path.is_file():
        raise MribenchError(f"{task}: the runs under {runs} hold no predictions, which the qualitative figure needs"
                            + (f", and there is no {path} to keep" if path else ""))
    return Figure(f"{task}-qualitative", _qualitative_caption(task), path.read_bytes())


# -- quantitative figures ------------------------------------------------------------------------------------
def _per_subject_psnr(collection: Collection, task: str, row) -> dict[str, float]:
    """Per-subject PSNR averaged over the seeds of (method, preset)."""
    values: dict[str, list[float]] = {}
    for result in collection.get(task, row):
        entry = result.metrics.get("psnr", {})
        for sid, value in (entry.get("per_subject") or {}).items() if entry.get("status") == "ok" else ():
            values.setdefault(sid, []).append(float(value))
    return {sid: float(np.mean(v)) for sid, v in values.items()}


def psnr_boxplot(task: str, collection: Collection) -> Figure | None:
    """Box plot of per-subject PSNR per method (sorted by median); None when no method has per-subject PSNR."""
    rows = collection.rows(task)
    labels = row_labels(collection, rows)
    series = {labels[row]: list(values.values()) for row in rows
              if (values := _per_subject_psnr(collection, task, row))}
    if not series:
        return None
    ordered = sorted(series, key=lambda name: float(np.median(series[name])))
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 0.45 * len(ordered) + 1.4))
    ax.boxplot([series[name] for name in ordered], orientation="horizontal", tick_labels=ordered, showmeans=True)
    ax.set_xlabel("PSNR (dB) per test subject, missing elements only")
    ax.set_title(f"{task}: per-subject PSNR ({collection.task_info(task)['n_test']} test subjects)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return Figure(f"{task}-psnr-box", f"{task}: per-subject PSNR of each method", _png(figure))


def psnr_vs_missing(dataset: str, tasks: list[str], collection: Collection) -> Figure | None:
    """Mean PSNR (error bars: std over test subjects) against the missing count, one line per method; None with
    fewer than two missing counts."""
    counts = {task: collection.task_info(task)["missing"] for task in tasks}
    if len(set(counts.values())) < 2:
        return None
    rows = sorted({row for task in tasks for row in collection.rows(task)})
    labels = row_labels(collection, rows)
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for index, row in enumerate(rows):
        points = [(counts[task], cell) for task in tasks
                  if collection.get(task, row) and (cell := metric_cell(collection.get(task, row), "psnr")).ok]
        if not points:
            continue
        points.sort(key=lambda item: item[0])
        # ten line colours; past ten methods the marker tells lines of one colour apart
        ax.errorbar([k for k, _ in points], [c.mean for _, c in points], yerr=[c.std or 0.0 for _, c in points],
                    color=f"C{index % 10}", marker="os^Dv"[index // 10 % 5], capsize=3, label=labels[row],
                    linestyle="--" if row[0].endswith(PROMPTS_SUFFIX) else "-")
    ax.set_xticks(sorted(set(counts.values())))
    ax.set_xlabel("missing elements")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{dataset}: PSNR against the missing count", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return Figure(f"{dataset}-psnr-vs-missing", f"{dataset}: mean PSNR ± std over subjects against the missing count",
                  _png(figure))


def report_figures(tasks: list[str], runs: Path, data_root: Path | None = None, subjects: int = 3,
                   kept: Path | None = None, fallback: Descriptions | None = None,
                   dataset_classes: DatasetClasses | None = None,
                   analyses: Container[str] | None = None) -> list[Figure]:
    """Every figure of the report: per task the qualitative grid, the PSNR box plot and the stored figures of the
    ``analyses`` named (None: all), per dataset PSNR vs missing. A task whose runs hold no predictions keeps its
    qualitative figure from the folder ``kept`` (else an error)."""
    collection = collect(tasks, runs, fallback)
    figures: list[Figure] = []
    for dataset, dataset_tasks in by_dataset(collection).items():
        for task in dataset_tasks:
            figures.append(qualitative_figure(task, collection, data_root, subjects, dataset_classes)
                           if _has_predictions(collection, task) else _kept_qualitative(task, runs, kept))
            figures += [box] if (box := psnr_boxplot(task, collection)) else []
            figures += stored_analysis_figures(task, collection, runs, kept, analyses)
        figures += [curve] if (curve := psnr_vs_missing(dataset, dataset_tasks, collection)) else []
    return figures


def analysis_figure_name(task: str, row: tuple[str, str], seed: int, analysis: str, stem: str) -> str:
    """File stem, under a leaderboard folder's ``figures/``, of an analysis figure (``row``: method, preset)."""
    return f"{task}-{row[0]}-{row[1]}-seed{seed}-{analysis}-{stem}"


def stored_analysis_figures(task: str, collection: Collection, runs: Path, kept: Path | None = None,
                            analyses: Container[str] | None = None) -> list[Figure]:
    """The PNGs ``mribench analyze`` stored in the task's run folders (e.g. CoPeDiT's prompt corruption curves); a
    leaderboard folder's result copies hold none, so those are kept from the folder ``kept`` (else an error)."""
    figures = []
    for row in collection.rows(task):
        for path, result in collection.results[(task, *row)]:
            for analysis, png in analysis_figures(path.parent):
                if analyses is not None and analysis not in analyses:
                    continue
                name = analysis_figure_name(task, row, result.seed, analysis, png.stem)
                source = png if png.is_file() else (kept / f"{name}.png" if kept else None)
                if source is None or not source.is_file():
                    raise MribenchError(f"{png}: the analysis figure is not under {runs}"
                                        + (f", and there is no {source} to keep" if source else ""))
                figures.append(Figure(name, f"{task}: {row[0]} ({row[1]}, seed {result.seed}), analysis {analysis}: "
                                            f"{png.stem} (mribench analyze {analysis})", source.read_bytes()))
    return figures


def write_report(tasks: list[str], runs: Path, output: Path, data_root: Path | None = None,
                 subjects: int = 3, fallback: Descriptions | None = None,
                 dataset_classes: DatasetClasses | None = None) -> list[Path]:
    """``output`` ending in .html: one self-contained page (paper tables with the reported numbers, then the
    figures); otherwise a folder that receives one PNG per figure. Returns the written paths."""
    figures = report_figures(tasks, runs, data_root, subjects, fallback=fallback, dataset_classes=dataset_classes)
    output = Path(output)
    if output.suffix.lower() in (".html", ".htm"):
        inline = [(f.caption, "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")) for f in figures]
        return [_write_page(tasks, runs, output, inline, fallback)]
    return _write_pngs(output, figures)


def _write_page(tasks: list[str], runs: Path, output: Path, figures: list[tuple[str, str]],
                fallback: Descriptions | None, analyses: Container[str] | None = None) -> Path:
    """The paper tables with the reported numbers (and the tables of ``analyses``), then ``figures`` as (caption,
    image URL)."""
    page = render(build_paper_tables(tasks, runs, reference=True, withhold_refused=True, fallback=fallback,
                                     analyses=analyses), "html", title="mribench report", figures=figures)
    atomic_write_text(output, page)
    return output


def _write_pngs(folder: Path, figures: list[Figure]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for figure in figures:
        path = folder / f"{figure.name}.png"
        atomic_write_bytes(path, figure.png)
        written.append(path)
    return written


# -- the committed leaderboard folder ------------------------------------------------------------------------
def write_leaderboard_folder(runs: Path, out: Path, tasks: list[str], data_root: Path | None = None,
                             subjects: int = LEADERBOARD_SUBJECTS, fallback: Descriptions | None = None,
                             dataset_classes: DatasetClasses | None = None,
                             analyses: Container[str] | None = None) -> list[Path]:
    """Regenerate ``out`` from ``runs``: paper-layout tables (leaderboard.md/.csv/.tex/.html), the same with the
    paper's reported numbers (leaderboard-reference.md), the plain table (plain.md), the figures as PNGs under
    ``figures/``, report.html linking them by relative path, and a copy of every result.json in the compact form of
    ``mribench.results.compact_result_json`` (with its run's ``analysis/`` folder but its PNGs, which ``figures/``
    holds: the leaderboard shows its tables and figures) under ``out/results/<task>/<method>/<preset>-seed<k>/``
    (so the tables can be rebuilt from the folder alone).

    ``runs`` may be ``out/results`` itself: the tables, the report and the quantitative figures are then rebuilt from
    the copies, and the qualitative figures (which need the predictions) are kept. Files are replaced atomically;
    result copies of runs no longer present are removed. ``analyses``: the analyses (``mribench analyze`` names)
    whose tables, figures and stored files the folder shows (None: every one stored in the runs; a suite passes its
    own, so analyses run for another suite in the same runs folder stay out)."""
    out = Path(out)
    collection = collect(tasks, runs, fallback)
    grids = paper_tables(collection, withhold_refused=True, analyses=analyses)
    written = []
    for fmt, name in TABLE_FILES.items():
        atomic_write_text(out / name, render(grids, fmt, title="mribench leaderboard"))
        written.append(out / name)
    extra = {"leaderboard-reference.md": render(paper_tables(collection, reference=True, withhold_refused=True,
                                                             analyses=analyses), "md"),
             "plain.md": render(build_table(tasks, runs, fallback=fallback), "md")}
    for name, text in extra.items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    figures = report_figures(tasks, runs, data_root, subjects, kept=out / FIGURES_FOLDER, fallback=fallback,
                             dataset_classes=dataset_classes, analyses=analyses)
    shutil.rmtree(out / FIGURES_FOLDER, ignore_errors=True)
    written += _write_pngs(out / FIGURES_FOLDER, figures)
    written.append(_write_page(tasks, runs, out / "report.html",
                               [(f.caption, f"{FIGURES_FOLDER}/{f.name}.png") for f in figures], fallback,
                               analyses))
    staging = out / ".results.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for path, result in collection.all_results():
        target = run_dir(staging, result.task["name"], result.method["name"], result.method["preset"], result.seed)
        target.mkdir(parents=True, exist_ok=True)
        (target / RESULT_FILE).write_text(compact_result_json(path.read_text()))
        for stored in sorted((path.parent / ANALYSIS_FOLDER).glob("[!.]*")):
            # no PNG (figures/ holds each image once), no interrupted analysis' staging folder
            if stored.is_dir() and (analyses is None or stored.name in analyses):
                shutil.copytree(stored, target / ANALYSIS_FOLDER / stored.name,
                                ignore=shutil.ignore_patterns(".*", "*.png"))
    shutil.rmtree(out / "results", ignore_errors=True)
    staging.rename(out / "results")
    return written + [out / "results"]
