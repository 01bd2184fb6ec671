"""Applies to every test of the three distributions: no test reads the user's config, data, weights or caches."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MRIBENCH_CONFIG", str(home / "config.yaml"))
    # one cache per test session: generated phantoms are keyed by version, seed and size, so sharing is safe
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "mribench-cache"))
    monkeypatch.delenv("MRIBENCH_DATA", raising=False)
    monkeypatch.delenv("MRIBENCH_WEIGHTS", raising=False)
