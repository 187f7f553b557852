"""The C allocator's settings for a process that moves large tensors (glibc only).

Importance sampling and batched evaluation allocate tensors of ``k * batch * dim`` floats,
tens of megabytes each, many times over. glibc serves allocations above its mmap threshold
(128 KiB, rising to at most 32 MiB as blocks are freed) with fresh ``mmap`` calls and
unmaps them on free, so each such tensor is page-faulted in again, one 4 KiB page at a
time: measured on a 784-300-300 MNIST VAE scoring with k = 5000, a quarter of the time
went to the kernel. :func:`keep_freed_memory` raises the mmap and trim thresholds, so that
freed blocks stay in the heap and are reused. The ``elbokit`` command calls it; library
users may (it changes the whole process; memory freed stays reserved, up to 1 GiB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
KEEP_BYTES = 1 << 30


def keep_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """Serve allocations up to ``keep_bytes`` from the heap and keep up to that much freed
    memory for reuse. Returns whether the allocator took the settings (False off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return False
    if mallopt is None:  # musl and other C libraries without glibc's tunables
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, keep_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, keep_bytes))
