"""Run a command as if on a smaller x86 CPU class: every library's kernels and this project's choices capped alike.

    python -m sobesednik.emulate avx2 pytest tests/inference          # an AMD EPYC Zen 1-3: AVX2 + FMA, no VNNI
    python -m sobesednik.emulate avx512 python bench/serve.py --quick  # a Skylake Xeon: AVX-512, no VNNI, no bf16
    python -m sobesednik.emulate --can avx512                          # exit 0 where this CPU can, else 1 and why

Each library that ships several kernels picks them from the CPU's own flags, and each has its own switch; a cap
on one alone measures a mixture (torch's ATen on AVX2 with fbgemm's int8 GEMM still on AVX512-VNNI made 16 users
look 2.5x faster per int8 linear than an AVX2 CPU runs them). The class is the class's baseline: the VNNI of the
bigger CPU is capped too, in fbgemm, oneDNN and the probe (`hardware.probe`), since the CPUs that define these
classes (Zen 1-3, Skylake-SP) have none. torch reads its variables when it loads, so they are set before the
command starts, not in a running process. Only a smaller class than this CPU's can be emulated: a kernel told to
use instructions the CPU lacks stops the process (SIGILL), so a bigger one is refused before the command runs.
"""

from __future__ import annotations

import os
import platform
import sys

from sobesednik.hardware import OVERRIDE_ENV, X86_CLASSES, classify_cpu, cpu_flags

# Per class: the variable of each library and the value that caps it there.
EMULATION_ENV: dict[str, dict[str, str]] = {
    "avx2": {
        OVERRIDE_ENV: "avx2",  # this project's probe: dtype, int8 path, our kernel's variant
        "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
        "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (torch's bf16 and conv kernels, CTranslate2's)
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL (torch's float32 GEMM, CTranslate2's int8 GEMM)
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",  # fbgemm (torch's dynamic int8 linear)
        "CT2_FORCE_CPU_ISA": "AVX2",  # CTranslate2's own kernels (the bench's baseline)
    },
    "avx512": {
        OVERRIDE_ENV: "avx512",
        "ATEN_CPU_CAPABILITY": "avx512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",  # AVX-512 without VNNI and bf16
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512",  # not AVX512_E1, which is VNNI
        "CT2_FORCE_CPU_ISA": "AVX512",
    },
}
_USAGE = (f"usage: python -m sobesednik.emulate {{{','.join(EMULATION_ENV)}}} COMMAND [ARGS...]\n"
          f"       python -m sobesednik.emulate --can {{{','.join(EMULATION_ENV)}}}")


def emulation_env(cpu_class: str) -> dict[str, str]:
    """The environment variables that make a bigger x86 CPU run `cpu_class`'s kernels (see the module docstring)."""
    try:
        return dict(EMULATION_ENV[cpu_class])
    except KeyError:
        raise ValueError(f"no emulation of CPU class {cpu_class!r}: use one of {', '.join(EMULATION_ENV)}") from None


def cannot_emulate(cpu_class: str) -> str | None:
    """Why this CPU cannot run `cpu_class`'s kernels in place of its own, or None when it can."""
    hardware_class = classify_cpu(cpu_flags(), platform.machine().lower())
    if hardware_class not in X86_CLASSES or X86_CLASSES.index(hardware_class) < X86_CLASSES.index(cpu_class):
        return f"this CPU (class {hardware_class}) lacks instructions of class {cpu_class}"
    return None


def main(argv: list[str]) -> None:
    check = argv[:1] == ["--can"]
    if check:
        argv = argv[1:]
    if not argv or argv[0] not in EMULATION_ENV or (len(argv) == 1) != check:  # --can takes the class alone
        sys.exit(_USAGE)
    cpu_class, command = argv[0], argv[1:]
    reason = cannot_emulate(cpu_class)
    if check:
        if reason:
            print(f"cannot emulate {cpu_class}: {reason}", file=sys.stderr)
        sys.exit(1 if reason else 0)
    if reason:
        sys.exit(f"cannot emulate {cpu_class}: {reason}; the command did not run")
    try:
        os.execvpe(command[0], command, os.environ | emulation_env(cpu_class))
    except OSError as error:
        sys.exit(f"cannot run {command[0]}: {error.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
