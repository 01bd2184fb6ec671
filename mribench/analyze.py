"""``mribench analyze NAME``: analyses a plugin registers (``mribench_register_analyses``) run on one trained model.

The core resolves the task, method, preset and seed as ``mribench run`` does (bad input fails before any work),
makes sure the model exists by running the ordinary runner when the analysis needs it (a finished run is skipped; a
missing one is trained and evaluated, so the analysis always sits beside its result), loads the model and the data,
and hands an :class:`AnalysisContext` to the analysis. The analysis writes its files (CSV, PNG, markdown) into a
staging folder that replaces ``<run folder>/analysis/<name>/`` only when it succeeds: an interrupted analysis leaves
the previous one whole. ``mribench report`` shows the PNGs it finds there, and the leaderboard renders every
:class:`AnalysisTable` an analysis stores there (``<name>.table.json``, e.g. CoPeDiT's tokenizer reconstruction
table) like its own tables, averaged over the seeds' runs.

Layering: this module sits beside the runner; it knows analyses only through the registry.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from rich.console import Console

from mribench.atomic import atomic_write_text
from mribench.data import TaskData, check_compatible, load_task_data
from mribench.data.base import resolve_root
from mribench.errors import MribenchError
from mribench.method import Method, config_hash
from mribench.metrics.elements import element_arrays
from mribench.metrics.psnr import psnr
from mribench.plugins import registry
from mribench.progress import make_progress
from mribench.protocol import Batch, derive_seed, describe_missing, make_split, parse_missing
from mribench.results import provenance
from mribench.runner import Plan, RunRequest, evaluation_batch, plan, run
from mribench.tasks import TaskSpec

ANALYSIS_FOLDER = "analysis"
ANALYSIS_RECORD = "analysis.json"  # written last: its presence means the analysis is complete
TABLE_SUFFIX = ".table.json"


@dataclass(frozen=True)
class AnalysisTableRow:
    """One row of an analysis table: ``kind`` ``result`` (ours: averaged over seeds by the leaderboard) or
    ``reported`` (the paper's numbers: shown as they are, labelled); ``values`` column key → number (None: none)."""

    label: str
    values: dict[str, float | None]
    kind: str = "result"


@dataclass(frozen=True)
class AnalysisTable:
    """A table an analysis stores for the leaderboard: ``columns`` are (key, label); a key that is a metric of the
    task (``psnr``, ``ssim``) is marked best/second by that metric's direction."""

    key: str
    title: str
    columns: list[tuple[str, str]]
    rows: list[AnalysisTableRow]
    note: str = ""

    def write(self, folder: Path) -> Path:
        """``<folder>/<key>.table.json``, atomically."""
        path = Path(folder) / f"{self.key}{TABLE_SUFFIX}"
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> "AnalysisTable":
        data = json.loads(Path(path).read_text())
        return cls(key=data["key"], title=data["title"], columns=[tuple(c) for c in data["columns"]],
                   rows=[AnalysisTableRow(**row) for row in data["rows"]], note=data.get("note", ""))


@dataclass(frozen=True)
class Focus:
    """The one subject and missing configuration an analysis looks at closely (``--subject``, ``--missing``):
    ``subject_id`` None means the first test subject, ``availability`` (C, D) None that subject's evaluation pattern."""

    subject_id: str | None = None
    availability: np.ndarray | None = None


@dataclass
class AnalysisContext:
    """What an analysis receives. ``method`` is the trained model (None when the analysis does not need one);
    ``shared_dir`` the dataset's folder of shared artefacts (e.g. CoPeDiT's tokenizers); ``output`` the (staging)
    folder to write into; ``say`` prints one plain line; ``focus`` the subject and pattern chosen by the user."""

    task: TaskSpec
    data: TaskData
    method_cls: type[Method]
    method: Method | None
    config: Any
    preset: str
    seed: int
    shared_dir: Path
    output: Path
    progress: Any
    say: Callable[[str], None]
    focus: Focus = Focus()

    def synthesis_seed(self, subject_id: str) -> int:
        """The torch seed the runner sets before synthesizing ``subject_id`` (so an unmodified synthesis here is the
        run's prediction)."""
        return derive_seed("synthesize", self.seed, self.task.name, subject_id)

    def batch(self, subject) -> Batch:
        """The subject's batch with the protocol's evaluation pattern (as the runner builds it)."""
        return evaluation_batch(self.task, subject)

    def focus_batch(self) -> tuple[Any, Batch]:
        """The focused test subject (``--subject``, else the first) and its batch with the focused pattern
        (``--missing``, else the subject's evaluation pattern)."""
        test = self.data.test
        subject = test[test.subject_ids.index(self.focus.subject_id) if self.focus.subject_id else 0]
        return subject, evaluation_batch(self.task, subject, self.focus.availability)

    def describe_missing(self, batch: Batch) -> str:
        """What ``batch`` misses, as ``--missing`` states it (``T1ce,FLAIR`` or ``12-19``)."""
        return describe_missing(self.task, batch.availability_mask[0].numpy())

    def missing_psnr(self, subject, batch: Batch, prediction: torch.Tensor) -> float:
        """PSNR (dB) of one prediction (1, C, D, H, W) of ``subject`` as the leaderboard scores it: clipped to
        [0, 1], observed elements written back, mean over the missing elements (3D per modality / 2D per slice)."""
        return subject_psnr(self.task, subject, batch, prediction)


def subject_psnr(task: TaskSpec, subject, batch: Batch, prediction: torch.Tensor) -> float:
    target = torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]
    observed = batch.availability_mask[..., None, None].expand_as(target)
    completed = torch.where(observed, target, prediction.float().clamp(0, 1))
    values = [psnr(pred, true) for _, pred, true in element_arrays(completed.float(), target.float(),
                                                                   batch.availability_mask, task.problem)]
    if not values:
        raise MribenchError(f"subject {batch.subject_ids[0]}: no missing element to score")
    return float(np.mean(values))


class Analysis:
    """Base of a registered analysis. Class attributes: ``name`` (``mribench analyze NAME``), ``summary``,
    ``needs_model`` (whether the trained model is loaded; False for analyses that train their own pieces),
    ``split`` (the subjects it reads: ``test`` or ``validation``, stated in its outputs), ``focus`` (what
    ``--subject`` / ``--missing`` choose, e.g. "the attention maps"; empty: the analysis takes neither)."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    needs_model: ClassVar[bool] = True
    split: ClassVar[str] = "test"
    focus: ClassVar[str] = ""

    @classmethod
    def unsupported_reason(cls, method_cls: type[Method], config: Any) -> str | None:
        """Why this analysis cannot read ``method_cls`` at this config (None: it can)."""
        return None

    def run(self, context: AnalysisContext) -> list[Path]:
        """Write the analysis' files into ``context.output``; return them."""
        raise NotImplementedError


@dataclass
class AnalyzeRequest:
    analysis: str
    task: str
    method: str = "copedit"
    preset: str = "cpu"
    seed: int = 0
    runs: Path = Path("runs")
    data_root: Path | None = None
    subject: str | None = None  # a test subject ID (``--subject``)
    missing: str | None = None  # a missing configuration in words (``--missing``, see protocol.parse_missing)


def analysis_folder(run_folder: Path, name: str) -> Path:
    return Path(run_folder) / ANALYSIS_FOLDER / name


def check(request: AnalyzeRequest) -> tuple[type[Analysis], Plan, Focus]:
    """Resolve every name, check the analysis can read the method and check the focus, before any work."""
    analysis_cls = registry().get("analysis", request.analysis).cls
    the_plan = plan(RunRequest(method=request.method, task=request.task, preset=request.preset, seed=request.seed,
                               data_root=request.data_root, out=request.runs))
    reason = analysis_cls.unsupported_reason(the_plan.method_cls, the_plan.config)
    if reason:
        raise MribenchError(f"analysis {request.analysis!r} cannot read method {request.method!r} at preset "
                            f"{request.preset!r}: {reason}")
    return analysis_cls, the_plan, check_focus(request, analysis_cls, the_plan)


def check_focus(request: AnalyzeRequest, analysis_cls: type[Analysis], the_plan: Plan) -> Focus:
    """``--subject`` must be a test subject of the task and ``--missing`` a configuration of its training range; the
    subject is checked against the split of the dataset's subject list (no image is read, no model touched)."""
    if request.subject is None and request.missing is None:
        return Focus()
    if not analysis_cls.focus:
        raise MribenchError(f"analysis {request.analysis!r} looks at no single subject: --subject and --missing "
                            "apply to analyses that do (e.g. prompts)")
    task = the_plan.task
    availability = parse_missing(task, request.missing) if request.missing is not None else None
    if request.subject is not None:
        check_compatible(task, the_plan.dataset_cls)
        dataset = the_plan.dataset_cls(resolve_root(the_plan.dataset_cls, task.dataset_options, request.data_root),
                                       task.dataset_options)
        test = make_split(task, dataset.subject_ids()).test
        if request.subject not in test:
            shown = ", ".join(test[:8]) + (f" (+{len(test) - 8} more)" if len(test) > 8 else "")
            raise MribenchError(f"--subject {request.subject!r} is not a test subject of task {task.name} (its test "
                                f"subjects: {shown})")
    return Focus(request.subject, availability)


def analyze(request: AnalyzeRequest, console: Console | None = None) -> list[Path]:
    """Run the analysis; returns the written files (under ``<run folder>/analysis/<name>/``)."""
    console = console or Console(stderr=True)
    analysis_cls, the_plan, focus = check(request)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    if analysis_cls.needs_model:
        run(RunRequest(method=request.method, task=request.task, preset=request.preset, seed=request.seed,
                       data_root=request.data_root, out=request.runs), console=console)
    final = analysis_folder(the_plan.folder, request.analysis)
    staging = final.with_name(f".{final.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with make_progress(console) as progress:
            data = load_task_data(the_plan.task, the_plan.dataset_cls, request.data_root, progress=progress)
            model_root = the_plan.model_root(data)
            method = None
            if analysis_cls.needs_model:
                checkpoint = model_root / request.method / f"{request.preset}-seed{request.seed}" / "model.pt"
                method = the_plan.method_cls.load(checkpoint, the_plan.config, request.seed, the_plan.task)
                method.shared_dir, method.validation = model_root / "shared", data.validation
            context = AnalysisContext(task=the_plan.task, data=data, method_cls=the_plan.method_cls, method=method,
                                      config=the_plan.config, preset=request.preset, seed=request.seed,
                                      shared_dir=model_root / "shared", output=staging, progress=progress, say=say,
                                      focus=focus)
            with torch.no_grad():
                written = analysis_cls().run(context)
            written.append(_write_provenance(context, request, analysis_cls, the_plan, data, written))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return [final / Path(path).relative_to(staging) for path in written]


def _write_provenance(context: AnalysisContext, request: AnalyzeRequest, analysis_cls: type[Analysis],
                      the_plan: Plan, data: TaskData, written: list[Path]) -> Path:
    """``analysis.json``: what was analysed (task and split hashes, method config hash, seed, the subjects' split,
    the focused subject and pattern), the files, and the provenance a result carries (versions, git commit, host)."""
    task, folder = the_plan.task, context.output
    facts = {"analysis": request.analysis, "split": analysis_cls.split,
             "subjects": len(data.test if analysis_cls.split == "test" else data.validation),
             "task": {"name": task.name, "version": task.version, "hash": task.hash, "split_hash": data.split.hash,
                      "validation_hash": data.split.validation_hash},
             "method": {"name": request.method, "preset": request.preset, "seed": request.seed,
                        "config_hash": config_hash(the_plan.config)},
             "files": sorted(Path(path).name for path in written), "provenance": provenance()}
    if analysis_cls.focus:
        subject, batch = context.focus_batch()
        facts["focus"] = {"what": analysis_cls.focus, "subject": subject.subject_id,
                          "missing": context.describe_missing(batch),
                          "chosen": {"subject": request.subject is not None, "missing": request.missing is not None}}
    path = folder / ANALYSIS_RECORD
    atomic_write_text(path, json.dumps(facts, indent=2, sort_keys=True, default=str) + "\n")
    return path


def _stored_files(run_folder: Path, suffix: str) -> list[tuple[str, Path]]:
    """(analysis name, path) of the files ending ``suffix`` that the complete analyses of a run folder stored, as
    their ``analysis.json`` lists them (an interrupted analysis' staging folder has none), sorted."""
    root = Path(run_folder) / ANALYSIS_FOLDER
    found = []
    records = sorted(root.glob(f"*/{ANALYSIS_RECORD}")) if root.is_dir() else []
    for record in (r for r in records if not r.parent.name.startswith(".")):  # glob's * matches hidden names
        try:
            files = json.loads(record.read_text())["files"]
        except (OSError, ValueError, KeyError) as exc:
            raise MribenchError(f"{record}: not an analysis record ({type(exc).__name__}: {exc}); rerun its "
                                f"'mribench analyze {record.parent.name}' or delete the folder") from None
        found += [(record.parent.name, record.parent / name) for name in sorted(files) if name.endswith(suffix)]
    return found


def analysis_figures(run_folder: Path) -> list[tuple[str, Path]]:
    """(analysis name, PNG path) of every figure stored in a run folder; the PNG itself may be absent (a leaderboard
    folder's result copies keep none: its ``figures/`` holds them)."""
    return _stored_files(run_folder, ".png")


def analysis_tables(run_folder: Path) -> list[tuple[str, AnalysisTable]]:
    """(analysis name, table) of every :class:`AnalysisTable` stored in a run folder; a damaged file is a one-line
    error naming it."""
    tables = []
    for name, path in _stored_files(run_folder, TABLE_SUFFIX):
        try:
            tables.append((name, AnalysisTable.read(path)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MribenchError(f"{path}: not an analysis table ({type(exc).__name__}: {exc}); rerun its "
                                f"'mribench analyze {name}' or delete it") from None
    return tables


__all__ = ["Analysis", "AnalysisContext", "AnalysisTable", "AnalysisTableRow", "AnalyzeRequest", "Focus",
           "analysis_tables", "analyze", "analysis_figures", "subject_psnr"]
