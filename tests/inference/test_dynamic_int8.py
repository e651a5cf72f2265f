"""Our dynamic int8 linear (`kernels/u8s8.c`): every ISA variant this CPU can run computes it exactly on codes
it can represent and within 7-bit rounding of the float linear otherwise (tails of rows, columns and width, no
bias, a constant row); it is at least as close to float32 as torch's dynamic int8; wrong inputs are refused;
without a C compiler `quantize_int8` keeps torch's kernel."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from kernel_variants import needs_compiler, variants
from sobesednik.hardware import probe
from sobesednik.inference import dynamic_int8
from sobesednik.inference.dynamic_int8 import DynamicInt8Linear, load, load_isa
from sobesednik.inference.optimize import quantize_int8, quantize_int8_torch


@pytest.fixture(autouse=True)
def fresh_load() -> Iterator[None]:
    load.cache_clear()  # each test sees its own environment (PATH)
    yield
    load.cache_clear()


def _linear(outputs: int, width: int, *, bias: bool = True) -> nn.Linear:
    torch.manual_seed(outputs * 1000 + width)
    return nn.Linear(width, outputs, bias=bias)


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm()).item()


@needs_compiler
@pytest.mark.parametrize("isa", variants())
@pytest.mark.parametrize(("rows", "outputs", "width"), [(1, 16, 8), (3, 45, 100), (6, 7, 1024), (9, 300, 37)])
def test_every_variant_is_exact_on_codes_it_can_represent(isa: str, rows: int, outputs: int, width: int) -> None:
    """Integer weights whose rows reach ±127 (scale 1) and rows of integers spanning 0..127 (step 1, offset 0):
    nothing is rounded, so the kernel must give the integer product exactly. 7 outputs and 45, widths 37 and
    100, 3, 6 and 9 rows: every loop's tail."""
    generator = torch.Generator().manual_seed(rows)
    linear = _linear(outputs, width)
    weight = torch.randint(-127, 128, (outputs, width), generator=generator)
    weight[:, 0] = 127
    linear.weight.data = weight.float()
    hidden = torch.randint(0, 128, (rows, width), generator=generator).float()
    hidden[:, 0], hidden[:, -1] = 0, 127
    layer = DynamicInt8Linear(linear, load_isa(isa))
    got = layer(hidden)
    assert got.shape == (rows, outputs) and got.dtype == torch.float32
    torch.testing.assert_close(got, hidden @ weight.float().t() + linear.bias.detach(), rtol=1e-6, atol=1e-3)


@needs_compiler
@pytest.mark.parametrize("isa", variants())
def test_every_variant_follows_the_float_linear_within_7_bit_rounding(isa: str) -> None:
    linear = _linear(1000, 1024)
    hidden = torch.randn(5, 7, 1024)  # any leading shape, as a model's hidden states come
    got = DynamicInt8Linear(linear, load_isa(isa))(hidden)
    assert got.shape == (5, 7, 1000)
    assert _relative_error(got, linear(hidden)) < 0.02


@needs_compiler
def test_a_constant_row_no_bias_and_no_rows() -> None:
    """A row with one value has no range to scale (step 0): it is its minimum times each row's weight sum."""
    kernel = _this_cpus_kernel()
    linear = _linear(33, 64, bias=False)
    hidden = torch.stack([torch.full((64,), -0.75), torch.randn(64)])
    layer = DynamicInt8Linear(linear, kernel)
    got = layer(hidden)
    expected = linear(hidden)
    torch.testing.assert_close(got[0], expected[0], rtol=0.01, atol=0.01)
    assert _relative_error(got[1], expected[1]) < 0.02
    assert layer(torch.randn(0, 64)).shape == (0, 33)  # and no rows at all


@needs_compiler
def test_closer_to_float32_than_torchs_dynamic_int8() -> None:
    """Per-row scales for activations and weights, where torch's dynamic int8 has one per tensor."""
    kernel = _this_cpus_kernel()
    linear = _linear(512, 1024)
    hidden = torch.randn(64, 1024) * torch.linspace(0.1, 3, 64)[:, None]  # rows of different ranges
    expected = linear(hidden)
    ours = _relative_error(DynamicInt8Linear(linear, kernel)(hidden), expected)
    torchs = _relative_error(quantize_int8_torch(nn.Sequential(linear))(hidden), expected)
    assert ours < torchs


@needs_compiler
def test_wrong_inputs_are_refused_before_the_c_code_sees_them() -> None:
    layer = DynamicInt8Linear(_linear(8, 32), _this_cpus_kernel())
    with pytest.raises(ValueError, match="hidden must be a 2-D float32"):
        layer(torch.randn(2, 32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"float32 \[\.\.\., 32\]"):
        layer(torch.randn(2, 16))


def test_without_a_compiler_quantize_int8_keeps_torchs_kernel(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    if not probe().int8:
        pytest.skip(f"torch has no int8 engine for CPU class {probe().cpu_class}")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with caplog.at_level(logging.INFO, logger="sobesednik.inference.dynamic_int8"):
        model = quantize_int8(nn.Sequential(_linear(8, 32), nn.ReLU(), _linear(4, 8)), keep={"2"})
        quantize_int8(nn.Sequential(_linear(8, 32)))  # a second model: no second line
    assert type(model[0]).__module__.startswith("torch.ao.nn.quantized") and type(model[2]) is nn.Linear
    if probe().int8_kernel_isa is not None:
        assert [record.levelname for record in caplog.records] == ["WARNING"]
        assert "apt-get install gcc" in caplog.text


def _this_cpus_kernel() -> dynamic_int8.DynamicInt8Kernel:
    isa = probe().int8_kernel_isa
    if isa is None:
        pytest.skip(f"no kernel variant for CPU class {probe().cpu_class}")
    return load_isa(isa)
