"""`python -m sobesednik.emulate`: a command run with every library's kernels capped to a smaller CPU class."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sobesednik import emulate
from sobesednik.emulate import EMULATION_ENV, cannot_emulate, emulation_env
from sobesednik.hardware import OVERRIDE_ENV


def _emulated(*args: str) -> subprocess.CompletedProcess[str]:
    # Without the variables of an outer emulation (CI runs this file under one), so each test sets its own.
    env = {name: value for name, value in os.environ.items()
           if not any(name in variables for variables in EMULATION_ENV.values())}
    return subprocess.run([sys.executable, "-m", "sobesednik.emulate", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_every_class_caps_the_probe_and_each_kernel_library() -> None:
    for cpu_class in EMULATION_ENV:
        env = emulation_env(cpu_class)
        assert env[OVERRIDE_ENV] == cpu_class
        # torch's ATen, oneDNN, MKL and fbgemm each pick kernels from the CPU's own flags unless told otherwise.
        assert {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                "FBGEMM_ENABLE_INSTRUCTIONS"} <= env.keys()
    with pytest.raises(ValueError, match="avx2, avx512"):
        emulation_env("amx")


@pytest.mark.parametrize("cpu_class", list(EMULATION_ENV))
def test_the_command_runs_on_the_class_baseline(cpu_class: str) -> None:
    """The probe, torch's dispatch and our kernel's variant all land on the class, without the bigger CPU's VNNI."""
    if reason := cannot_emulate(cpu_class):
        pytest.skip(f"needs a CPU of class {cpu_class} or bigger: {reason}")
    code = ("import os, torch; from sobesednik.hardware import probe; p = probe(); "
            "print(p.cpu_class, torch.backends.cpu.get_cpu_capability(), p.int8_kernel_isa, p.onednn_bf16, "
            "os.environ['FBGEMM_ENABLE_INSTRUCTIONS'])")
    result = _emulated(cpu_class, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    expected = {"avx2": ["avx2", "AVX2", "avx2", "False", "AVX2"],
                "avx512": ["avx512", "AVX512", "avx512", result.stdout.split()[3], "AVX512"]}[cpu_class]
    assert result.stdout.split() == expected


def test_the_command_s_exit_status_is_passed_on() -> None:
    if reason := cannot_emulate("avx2"):
        pytest.skip(f"needs an x86 CPU with AVX2: {reason}")
    result = _emulated("avx2", sys.executable, "-c", "raise SystemExit(7)")
    assert result.returncode == 7


_ZEN2_EPYC = {"sse4_2", "avx", "avx2", "fma", "f16c"}


@pytest.mark.parametrize(("flags", "machine", "refused"), [
    (_ZEN2_EPYC, "x86_64", {"avx512"}),
    (_ZEN2_EPYC | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}, "x86_64", set()),
    ({"fp", "asimd", "bf16"}, "aarch64", {"avx2", "avx512"}),  # an x86 class on ARM64: nothing to cap
])
def test_only_a_class_this_cpu_contains_can_be_emulated(monkeypatch: pytest.MonkeyPatch, flags: set[str],
                                                        machine: str, refused: set[str]) -> None:
    monkeypatch.setattr(emulate, "cpu_flags", lambda: flags)
    monkeypatch.setattr(emulate.platform, "machine", lambda: machine)
    assert {cpu_class for cpu_class in EMULATION_ENV if cannot_emulate(cpu_class)} == refused


def test_a_refused_class_stops_before_the_command_runs(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A kernel told to use AVX-512 on an AVX2 CPU would kill the command with SIGILL halfway."""
    monkeypatch.setattr(emulate, "cpu_flags", lambda: _ZEN2_EPYC)
    monkeypatch.setattr(emulate.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(emulate.os, "execvpe", lambda *args: pytest.fail("the command ran"))
    with pytest.raises(SystemExit, match="cannot emulate avx512: this CPU \\(class avx2\\) lacks"):
        emulate.main(["avx512", "pytest"])
    with pytest.raises(SystemExit) as checked:
        emulate.main(["--can", "avx512"])
    assert checked.value.code == 1 and "cannot emulate avx512" in capsys.readouterr().err


@pytest.mark.parametrize("args", [[], ["amx", "true"], ["avx2"], ["--can"], ["--can", "avx2", "true"]])
def test_bad_arguments_print_the_usage(args: list[str]) -> None:
    result = _emulated(*args)
    assert result.returncode != 0 and "usage: python -m sobesednik.emulate" in result.stderr


def test_a_missing_command_is_one_line() -> None:
    if reason := cannot_emulate("avx2"):
        pytest.skip(f"needs an x86 CPU with AVX2: {reason}")
    result = _emulated("avx2", "no-such-command-here")
    assert result.returncode != 0
    assert result.stderr.strip() == "cannot run no-such-command-here: No such file or directory"
