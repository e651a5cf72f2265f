"""Our decoding-step attention kernel computes torch's `scaled_dot_product_attention` of one query per row: over
views of a longer cache block, a query sliced out of the fused qkv, left padding, float32 and bf16, head widths
and lengths with tails; wrong inputs are refused before the C code sees them; without a compiler it is None."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sobesednik.hardware import probe
from sobesednik.inference import attention_kernel, native
from sobesednik.inference.attention_kernel import AttentionKernel


@pytest.fixture(autouse=True)
def fresh_load() -> Iterator[None]:
    attention_kernel.load.cache_clear()  # each test sees its own environment (PATH)
    yield
    attention_kernel.load.cache_clear()


@pytest.fixture
def kernel() -> AttentionKernel:
    loaded = attention_kernel.load()
    if loaded is None:
        pytest.skip(f"no attention kernel for CPU class {probe().cpu_class} here (needs AVX2 and a C compiler)")
    return loaded


def _inputs(rows: int, heads: int, length: int, dim: int, dtype: torch.dtype
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A query as the decoder slices it from the fused qkv output, keys and values as views of a block with room
    to spare (as `kv_cache.ReservedLayer` returns them), and a mask with left padding of different widths."""
    generator = torch.Generator().manual_seed(rows * 1000 + length)
    fused = torch.randn(rows, 1, 3 * heads * dim, generator=generator).to(dtype)
    query = fused.view(rows, 1, 3, heads, dim).permute(2, 0, 3, 1, 4)[0]
    keys, values = (torch.randn(rows, heads, length + 13, dim, generator=generator).to(dtype)[..., :length, :]
                    for _ in range(2))
    valid = torch.ones(rows, length, dtype=torch.bool)
    for row in range(rows):
        valid[row, : (row * 5) % length] = False  # row 0 unpadded; never the last (current) token
    return query, keys, values, valid


def _reference(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
               scale: float) -> torch.Tensor:
    rows, heads, _, dim = query.shape
    attended = F.scaled_dot_product_attention(query.float(), keys.float(), values.float(),
                                              attn_mask=valid[:, None, None, :], scale=scale)
    return attended.transpose(1, 2).reshape(rows, 1, heads * dim)


@pytest.mark.parametrize(("rows", "heads", "length", "dim"),
                         [(16, 16, 140, 64), (3, 4, 1, 64), (2, 3, 7, 24), (5, 2, 33, 128)])
def test_float32_is_torchs_attention_to_rounding(kernel: AttentionKernel, rows: int, heads: int, length: int,
                                                 dim: int) -> None:
    query, keys, values, valid = _inputs(rows, heads, length, dim, torch.float32)
    got = kernel.attend(query, keys, values, valid, 0.125)
    assert got.shape == (rows, 1, heads * dim) and got.dtype == torch.float32
    torch.testing.assert_close(got, _reference(query, keys, values, valid, 0.125), rtol=1e-5, atol=1e-5)


def test_bf16_is_the_float32_attention_of_the_bf16_numbers_rounded_once(kernel: AttentionKernel) -> None:
    query, keys, values, valid = _inputs(16, 16, 140, 64, torch.bfloat16)
    got = kernel.attend(query, keys, values, valid, 0.125)
    assert got.dtype == torch.bfloat16
    expected = _reference(query, keys, values, valid, 0.125)
    # One rounding to bf16 (8 bits) of a float32 sum: within half a bf16 step of the float32 result.
    assert ((got.float() - expected).abs() <= expected.abs() * 2**-8 + 1e-6).all()


def test_padding_is_not_read(kernel: AttentionKernel) -> None:
    query, keys, values, valid = _inputs(4, 2, 20, 64, torch.float32)
    expected = kernel.attend(query, keys, values, valid, 0.125)
    padding = ~valid[:, None, :, None]  # padded tokens may hold anything: they must weigh exactly nothing
    keys.masked_fill_(padding, float("nan"))
    values.masked_fill_(padding, float("nan"))
    torch.testing.assert_close(kernel.attend(query, keys, values, valid, 0.125), expected, rtol=0, atol=0)


def test_wrong_inputs_are_refused_before_the_c_code_sees_them(kernel: AttentionKernel) -> None:
    query, keys, values, valid = _inputs(2, 2, 9, 64, torch.float32)
    with pytest.raises(ValueError, match="float32 or bf16"):
        kernel.attend(query.half(), keys.half(), values.half(), valid, 0.125)
    with pytest.raises(ValueError, match="one dtype"):
        kernel.attend(query, keys.bfloat16(), values, valid, 0.125)
    with pytest.raises(ValueError, match="multiple of 8"):
        kernel.attend(query[..., :60], keys[..., :60], values[..., :60], valid, 0.125)
    with pytest.raises(ValueError, match="query must be"):
        kernel.attend(keys, keys, values, valid, 0.125)
    with pytest.raises(ValueError, match="keys and values must be"):
        kernel.attend(query, keys, values.transpose(2, 1).contiguous().transpose(2, 1), valid, 0.125)
    with pytest.raises(ValueError, match="valid must be"):
        kernel.attend(query, keys, values, valid.long(), 0.125)


def test_without_a_compiler_load_says_so_once_and_gives_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))  # nothing built before
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with caplog.at_level(logging.INFO, logger="sobesednik.inference.attention_kernel"):
        assert attention_kernel.load() is None
        assert attention_kernel.load() is None
    if probe().int8_kernel_isa is not None:
        assert [record.levelname for record in caplog.records] == ["WARNING"]
        assert "apt-get install gcc" in caplog.text
