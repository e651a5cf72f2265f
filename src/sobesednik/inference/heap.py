"""Freed memory back to the operating system once a batch is over.

    release_free_memory()   # after a batch has finished; True where the C library gave pages back

glibc's malloc keeps what a process frees for its next allocations: the service loading a model held 1.1 GB
more than its live data (the float32 weights quantised away, the loader's buffers), and after a batch of 16
users its KV cache and activations stayed resident too, spread over per-thread arenas where the next batch
could not always reuse them (docs/benchmarks.md, "Memory between batches"). `malloc_trim` gives every free
page of every arena back; a page touched again later costs one page fault. Fixing the mmap threshold
instead, so that large blocks go back as soon as they are freed, made a 16-row batch 15% slower: every
decoding step then maps and faults its larger buffers anew.

Other C libraries (musl, macOS) have no `malloc_trim`; there this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory(*, collect: bool = False) -> bool:
    """Give the C heap's free pages back to the OS; whether any were (False where the C library cannot).

    With `collect`, Python's cycle collector runs first (a full collection: once per load, not per batch): after
    loading, the modules that quantisation replaced may sit in reference cycles, and only it frees their weights.
    """
    if collect:
        gc.collect()
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))
