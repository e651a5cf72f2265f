"""The capability probe: CPU classes from real CPUs' flags, the override and torch's dispatch level as caps, and
the serving and training choices per class (the AVX2 fallback is forced, so it is tested on every machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from sobesednik.errors import ConfigError
from sobesednik.hardware import (
    OVERRIDE_ENV,
    cap_class,
    classify_cpu,
    int8_kernel_isa,
    probe,
    serving_path,
    training_precision,
)

# Flag sets abridged from /proc/cpuinfo of real machines.
_ZEN2_EPYC = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "sha_ni"}
_SKYLAKE_X = _ZEN2_EPYC | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}
_ZEN4_EPYC = _SKYLAKE_X | {"avx512_bf16", "avx512_vnni"}
_SAPPHIRE_RAPIDS = _ZEN4_EPYC | {"amx_bf16", "amx_tile", "amx_int8"}


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    (_ZEN2_EPYC, "x86_64", "avx2"),
    (_SKYLAKE_X, "x86_64", "avx512"),
    (_ZEN4_EPYC, "x86_64", "avx512_bf16"),
    (_SAPPHIRE_RAPIDS, "x86_64", "amx"),
    ({"sse4_2", "avx"}, "x86_64", "baseline"),
    ({"fp", "asimd", "sve", "bf16"}, "aarch64", "arm64_bf16"),
    ({"fp", "asimd"}, "aarch64", "arm64"),
])
def test_classify_cpu_names_the_class_of_real_flag_sets(flags: set[str], machine: str, expected: str) -> None:
    assert classify_cpu(flags, machine) == expected


def test_a_cap_lowers_the_class_and_never_raises_it() -> None:
    assert cap_class("amx", "avx2") == "avx2"
    assert cap_class("avx2", "amx") == "avx2"
    assert cap_class("arm64_bf16", "arm64") == "arm64"
    assert cap_class("arm64", "avx2") == "arm64"  # an x86 cap means nothing on arm64
    assert cap_class("avx512", None) == "avx512"


def test_an_unknown_override_is_refused_with_the_classes(force_cpu_class: Callable[[str], None]) -> None:
    force_cpu_class("avx3")
    with pytest.raises(ConfigError, match=f"{OVERRIDE_ENV}='avx3' is not a CPU class: use one of baseline, avx2"):
        probe()


def test_forced_avx2_has_no_native_or_packed_bf16(force_cpu_class: Callable[[str], None]) -> None:
    if probe().cpu_class in ("baseline", "arm64", "arm64_bf16"):
        pytest.skip(f"needs an x86 CPU with AVX2 to emulate the AVX2 class; this one is {probe().cpu_class}")
    force_cpu_class("avx2")
    capabilities = probe()
    assert capabilities.cpu_class == "avx2"
    assert not capabilities.native_bf16 and not capabilities.onednn_bf16
    assert capabilities.int8
    assert "CPU class avx2" in capabilities.describe()
    if capabilities.hardware_class:  # a bigger CPU capped: the logs and benchmarks say so
        assert f"CPU class avx2, emulated on {capabilities.hardware_class}" in capabilities.describe()


def test_aten_cpu_capability_alone_takes_the_avx2_path() -> None:
    """The emulation CI uses (ATEN_CPU_CAPABILITY=avx2) really lands on the fallback, even without the override."""
    if probe().cpu_class in ("baseline", "arm64", "arm64_bf16"):
        pytest.skip(f"needs an x86 CPU with AVX2 to emulate the AVX2 class; this one is {probe().cpu_class}")
    env = {name: value for name, value in os.environ.items() if name != OVERRIDE_ENV} | {"ATEN_CPU_CAPABILITY": "avx2"}
    code = "from sobesednik.hardware import probe; print(probe().cpu_class, probe().onednn_bf16)"
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.split() == ["avx2", "False"]


@pytest.mark.parametrize(("dtype", "quantize", "expected"), [
    ("auto", "auto", ("float32", "int8", False)),  # int8 measured 3.2x float32 on an AVX2 EPYC
    ("bfloat16", "auto", ("bfloat16", "none", False)),  # asked for: plain bf16, never the packed kernel
    ("float32", "none", ("float32", "none", False)),
])
def test_serving_path_on_avx2(force_cpu_class: Callable[[str], None], dtype: str, quantize: str,
                              expected: tuple[str, str, bool]) -> None:
    if probe().cpu_class in ("baseline", "arm64", "arm64_bf16"):
        pytest.skip(f"needs an x86 CPU with AVX2 to emulate the AVX2 class; this one is {probe().cpu_class}")
    force_cpu_class("avx2")
    path = serving_path(dtype, quantize)
    assert (path.dtype, path.quantize, path.pack_bf16) == expected
    assert not path.int8_steps  # dynamic int8 decodes every step; int8 copies only beside packed bf16
    assert probe().int8_kernel_isa in ("avx2", "avx2-vnni")  # a bigger CPU capped to avx2 builds the AVX2 kernel


@pytest.mark.parametrize(("dtype", "quantize", "expected"), [
    ("auto", "auto", ("float32", "int8", False, False)),  # oneDNN only emulates bf16 here: slower than int8
    ("bfloat16", "auto", ("bfloat16", "none", True, True)),  # asked for: oneDNN's (emulated) bf16 linear runs
])
def test_serving_path_on_avx512_without_bf16(force_cpu_class: Callable[[str], None], dtype: str, quantize: str,
                                             expected: tuple[str, str, bool, bool]) -> None:
    if probe().cpu_class not in ("avx512", "avx512_bf16", "amx"):
        pytest.skip(f"needs an x86 CPU with AVX-512 to emulate the avx512 class; this one is {probe().cpu_class}")
    force_cpu_class("avx512")
    capabilities = probe()
    assert capabilities.cpu_class == "avx512" and not capabilities.native_bf16
    path = serving_path(dtype, quantize)
    assert (path.dtype, path.quantize, path.pack_bf16, path.int8_steps) == expected


def test_serving_path_where_bf16_is_native() -> None:
    if not probe().native_bf16:
        pytest.skip(f"needs a CPU with native bf16 (AMX, AVX512-BF16 or ARM BF16); this one is {probe().cpu_class}")
    path = serving_path("auto", "auto")
    assert (path.dtype, path.quantize) == ("bfloat16", "none")  # bf16 measured 1.3x int8 on an AMX Xeon
    assert path.pack_bf16 == probe().onednn_bf16
    # Decoding steps of a few users on an int8 copy where bf16 is packed; not when quantisation is refused.
    assert path.int8_steps == path.pack_bf16
    assert not serving_path("auto", "none").int8_steps


def test_training_precision_follows_the_class(force_float32_class: Callable[[], None]) -> None:
    if probe().cuda:
        pytest.skip("the CPU class does not decide the precision on a CUDA machine")
    assert training_precision("auto") == ("bf16" if probe().native_bf16 else "fp32")
    force_float32_class()
    assert training_precision("auto") == "fp32"
    assert training_precision("bf16") == "bf16"  # asked for explicitly: autocast emulates it, slowly but right


@pytest.mark.parametrize(("cpu_class", "flags", "expected"), [
    ("amx", {"avx512_vnni"}, "avx512-vnni"),  # Sapphire Rapids
    ("avx512", set(), "avx512"),  # Skylake-SP: AVX-512 without VNNI
    ("avx512", {"avx512_vnni"}, "avx512-vnni"),  # Cascade Lake
    ("avx2", {"avx512_vnni"}, "avx2"),  # a bigger CPU capped to avx2 builds the AVX2 kernel, never AVX-512
    ("avx2", {"avx_vnni"}, "avx2-vnni"),  # Alder Lake
    ("baseline", set(), None),
    ("arm64_bf16", {"bf16"}, None),  # torch's kernels on ARM64: nothing measured there
])
def test_int8_kernel_isa_follows_the_class(cpu_class: str, flags: set[str], expected: str | None) -> None:
    assert int8_kernel_isa(cpu_class, flags) == expected
