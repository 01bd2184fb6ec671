"""Task specs (``tasks/<name>.yaml``): validated, registered by name, hashed.

The task hash is SHA-256 of the canonical JSON of the validated spec; it goes into every result, and the
leaderboard refuses to put results with different hashes in one column.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mribench.errors import MribenchError, UnknownNameError

PROBLEMS = ("missing-modality", "missing-slice")


def _tasks_dir() -> Path:
    """The task specs: installed as the package data ``mribench/task_specs`` (a wheel), else ``tasks/`` at the
    repository root (a source checkout or an editable install)."""
    package = Path(__file__).resolve().parent
    installed = package / "task_specs"
    return installed if installed.is_dir() else package.parent / "tasks"


TASKS_DIR = _tasks_dir()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    """How subjects are split: ``ratio`` (``test_fraction`` of the sorted IDs) or ``count`` (``train`` + ``test``).

    ``validation_fraction`` of the training subjects (at least one) is carved off as the validation split: methods
    never train on it, and presets, learning curves and sweeps are judged on it, never on test subjects.
    """

    rule: Literal["ratio", "count"]
    seed: int = 0
    test_fraction: float | None = Field(default=None, gt=0, lt=1)
    train: int | None = Field(default=None, ge=1)
    test: int | None = Field(default=None, ge=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _rule_fields(self):
        if self.rule == "ratio" and self.test_fraction is None:
            raise ValueError("rule 'ratio' needs test_fraction (e.g. 0.2)")
        if self.rule == "count" and (self.train is None or self.test is None):
            raise ValueError("rule 'count' needs train and test (e.g. 1000 and 251)")
        return self


class PreprocessSpec(_Strict):
    """Preprocessing of every volume; ``shape`` is (D, H, W) with D the slice axis."""

    shape: tuple[int, int, int]
    orientation: str | None = Field(default="RAS", description="axis codes to reorient to; null keeps the voxel axes")
    crop_foreground: bool = True
    slice_window: int | None = Field(default=None, ge=1, description="keep the middle N slices along D")
    center_crop: tuple[int, int] | None = Field(default=None, description="in-plane (H, W) crop before resizing")
    percentiles: tuple[float, float] = (0.5, 99.5)

    @field_validator("shape")
    @classmethod
    def _positive(cls, v):
        if any(s < 1 for s in v):
            raise ValueError("every size must be >= 1")
        return v

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, v):
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError("need 0 <= low < high <= 100")
        return v


class MetricSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ReferenceSpec(_Strict):
    """Numbers reported in the paper, shown beside ours (never mixed with them)."""

    source: str
    values: dict[str, dict[str, float | tuple[float, float]]] = Field(
        default_factory=dict, description="metric -> method -> mean or [mean, std]"
    )


class TaskSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9+\-]*$")
    version: int = Field(ge=1)
    description: str
    dataset: str
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    problem: Literal["missing-modality", "missing-slice"]
    elements: list[str] | int
    missing: int = Field(ge=1)
    train_missing: tuple[int, int]
    split: SplitSpec
    pattern_seed: int = 0
    preprocess: PreprocessSpec
    metrics: list[MetricSpec]
    reference: ReferenceSpec | None = None

    @model_validator(mode="after")
    def _consistent(self):
        n = self.n_elements
        if self.problem == "missing-modality" and not isinstance(self.elements, list):
            raise ValueError("elements: a missing-modality task lists its modality names")
        if self.problem == "missing-slice" and not isinstance(self.elements, int):
            raise ValueError("elements: a missing-slice task gives its slice count")
        if self.problem == "missing-slice" and self.elements != self.preprocess.shape[0]:
            raise ValueError(f"elements ({self.elements}) must equal preprocess.shape[0] ({self.preprocess.shape[0]})")
        if not 1 <= self.missing < n:
            raise ValueError(f"missing must be between 1 and {n - 1} (elements: {n})")
        lo, hi = self.train_missing
        if not 1 <= lo <= hi < n:
            raise ValueError(f"train_missing must be [lo, hi] with 1 <= lo <= hi < {n}")
        return self

    # -- derived -------------------------------------------------------------------------------------------
    @property
    def n_elements(self) -> int:
        return len(self.elements) if isinstance(self.elements, list) else self.elements

    @property
    def channels(self) -> int:
        """C of the (C, D, H, W) volume: modalities for brain, 1 for cardiac."""
        return self.n_elements if self.problem == "missing-modality" else 1

    @property
    def element_names(self) -> list[str]:
        if isinstance(self.elements, list):
            return list(self.elements)
        return [f"slice{i:02d}" for i in range(self.elements)]

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @cached_property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def model_key(self) -> str:
        """Tasks that differ only in the evaluated missing count share one trained model per method."""
        payload = self.model_dump(mode="json", include={"dataset", "dataset_options", "problem", "elements",
                                                        "train_missing", "split", "preprocess"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


INCLUDE_KEY = "include"
BASE_PREFIX = "_"  # a task folder's shared bases (``_brats.yaml``): included by tasks, never tasks themselves


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MribenchError(f"{path}:{where} malformed YAML: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise MribenchError(f"{path}: cannot read task spec: {exc.strerror}") from None
    if not isinstance(raw, dict):
        raise MribenchError(f"{path}: a task spec must be a mapping of keys, got {type(raw).__name__}")
    return raw


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key, anything else (lists included) replaces."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolved_task_mapping(path: Path, including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task YAML's keys with its ``include:`` (a base file, relative to it; bases may include bases) merged in:
    the file's own keys win, nested mappings merge key by key, lists are replaced whole.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "_base.yaml").write_text("split: {rule: count, train: 10, test: 5}\\nmetrics: [{name: psnr}]")
    >>> _ = (folder / "task.yaml").write_text("include: _base.yaml\\nsplit: {test: 4}")
    >>> resolved_task_mapping(folder / "task.yaml")
    {'split': {'rule': 'count', 'train': 10, 'test': 4}, 'metrics': [{'name': 'psnr'}]}
    """
    if path.resolve() in including:
        chain = " -> ".join(str(p) for p in (*including, path.resolve()))
        raise MribenchError(f"{path}: key '{INCLUDE_KEY}': the includes form a cycle ({chain})")
    raw = _read_mapping(path)
    base_name = raw.pop(INCLUDE_KEY, None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str):
        raise MribenchError(f"{path}: key '{INCLUDE_KEY}': expected the file name of a base spec, got {base_name!r}")
    base = path.parent / base_name
    if not base.is_file():
        raise MribenchError(f"{path}: key '{INCLUDE_KEY}': no file {base}")
    return _merged(resolved_task_mapping(base, (*including, path.resolve())), raw)


def load_task_file(path: Path) -> TaskSpec:
    """Read and validate one task YAML (its ``include:`` resolved, see :func:`resolved_task_mapping`); errors name
    the file, the key and what was expected."""
    raw = resolved_task_mapping(path)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        expected = "unknown key (not allowed)" if err["type"] == "extra_forbidden" else err["msg"]
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise MribenchError(f"{path}: key '{key}': {expected}{more}") from None
    if spec.name != path.stem:
        raise MribenchError(f"{path}: key 'name': expected {path.stem!r} (the file name), got {spec.name!r}")
    return spec


class TaskRegistry:
    """All task specs found in the task folders, by name."""

    def __init__(self, folders: list[tuple[Path, str]]):
        self.files: dict[str, Path] = {}
        for folder, _owner in folders:
            for path in sorted(p for p in Path(folder).glob("*.yaml") if not p.name.startswith(BASE_PREFIX)):
                if path.stem in self.files and self.files[path.stem] != path:
                    raise MribenchError(f"task {path.stem!r} is defined twice: {self.files[path.stem]} and {path}")
                self.files[path.stem] = path
        self._specs: dict[str, TaskSpec] = {}

    def names(self) -> list[str]:
        return sorted(self.files)

    def get(self, name: str) -> TaskSpec:
        if name not in self.files:
            raise UnknownNameError("task", name, self.files)
        if name not in self._specs:
            self._specs[name] = load_task_file(self.files[name])
        return self._specs[name]


def task_registry() -> TaskRegistry:
    from mribench.plugins import registry

    return TaskRegistry(registry().task_dirs)


def get_task(name_or_path: str) -> TaskSpec:
    """A task by registered name, or a path to a YAML file."""
    if name_or_path.endswith((".yaml", ".yml")):
        return load_task_file(Path(name_or_path))
    return task_registry().get(name_or_path)
