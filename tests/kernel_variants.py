"""The ISA variants of our C kernels (`inference/native.py`) this CPU can run, as pytest parameters.

    from kernel_variants import needs_compiler, variants     # tests/ is on sys.path (rootdir conftest)
"""

from __future__ import annotations

import shutil

import pytest

from sobesednik.hardware import _cpuinfo
from sobesednik.inference.native import ISA_FLAGS

# The /proc/cpuinfo flags each variant's instructions need (a variant this CPU lacks would die of SIGILL).
NEEDS = {
    "avx2": {"avx2", "fma", "f16c"},
    "avx2-vnni": {"avx2", "fma", "f16c", "avx_vnni"},
    "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"},
    "avx512-vnni": {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c", "avx512_vnni"},
}
FLAGS = _cpuinfo()[1]
needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc) to build the kernel")


def variants() -> list[pytest.param]:
    """Every ISA variant, skipped (with the flags it lacks) where this CPU cannot run it."""
    return [pytest.param(isa, marks=pytest.mark.skipif(not NEEDS[isa] <= FLAGS,
                                                       reason=f"this CPU lacks {sorted(NEEDS[isa] - FLAGS)}"))
            for isa in ISA_FLAGS]
