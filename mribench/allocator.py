"""Keep freed tensor memory in the process heap, so a training step does not page-fault its activations back in.

glibc's malloc serves large blocks with ``mmap`` and returns freed heap tops to the system past a small threshold
(128 KiB, raised dynamically). A training step frees its activations and gradients and allocates them again in the
next step, so with glibc's defaults each step touches fresh pages: the MDiT3D-C step at the cardiac latents took
20,000 to 71,000 minor page faults (80 to 280 MB of first touches) and 3 to 11 % of its time. With large blocks
kept on the heap up to glibc's ceiling (32 MiB each) and up to 512 MiB of free heap top kept, the same step takes
0 to 1,700.

:func:`retain_freed_memory` applies that once per process; the ``mribench`` command calls it before any work.
Allocation addresses do not change any result: torch aligns its CPU buffers to 64 bytes either way (checked: baseline
runs made under this setting reproduced the committed leaderboard's results bit for bit).

>>> from mribench.allocator import retain_freed_memory
>>> retain_freed_memory() in (True, False)
True
"""
from __future__ import annotations

import ctypes
import functools

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 32 << 20   # glibc's ceiling for this setting on 64-bit machines
TRIM_THRESHOLD_BYTES = 512 << 20


@functools.cache
def retain_freed_memory() -> bool:
    """Tune glibc's malloc as described above. -> True when applied, False where malloc is not glibc's (musl's
    mallopt does nothing and returns 0)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on: no lookup subprocess
    except (OSError, TypeError, AttributeError):  # no mallopt (macOS), no process handle (Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the trim threshold alone would switch off glibc's dynamic mmap threshold and fault more: set it only once the
    # mmap threshold is set
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
