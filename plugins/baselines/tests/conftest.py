"""Fixtures of the baseline tests; the tiny data helpers live in baselines_tiny.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines_tiny import FakePromptsPlugin  # noqa: E402 - the folder is on the path only from here
from mribench.plugins import Registry, set_registry  # noqa: E402
from mribench_baselines import plugin as baselines_plugin  # noqa: E402


@pytest.fixture(params=["missing-modality", "missing-slice"])
def problem(request) -> str:
    return request.param


@pytest.fixture
def fake_prompt_provider():
    """A registry with the baselines and a stand-in "copedit" prompt provider (no copedit plugin)."""
    set_registry(Registry(entry_points=False, extra_plugins=[("baselines", baselines_plugin),
                                                             ("fake-prompts", FakePromptsPlugin())]))
    yield
    set_registry(None)
