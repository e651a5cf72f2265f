"""Our C kernels (`inference/kernels/*.c`), compiled for this CPU's ISA on first use and loaded with ctypes.

    library = native.load_library("w8a16.c", "avx2")   # raises KernelBuildError where it cannot be had

A kernel is compiled once per source, ISA and compiler into the user's cache directory (a fraction of a second
with `cc`); the ISA comes from the capability probe (`Capabilities.int8_kernel_isa`), so
`SOBESEDNIK_CPU_CAPABILITY=avx2` builds and tests the AVX2 variants on a bigger CPU. `-fopenmp` links the same
libgomp soname as torch, so the kernels run on torch's OpenMP threads, not a second team. The callers
(`int8_kernel.py`, `attention_kernel.py`) keep torch's kernels, with one log line, where a build fails.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sobesednik.hardware import probe

Kernel = TypeVar("Kernel")

KERNELS = Path(__file__).with_name("kernels")
# The -m flags per ISA variant; the C sources pick their instructions from the macros these define. Every
# AVX-512 CPU has FMA and F16C too, and -mavx512f does not enable them: without them a source using FMA
# intrinsics in its 256-bit code would build for AVX2 and not for AVX-512 (`tests/inference/test_native.py`).
ISA_FLAGS = {
    "avx2": ("-mavx2", "-mfma", "-mf16c"),
    "avx2-vnni": ("-mavx2", "-mfma", "-mf16c", "-mavxvnni"),
    "avx512": ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"),
    "avx512-vnni": ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c", "-mavx512vnni"),
}
CACHE_ENV = "SOBESEDNIK_CACHE_DIR"


class KernelBuildError(RuntimeError):
    """A kernel could not be compiled or loaded here (the message says why)."""


def cache_dir() -> Path:
    """Where built kernels are kept: `$SOBESEDNIK_CACHE_DIR`, else `$XDG_CACHE_HOME/sobesednik`, else
    `~/.cache/sobesednik`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sobesednik"


def _compiler() -> str:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise KernelBuildError("no C compiler (cc, gcc or clang) on PATH")


def build(source: str, isa: str) -> Path:
    """Compile `kernels/<source>` for `isa` (a key of `ISA_FLAGS`) unless the cache has it; the library's path."""
    compiler = _compiler()
    path = KERNELS / source
    flags = ("-O3", "-fPIC", "-shared", "-fopenmp", *ISA_FLAGS[isa])
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise KernelBuildError(f"{compiler} --version failed: {error}") from error
    # The headers the sources share (`bf16.h`) are part of every build: a change to one rebuilds them all.
    sources = b"".join(file.read_bytes() for file in (path, *sorted(KERNELS.glob("*.h"))))
    key = hashlib.sha256(sources + " ".join(flags).encode() + version.encode()).hexdigest()[:16]
    target = cache_dir() / f"{path.stem}-{isa}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed: two processes starting at once each get a whole library.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run([compiler, *flags, str(path), "-o", str(built)], capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise KernelBuildError(f"{compiler} could not build {source} for {isa}: {last}")
        os.replace(built, target)
    return target


def load_library(source: str, isa: str) -> ctypes.CDLL:
    """`kernels/<source>` built for `isa` and loaded; raises `KernelBuildError`. The CPU must run `isa`'s
    instructions."""
    try:
        return ctypes.CDLL(str(build(source, isa)))
    except OSError as error:
        raise KernelBuildError(f"the built kernel did not load: {error}") from error


def load_for_this_cpu(source: str, wrap: Callable[[ctypes.CDLL, str], Kernel], logger: logging.Logger, *,
                      what: str, serves: str, cost: str, isa: str | None = None) -> Kernel | None:
    """`wrap(library, isa)` of `kernels/<source>` built for this CPU (for `isa`, else the probe's
    `int8_kernel_isa`), or None with one line in `logger`: the CPU class has no variant (info: `what`, then who
    `serves`), or the build fails (a warning: `what` unavailable, the error, who `serves` and its `cost`, and
    the fix)."""
    capabilities = probe()
    if capabilities.int8_kernel_isa is None:  # the x86 classes with AVX2 are the ones our kernels are built for
        logger.info("%s: no %s for this CPU class; %s", capabilities.describe(), what, serves)
        return None
    isa = isa or capabilities.int8_kernel_isa
    try:
        return wrap(load_library(source, isa), isa)
    except KernelBuildError as error:
        logger.warning("%s unavailable (%s): %s, %s; install a C compiler (apt-get install gcc) to build it",
                       what, error, serves, cost)
        return None
