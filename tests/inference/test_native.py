"""Every C kernel builds for every ISA variant, whether or not this CPU can run it: a build that fails only
on some class (an intrinsic whose flag that class's -m options lack) shows here, on any x86 machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_variants import needs_compiler
from sobesednik.inference import native


@needs_compiler
@pytest.mark.parametrize("isa", list(native.ISA_FLAGS))
@pytest.mark.parametrize("source", sorted(path.name for path in native.KERNELS.glob("*.c")))
def test_every_kernel_builds_for_every_isa(source: str, isa: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    built = native.build(source, isa)
    assert built.parent == tmp_path and built.stat().st_size > 0
