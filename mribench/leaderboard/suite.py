"""Suites: what ``mribench reproduce`` runs (tasks × methods × seeds), as data in ``suites/<name>.yaml``.

A suite names its tasks, which methods run (listed by name, every available method of some families, and/or the
default plan: every available method whose class is ``in_default_plan``, minus excluded families), how many seeds
each gets (``seeds``, raised for some methods on some datasets by ``more_seeds``), the analyses run on some
methods' runs afterwards (``analyses``: ``mribench analyze``, whose tables and figures the folder shows), the
leaderboard folder it writes, the ``make`` target that runs it and, optionally, a folder of results whose recorded
timings estimate the plan on a fresh clone (``timings_from``). Files are read with ``yaml.safe_load`` and
validated (unknown keys refused).
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mribench.errors import MribenchError, UnknownNameError



def _suites_dir() -> Path:
    """The suites: installed as the package data ``mribench/suite_specs`` (a wheel), else ``suites/`` at the
    repository root (a source checkout or an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "suite_specs"
    return installed if installed.is_dir() else package.parent / "suites"


SUITES_DIR = _suites_dir()
DEFAULT_SUITE = "phantom"


class SeedRule(BaseModel):
    """``seeds`` seeds for ``methods`` on the tasks of ``datasets``."""

    model_config = ConfigDict(extra="forbid")
    methods: list[str]
    datasets: list[str]
    seeds: int = Field(ge=1)


class SuiteAnalysis(BaseModel):
    """``mribench analyze NAME`` on the runs of ``method`` on every task of the suite, seeds 0 … ``seeds`` - 1."""

    model_config = ConfigDict(extra="forbid")
    name: str
    method: str
    seeds: int = Field(default=1, ge=1)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    make_target: str
    output: Path
    tasks: list[str] = Field(min_length=1)
    methods: list[str] = []  # always planned
    families: list[str] = []  # every available method of these families is planned too
    default_plan: bool = False  # every available ``in_default_plan`` method but those of ``excluded_families``
    excluded_families: list[str] = []
    seeds: int = Field(default=1, ge=1)
    more_seeds: list[SeedRule] = []
    analyses: list[SuiteAnalysis] = []  # run after every run of the suite
    timings_from: Path | None = None  # results that estimate untimed runs (default: ``output``/results)
    notice: str = ""  # printed under the plan line (e.g. where the suite runs over its time target, and why)

    def seed_count(self, method: str, dataset: str) -> int:
        """Seeds of ``method`` on a task of ``dataset``: the largest rule that names both, else ``seeds``."""
        return max([rule.seeds for rule in self.more_seeds if method in rule.methods and dataset in rule.datasets],
                   default=self.seeds)


def suite_files() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SUITES_DIR.glob("*.yaml"))}


def load_suite(name: str) -> Suite:
    """The suite ``suites/<name>.yaml``; an unknown name or an invalid file is a one-line error."""
    files = suite_files()
    if name not in files:
        raise UnknownNameError("suite", name, files)
    path = files[name]
    try:
        return Suite(name=name, **(yaml.safe_load(path.read_text()) or {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise MribenchError(f"{path}: key '{key}': {error['msg']}") from None
    except (OSError, yaml.YAMLError, TypeError) as exc:
        raise MribenchError(f"{path}: not a suite file ({type(exc).__name__}: {exc})") from None
