"""Fixtures of the baseline tests; the tiny data helpers live in baselines_tiny.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(params=["missing-modality", "missing-slice"])
def problem(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waiting when the cores are shared (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
