"""Where mribench looks for datasets, its config file and its caches (environment variables and defaults).

Light on purpose (no torch): ``mribench tasks`` reads it to say whether each task's data is present.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from mribench.errors import MribenchError

CONFIG_FILE_ENV = "MRIBENCH_CONFIG"
DATA_ENV = "MRIBENCH_DATA"
CACHE_ENV = "MRIBENCH_CACHE"


def config_file() -> Path:
    return Path(os.environ.get(CONFIG_FILE_ENV, Path.home() / ".config" / "mribench" / "config.yaml"))


def cache_dir() -> Path:
    """Root of mribench's caches (phantoms, preprocessed arrays, trained segmenters)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "mribench"))


def _config_root(dataset: str) -> str | None:
    path = config_file()
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MribenchError(f"{path}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    data = raw.get("data", {}) if isinstance(raw, dict) else {}
    value = data.get(dataset) if isinstance(data, dict) else None
    return str(value) if value else None


def root_candidates(dataset: str, data_root: str | Path | None) -> list[tuple[str, Path]]:
    """(how it was given, folder) in the order tried: --data-root, else $MRIBENCH_DATA/<name>, then the config."""
    if data_root is not None:
        return [("--data-root", Path(data_root))]
    candidates: list[tuple[str, Path]] = []
    if os.environ.get(DATA_ENV):
        candidates.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]) / dataset))
    configured = _config_root(dataset)
    if configured:
        candidates.append((str(config_file()), Path(configured)))
    return candidates


def first_nonempty(candidates: list[tuple[str, Path]]) -> Path | None:
    """The first candidate that is a non-empty folder, else None."""
    for _, path in candidates:
        if path.is_dir() and any(path.iterdir()):
            return path
    return None


def data_available(dataset: str, generated: bool) -> bool:
    """Whether a dataset can be had without the user doing anything (phantoms) or is configured and present."""
    return generated or first_nonempty(root_candidates(dataset, None)) is not None
