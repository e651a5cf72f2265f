"""What this machine's kernels really support, probed once, and the one place that turns it into a precision choice.

    capabilities = probe()                  # Capabilities(cpu_class="amx", cpu_model="Intel(R) Xeon(R) ...", ...)
    path = serving_path("auto", "auto")     # ServingPath(dtype="bfloat16", quantize="none", pack_bf16=True, ...)
    precision = training_precision("auto")  # "bf16" / "fp16" / "fp32"

CPU classes, from the best kernels down:
- `amx`: AMX-BF16 tiles (Intel Sapphire Rapids and later): native bf16 matmuls, oneDNN's packed bf16 linear.
- `avx512_bf16`: AVX512-BF16 without AMX (Intel Cooper Lake, AMD Zen 4 and later): native bf16 too.
- `avx512`: AVX-512 without bf16 instructions: oneDNN runs bf16 (emulated, slower than float32).
- `avx2`: AVX2 and FMA only (AMD Zen 1–3, most desktops): no native bf16, and oneDNN's packed bf16 linear
  raises there ("bf16 path needs the cpu support avx_ne_convert or avx512bw ..."), so it is never used.
- `arm64` / `arm64_bf16`: AArch64 NEON, with or without the BF16 extension (Graviton 3+, Apple M2+).
- `baseline`: anything older (x86 without AVX2): float32 only, no fbgemm int8.

The class is the lower of what `/proc/cpuinfo` lists and what torch's ATen dispatch runs
(`ATEN_CPU_CAPABILITY=avx2` emulates an AVX2 machine for the ATen kernels). torch's own bf16 checks read the
CPU's flags, not that variable, so `SOBESEDNIK_CPU_CAPABILITY=avx2` (any class name) caps the class for
this project's choices as well. `python -m sobesednik.emulate avx2 CMD` sets it with the caps of every other
library's kernels: tests, CI and the benchmarks take a smaller class's paths on a bigger CPU that way.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from sobesednik.errors import ConfigError

OVERRIDE_ENV = "SOBESEDNIK_CPU_CAPABILITY"
# Ordered from the weakest to the strongest; a cap or torch's dispatch level can only lower the class.
X86_CLASSES = ("baseline", "avx2", "avx512", "avx512_bf16", "amx")
ARM_CLASSES = ("arm64", "arm64_bf16")
CPU_CLASSES = X86_CLASSES + ARM_CLASSES
NATIVE_BF16 = frozenset({"avx512_bf16", "amx", "arm64_bf16"})
# ATen's dispatch levels (torch.backends.cpu.get_cpu_capability()) as a ceiling on the x86 class.
_ATEN_CEILING = {"DEFAULT": "baseline", "AVX2": "avx2", "AVX512": "amx"}


@dataclass(frozen=True)
class Capabilities:
    """What the kernels of this machine support, as the precision choices need it."""

    cpu_model: str
    cpu_class: str
    cuda: bool
    cuda_bf16: bool
    onednn_bf16: bool  # oneDNN's packed bf16 linear runs here (torch's check, capped by the class)
    # torch's quantized engine for dynamic int8 on this CPU (x86/fbgemm on AVX2+, qnnpack on arm64), None where
    # there is none. Set before quantising (`optimize.quantize_int8`): an aarch64 torch lists fbgemm's engine
    # first too, and its kernels raise "unknown architecure" there.
    int8_engine: str | None
    int8_kernel_isa: str | None = None  # the variant of our int8 decoding kernel this CPU runs (`int8_kernel_isa`)
    hardware_class: str = ""  # the class of the CPU's own flags, when `cpu_class` is lower (capped, emulated)

    @property
    def int8(self) -> bool:
        """A dynamic-int8 engine exists for this CPU."""
        return self.int8_engine is not None

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls computed natively, so they beat float32 rather than emulate it."""
        return self.cpu_class in NATIVE_BF16

    def describe(self) -> str:
        gpu = " + CUDA" if self.cuda else ""
        capped = f", emulated on {self.hardware_class}" if self.hardware_class else ""
        return f"{self.cpu_model} (CPU class {self.cpu_class}{capped}{gpu})"


@dataclass(frozen=True)
class ServingPath:
    """How `serve` runs the model: weight dtype, dynamic quantisation, and oneDNN packing of bf16 linears."""

    dtype: str  # float32 / bfloat16 / float16
    quantize: str  # none / int8
    pack_bf16: bool
    int8_steps: bool = False  # decoding steps of 1-4 rows on a weight-only int8 copy (`optimize.Int8StepsLinear`)

    def describe(self) -> str:
        packing = ", packed for oneDNN" if self.pack_bf16 else ""
        quantize = ", dynamic int8 linears" if self.quantize == "int8" else ""
        steps = ", decoding steps on weight-only int8" if self.int8_steps else ""
        return f"{self.dtype}{quantize}{packing}{steps}"


def classify_cpu(flags: set[str], machine: str) -> str:
    """The CPU class of a CPU with these `/proc/cpuinfo` flags (x86 `flags`, arm64 `Features`)."""
    if machine in ("aarch64", "arm64"):
        return "arm64_bf16" if "bf16" in flags else "arm64"
    if "amx_bf16" in flags:
        return "amx"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512_bf16" if "avx512_bf16" in flags else "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "baseline"


def cap_class(cpu_class: str, ceiling: str | None) -> str:
    """`cpu_class`, lowered to `ceiling` when that is weaker (x86 and arm64 classes each compare within their kind)."""
    if ceiling is None:
        return cpu_class
    if ceiling not in CPU_CLASSES:
        raise ConfigError(f"{OVERRIDE_ENV}={ceiling!r} is not a CPU class: use one of {', '.join(CPU_CLASSES)}")
    for order in (X86_CLASSES, ARM_CLASSES):
        if cpu_class in order and ceiling in order:
            return order[min(order.index(cpu_class), order.index(ceiling))]
    return cpu_class  # an x86 cap on an arm64 CPU (or back) cannot apply: keep what the hardware has


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and feature flags from `/proc/cpuinfo` (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> set[str]:
    """This CPU's feature flags (`/proc/cpuinfo`; empty where there is none)."""
    return _cpuinfo()[1]


def int8_kernel_isa(cpu_class: str, flags: set[str]) -> str | None:
    """The `inference/int8_kernel.py` variant for a CPU of this class and `/proc/cpuinfo` flags, or None.

    From the class, so that a capped class builds the kernel it names; VNNI (the multiply-add of int16 pairs in one
    instruction) from the flags: Cascade Lake and later Xeons and Zen 4 have it with AVX-512, Alder Lake and later
    client CPUs with AVX2 (AVX-VNNI). ARM64 keeps torch's kernels (no machine here to measure one on).
    """
    if cpu_class in ("avx512", "avx512_bf16", "amx"):
        return "avx512-vnni" if "avx512_vnni" in flags else "avx512"
    if cpu_class == "avx2":
        return "avx2-vnni" if "avx_vnni" in flags else "avx2"
    return None


@functools.cache
def probe() -> Capabilities:
    """Probe this machine once per process (see the module docstring for what decides each field)."""
    import torch

    model, flags = _cpuinfo()
    hardware_class = cpu_class = classify_cpu(flags, platform.machine().lower())
    if cpu_class in X86_CLASSES:
        cpu_class = cap_class(cpu_class, _ATEN_CEILING.get(torch.backends.cpu.get_cpu_capability()))
    cpu_class = cap_class(cpu_class, os.environ.get(OVERRIDE_ENV, "").strip().lower() or None)
    # A capped class is an emulation of the class's baseline (Zen 1-3, Skylake-SP: `emulate.py`), without the
    # bigger CPU's VNNI.
    capped = cpu_class != hardware_class
    kernel_flags = set() if capped else flags
    onednn_bf16 = (cpu_class not in ("baseline", "avx2", "arm64") and torch.backends.mkldnn.is_available()
                   and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    engines = torch.backends.quantized.supported_engines
    wanted = ("qnnpack",) if cpu_class in ARM_CLASSES else ("x86", "fbgemm") if cpu_class in X86_CLASSES[1:] else ()
    int8_engine = next((engine for engine in wanted if engine in engines), None)
    cuda = torch.cuda.is_available()
    return Capabilities(model, cpu_class, cuda, cuda and torch.cuda.is_bf16_supported(), onednn_bf16, int8_engine,
                        int8_kernel_isa(cpu_class, kernel_flags), hardware_class if capped else "")


def serving_path(dtype: str, quantize: str, *, device: str = "cpu") -> ServingPath:
    """The dtype, quantisation and packing `serve` uses for a request of `dtype` / `quantize` (each may be `auto`).

    `auto` picks what measured fastest at the quality bar (docs/benchmarks.md, greedy top-1 agreement with float32
    >= 0.95): native bf16 where the CPU or GPU has it; on a CPU without it, dynamic int8 (on our kernel where it
    builds, `dynamic_int8`; AVX2 EPYC Zen 3, 16 users: 95.7 tokens/s against 31.8 for float32), float32 where int8
    has no engine. On an AVX512-BF16 EPYC without AMX, bf16 and dynamic int8 are about as fast (195 and 189
    tokens/s at 16 users, the decoding steps' attention on our kernel), and int8 agreed 0.90 with float32 against
    bf16's 0.96: bf16 stays. Where bf16 is packed for oneDNN and `quantize` is `auto`, decoding steps of up to 4
    rows run on a weight-only int8 copy of the linears (`int8_steps`, on our kernel where it builds): on an AMX
    Xeon all the linears of a 1-row step took 19-23 ms against 36-55 ms on packed bf16 alone, at the same greedy
    agreement with float32 (docs/benchmarks.md, "An int8 decoding kernel of our own"). Personas' base layers take
    the same path as a plain model's (`optimize.py`). An explicit bfloat16 on a CPU without oneDNN's bf16 linear
    runs plain, unpacked bf16 rather than fail.
    """
    capabilities = probe()
    if device == "cuda":
        if dtype == "auto":
            dtype = "bfloat16" if capabilities.cuda_bf16 else "float16"
        return ServingPath(dtype, "none" if quantize == "auto" else quantize, pack_bf16=False)
    if dtype == "auto":
        dtype = "float32" if quantize == "int8" or not capabilities.native_bf16 else "bfloat16"
    pack = dtype == "bfloat16" and capabilities.onednn_bf16
    int8_steps = pack and quantize == "auto"  # our int8 kernel, or torch's where ours cannot be built
    if quantize == "auto":
        quantize = "int8" if dtype == "float32" and capabilities.int8 else "none"
    return ServingPath(dtype, quantize, pack, int8_steps)


def training_precision(precision: str) -> str:
    """`auto` → bf16 where the hardware multiplies it natively (CUDA bf16, AMX / AVX512-BF16 / ARM BF16 CPUs),
    fp16 on older GPUs, else fp32; an explicit precision is returned as given."""
    if precision != "auto":
        return precision
    capabilities = probe()
    if capabilities.cuda:
        return "bf16" if capabilities.cuda_bf16 else "fp16"
    return "bf16" if capabilities.native_bf16 else "fp32"
