"""Result schema, atomic store and provenance.

A result lives at ``<runs>/<task>/<method>/<preset>-seed<k>/result.json`` and holds everything needed to trust and
reproduce its numbers: task name + version + hash, split and validation hashes, data fingerprint, method name +
version + config, seed, per-subject and aggregate metrics, extractor identities (name + SHA-256), timings, package
versions, git commit and host — and no absolute path of the machine that made it (:func:`write_result`).
A file that does not parse or fails the schema is *damaged* (:class:`DamagedResultError`), never complete.

A metric's ``per_subject`` values are a dict subject → value in a run folder. The committed leaderboard folder keeps
the *compact form* (:func:`compact_result_json`): no indentation, and a list in the order of ``subjects`` wherever a
metric has a value for exactly those subjects (the subject IDs are not repeated per metric). Both read the same.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mribench.atomic import atomic_write_text
from mribench.errors import MribenchError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
_PACKAGES = ("mribench", "mribench-copedit", "mribench-baselines", "torch", "torchvision", "monai", "numpy",
             "torchmetrics", "pytorch-fid", "nibabel", "scipy", "scikit-image")


@dataclass
class Result:
    task: dict[str, Any]  # name, version, hash, split_hash, validation_hash, data_fingerprint, dataset, problem, ...
    method: dict[str, Any]  # name, version, plugin, preset, config, config_hash, reads_mask, training
    seed: int
    metrics: dict[str, dict[str, Any]]  # name -> MetricResult as dict
    subjects: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    observed_changed: dict[str, Any] = field(default_factory=dict)
    method_report: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)  # predictions: the grids written ("native", ...), folders
    schema_version: int = SCHEMA_VERSION
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, data: Any) -> "Result":
        """A Result from parsed JSON; raises :class:`DamagedResultError` saying what is wrong when the data does not
        follow the schema (missing or mistyped keys), a plain MribenchError for another schema version."""
        if isinstance(data, dict) and "schema_version" in data and data["schema_version"] != SCHEMA_VERSION:
            raise MribenchError(f"result schema {data['schema_version']!r} is not {SCHEMA_VERSION} (written by another "
                                "mribench version)")
        try:
            _ResultRecord.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise DamagedResultError(f"key '{key}': {err['msg']}{more}") from None
        metrics = {name: {**metric, "per_subject": _per_subject_dict(name, metric["per_subject"], data["subjects"])}
                   if isinstance(metric.get("per_subject"), list) else metric
                   for name, metric in data["metrics"].items()}
        return cls(**{**data, "metrics": metrics})


def _per_subject_dict(metric: str, values: list, subjects: list[str]) -> dict[str, float | None]:
    """The compact form's list of per-subject values (in the order of ``subjects``) as a dict subject → value."""
    if len(values) != len(subjects):
        raise DamagedResultError(f"key 'metrics.{metric}.per_subject': {len(values)} values for "
                                 f"{len(subjects)} subjects")
    return dict(zip(subjects, values))


def compact_result_json(text: str) -> str:
    """A result file's JSON in the compact form of the committed leaderboard folder: the same data, every float
    exact, without indentation and with each metric's per-subject values as a list in the order of ``subjects``
    when it scored exactly those subjects (else the dict is kept). :func:`read_result` reads both forms alike."""
    data = json.loads(text)
    for metric in data["metrics"].values():
        values = metric.get("per_subject")
        if isinstance(values, dict) and list(values) == data["subjects"]:
            metric["per_subject"] = list(values.values())
    return json.dumps(data, separators=(",", ":"))


class DamagedResultError(MribenchError):
    """A result file that does not parse or does not follow the schema: not a complete run."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _TaskRecord(_Record):
    name: str
    version: int
    hash: str
    split_hash: str
    n_test: int


class _MethodRecord(_Record):
    name: str
    preset: str


class _MetricRecord(_Record):
    status: str
    aggregate: dict[str, Any] | None = None
    per_subject: dict[str, float | None] | list[float | None] | None = None  # a list: the compact form
    extractor: dict[str, str] | None = None


class _ResultRecord(BaseModel):
    """What :func:`read_result` checks before a result counts: every key the runner writes, with its type."""

    model_config = ConfigDict(extra="forbid", strict=True)
    task: _TaskRecord
    method: _MethodRecord
    seed: int
    metrics: dict[str, _MetricRecord]
    subjects: list[str]
    skipped: list[dict[str, str]]
    observed_changed: dict[str, Any]
    method_report: dict[str, Any]
    timings: dict[str, float]
    provenance: dict[str, Any]
    outputs: dict[str, Any] = {}  # absent in results written before the field existed
    schema_version: int
    created: str


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def run_dir(runs: Path, task: str, method: str, preset: str, seed: int) -> Path:
    return Path(runs) / task / method / f"{preset}-seed{seed}"


def write_result(result: Result, folder: Path, local_paths: dict[str, Path] | None = None) -> Path:
    """Write ``result.json`` atomically. Every occurrence of a ``local_paths`` folder (label → path, e.g.
    ``{"<data root>": root}``) or of the home folder (``~``) in its strings is replaced by the label: a result
    carries no absolute path of the machine that made it."""
    path = Path(folder) / RESULT_FILE
    labels = {**(local_paths or {}), "~": Path.home()}
    atomic_write_text(path, json.dumps(_portable(asdict(result), _path_patterns(labels)), indent=2,
                                       default=_json_default))
    return path


def _path_patterns(labels: dict[str, Path]) -> list[tuple[re.Pattern, str]]:
    """(regex, label) pairs, longest path first, matching a path only where it ends (not ``/data`` in ``/data2``)."""
    forms = {}
    for label, folder in labels.items():
        for form in {str(Path(folder)), str(Path(folder).resolve())}:
            if form not in ("/", "."):
                forms.setdefault(form, label)
    return [(re.compile(re.escape(form) + r"(?![^/\s'\"),;:\]])"), forms[form])
            for form in sorted(forms, key=len, reverse=True)]


def _portable(value: Any, patterns: list[tuple[re.Pattern, str]]) -> Any:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        for pattern, label in patterns:
            value = pattern.sub(lambda _, label=label: label, value)
        return value
    if isinstance(value, dict):
        return {key: _portable(item, patterns) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(item, patterns) for item in value]
    return value


def read_result(path: Path) -> Result:
    """A stored result, validated: a file that does not parse or fails the schema raises
    :class:`DamagedResultError` naming the file and what is wrong."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise MribenchError(f"{path}: cannot read the result ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        why = "empty file" if not text.strip() else f"not valid JSON: {getattr(exc, 'msg', exc)}"
        raise DamagedResultError(f"{path}: damaged result ({why})") from None
    try:
        return Result.from_dict(data)
    except DamagedResultError as exc:
        raise DamagedResultError(f"{path}: damaged result ({exc})") from None
    except MribenchError as exc:
        raise MribenchError(f"{path}: {exc}") from None


def stored_config_hash(path: Path) -> str | None:
    """The method config hash of the result at ``path``, None when there is no result; a damaged one raises
    :class:`DamagedResultError` (the runner redoes it, an estimate counts it as to do)."""
    return read_result(path).method.get("config_hash") if Path(path).exists() else None


def find_results(runs: Path, task: str | None = None) -> list[tuple[Path, Result]]:
    """Every result.json under ``runs`` (optionally of one task), sorted by path; a damaged one raises
    :class:`DamagedResultError` naming it."""
    root = Path(runs) / task if task else Path(runs)
    return [(p, read_result(p)) for p in sorted(root.glob(f"**/{RESULT_FILE}"))]


def provenance() -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    import torch

    return {
        "packages": versions,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "host": {"node": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
                 "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
