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


@pytest.fixture(autouse=True)
def one_thread():
    """The tests' tensors are tiny: one intra-op thread is faster than two (and avoids OpenMP spin-waiting when the
    cores are shared). Restored after each test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
