"""Result schema, atomic store and provenance.

A result lives at ``<runs>/<task>/<method>/<preset>-seed<k>/result.json`` and holds everything needed to trust and
reproduce its numbers: task name + version + hash, split hash, method name + version + config, seed, per-subject
and aggregate metrics, extractor weights hashes, timings, package versions, git commit and host.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mribench.atomic import atomic_write_text
from mribench.errors import MribenchError

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
_PACKAGES = ("mribench", "mribench-copedit", "mribench-baselines", "torch", "torchvision", "monai", "numpy",
             "torchmetrics", "pytorch-fid", "nibabel", "scipy", "scikit-image")


@dataclass
class Result:
    task: dict[str, Any]  # name, version, hash, split_hash, validation_hash, dataset, problem, missing, n_*
    method: dict[str, Any]  # name, version, plugin, preset, config, config_hash, reads_mask, training
    seed: int
    metrics: dict[str, dict[str, Any]]  # name -> MetricResult as dict
    subjects: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    observed_changed: dict[str, Any] = field(default_factory=dict)
    method_report: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise MribenchError(f"result schema {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
        return cls(**data)


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


def write_result(result: Result, folder: Path) -> Path:
    path = Path(folder) / RESULT_FILE
    atomic_write_text(path, result.to_json())
    return path


def read_result(path: Path) -> Result:
    try:
        return Result.from_dict(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise MribenchError(f"{path}: unreadable result ({type(exc).__name__}: {exc})") from None


def find_results(runs: Path, task: str | None = None) -> list[tuple[Path, Result]]:
    """Every result.json under ``runs`` (optionally of one task), sorted by path."""
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
