"""Fixtures of the core tests: a registry with the tests-only tiny plugin (isolation is in the root conftest)."""
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


@pytest.fixture
def tiny_registry():
    """The installed plugins plus the tests-only tiny datasets and tasks, as the process-wide registry."""
    from mribench.plugins import Registry, set_registry

    registry = Registry(extra_plugins=[("tiny", _load_tiny_plugin())])
    set_registry(registry)
    yield registry
    set_registry(None)
