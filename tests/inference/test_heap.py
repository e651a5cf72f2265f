"""`release_free_memory` hands freed heap pages back, checked in a fresh process (glibc only)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# 256 MB in 64 KB blocks (below glibc's mmap threshold, so they live in the heap), all freed but the last one,
# which pins the heap's top: `free` alone then gives nothing back, only `malloc_trim` can.
_FRAGMENTED_HEAP = """
import sys
from sobesednik.inference.heap import release_free_memory

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))

blocks = [bytearray(64 << 10) for _ in range(4096)]
last = blocks.pop()
del blocks
before = rss_mb()
released = release_free_memory(collect=True)
print(released, before, rss_mb())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; other C libraries skip it")
def test_freed_heap_pages_go_back_to_the_os() -> None:
    output = subprocess.run([sys.executable, "-c", _FRAGMENTED_HEAP], capture_output=True, text=True, check=True)
    released, before, after = output.stdout.split()
    assert released == "True"
    assert int(before) - int(after) > 128, f"RSS {before} MB before the trim, {after} MB after"

