"""Fixtures of CoPeDiT's tests: tiny synthetic tasks (brain and cardiac) and subject sets."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from copedit_tiny import make_task


@pytest.fixture(params=["missing-modality", "missing-slice"])
def task(request):
    return make_task(request.param)


@pytest.fixture
def tiny():
    """The helpers: ``tiny.make_task(problem)``, ``tiny.make_subjects(task, n)``."""
    import copedit_tiny

    return copedit_tiny
