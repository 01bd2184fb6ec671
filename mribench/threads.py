"""Fixed torch thread counts for the steps whose output is cached and shared.

CPU kernels (a trilinear resize with anti-aliasing, a convolution's backward pass) split their sums over the threads,
so their floats depend on the thread count. A cached result that other runs, caches or machines compare by content
must therefore be made at a fixed count, whatever the caller's setting:

- preprocessing (:func:`mribench.data.preprocess.preprocess_subject`): 2 threads, the count the committed
  leaderboard's cache was made at (1 thread differs from it by one float32 ulp in about 10 % of voxels);
- the downstream segmenter's training (:mod:`mribench.metrics.segmenter`): 1 thread.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

PREPROCESS_THREADS = 2
SEGMENTER_THREADS = 1


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
