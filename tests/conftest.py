"""Shared fixtures: a registry with the tests-only tiny plugin, isolated caches and config."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


def _load_tiny_plugin():
    spec = importlib.util.spec_from_file_location("mribench_tests_tiny_plugin", FIXTURES / "tiny_plugin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    """No test reads the user's config, data or caches."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MRIBENCH_CONFIG", str(home / "config.yaml"))
    # one cache per test session: generated phantoms are keyed by version, seed and size, so sharing is safe
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "mribench-cache"))
    monkeypatch.delenv("MRIBENCH_DATA", raising=False)
    monkeypatch.delenv("MRIBENCH_WEIGHTS", raising=False)


@pytest.fixture
def tiny_registry():
    """The installed plugins plus the tests-only tiny datasets and tasks, as the process-wide registry."""
    from mribench.plugins import Registry, set_registry

    registry = Registry(extra_plugins=[("tiny", _load_tiny_plugin())])
    set_registry(registry)
    yield registry
    set_registry(None)
