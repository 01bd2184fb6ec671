"""Hash-seeded random generators (a utility: imports nothing of mribench).

Seeds are SHA-256 digests of the parts, so every machine and process draws the same numbers (never Python's
``hash``, which ``PYTHONHASHSEED`` changes).
"""
from __future__ import annotations

import hashlib

import numpy as np


def seeded_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by SHA-256 of the parts: stable across processes and PYTHONHASHSEED."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def derive_seed(*parts: object) -> int:
    """A 63-bit integer seed derived from the parts (for torch generators)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:8], "little") >> 1
