"""Our int8 decoding kernel: every ISA variant this CPU can run computes the weight-only int8 linear (tails of
rows and columns, bf16 and float32, no bias, a width whose sums pass INT32_MAX); the build is cached and shares
torch's OpenMP runtime; without a C compiler the layers fall back to torch's kernel with one warning."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from kernel_variants import needs_compiler, variants
from sobesednik.hardware import probe
from sobesednik.inference import native
from sobesednik.inference.int8_kernel import load, load_isa
from sobesednik.inference.native import KernelBuildError, build


@pytest.fixture(autouse=True)
def fresh_load() -> Iterator[None]:
    load.cache_clear()  # each test sees its own environment (cache dir, PATH)
    yield
    load.cache_clear()


def _weight_only_int8(outputs: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weight = torch.randn(outputs, width)
    scale = weight.abs().amax(dim=1) / 127
    return torch.round(weight / scale[:, None]).to(torch.int8), scale, torch.randn(outputs)


@needs_compiler
@pytest.mark.parametrize("isa", variants())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("rows", "outputs", "width"), [(1, 96, 64), (3, 45, 100), (4, 7, 1024)])
def test_every_variant_computes_the_weight_only_int8_linear(isa: str, dtype: torch.dtype, rows: int,
                                                            outputs: int, width: int) -> None:
    kernel = load_isa(isa)
    weight, scale, bias = _weight_only_int8(outputs, width)  # 45 and 7 outputs, width 100: the loops' tails
    hidden = torch.randn(rows, width).to(dtype)
    expected = hidden.float() @ (weight.float() * scale[:, None]).t() + bias
    got = kernel.linear(hidden, weight, scale, bias)
    assert got.dtype == dtype and got.shape == (rows, outputs)
    # int16 activations cost ~1e-4 of the largest output; bf16 rounds the result to 8 bits.
    tolerance = 0.01 if dtype == torch.bfloat16 else 2e-4
    torch.testing.assert_close(got.float(), expected, rtol=tolerance, atol=tolerance * expected.abs().max().item())
    no_bias = kernel.linear(hidden, weight, scale, None)
    torch.testing.assert_close(no_bias.float(), expected - bias, rtol=tolerance,
                               atol=tolerance * expected.abs().max().item())


@needs_compiler
@pytest.mark.parametrize("isa", variants())
def test_a_wide_row_of_extremes_does_not_overflow(isa: str) -> None:
    width = 16384  # every product at its largest: the sum is ~4e10 times the steps, far past INT32_MAX
    weight = torch.full((4, width), 127, dtype=torch.int8)
    weight[1] = -127
    hidden = torch.ones(1, width)
    got = load_isa(isa).linear(hidden, weight, torch.ones(4), None)
    torch.testing.assert_close(got, torch.tensor([[127.0 * width, -127.0 * width, 127.0 * width, 127.0 * width]]),
                               rtol=1e-4, atol=0)


@needs_compiler
def test_the_build_is_cached_and_shares_torchs_openmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    isa = probe().int8_kernel_isa
    if isa is None:
        pytest.skip(f"no kernel variant for CPU class {probe().cpu_class}")
    first = build("w8a16.c", isa)
    assert first.parent == tmp_path and first.stat().st_size > 0
    assert build("w8a16.c", isa) == first and list(tmp_path.iterdir()) == [first]  # no second build, no scratch left
    assert load() is not None and load().isa == isa
    # The kernel's libgomp.so.1 is torch's, already loaded: not the system's second runtime with its own threads.
    # (Other wheels, e.g. scikit-learn's, bring theirs under other names.)
    mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()}
    gomp = {path for path in mapped if path.endswith("/libgomp.so.1")}
    assert gomp == {str(Path(torch.__file__).parent / "lib" / "libgomp.so.1")}, gomp


def test_without_a_compiler_load_says_so_once_and_gives_none(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(KernelBuildError, match="no C compiler"):
        build("w8a16.c", "avx2")
    with caplog.at_level(logging.INFO, logger="sobesednik.inference.int8_kernel"):
        assert load() is None
        assert load() is None
    if probe().int8_kernel_isa is not None:
        assert [record.levelname for record in caplog.records] == ["WARNING"]
        assert "apt-get install gcc" in caplog.text


@needs_compiler
def test_wrong_inputs_are_refused_before_the_c_code_sees_them() -> None:
    isa = probe().int8_kernel_isa
    if isa is None:
        pytest.skip(f"no kernel variant for CPU class {probe().cpu_class}")
    kernel = load_isa(isa)
    weight, scale, bias = _weight_only_int8(8, 32)
    with pytest.raises(ValueError, match="hidden must be"):
        kernel.linear(torch.randn(1, 32, dtype=torch.float16), weight, scale, bias)
    with pytest.raises(ValueError, match="weight must be"):
        kernel.linear(torch.randn(1, 16), weight, scale, bias)
    with pytest.raises(ValueError, match="scale must be"):
        kernel.linear(torch.randn(1, 32), weight, scale.bfloat16(), bias)
