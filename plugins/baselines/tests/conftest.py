"""Fixtures of the baseline tests; the tiny data helpers live in baselines_tiny.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(params=["missing-modality", "missing-slice"])
def problem(request) -> str:
    return request.param
