"""The attention of a decoding step, one query per row over its KV cache (`kernels/decode_attention.c`).

    kernel = attention_kernel.load()                          # None where it cannot be built here
    out = kernel.attend(query, keys, values, valid, scale)    # [rows, 1, heads * dim]

Why a kernel of our own: torch's CPU `scaled_dot_product_attention` is made for many queries at once. With one
query per row over a 16-user GPT-2-medium cache it took 1.5 ms per layer in float32 (40% of a decoding step on an
AVX2 CPU) where reading the keys and values takes 0.6 ms, and 1.8 ms in bf16; this one streams each row's keys and
values once and took 0.6-0.9 ms and 0.5 ms (docs/benchmarks.md, "Attention of a decoding step"). It computes the
same function to float32 rounding: scores, softmax over the row's unmasked tokens, the weighted sum of values.

Built by `native.py` with the AVX2 flags on every x86 class that has them; elsewhere (ARM64, no C compiler, a
failed build) `load()` returns None with one log line, and the decoder keeps torch's attention.
"""

from __future__ import annotations

import ctypes
import functools
import logging

import torch

from sobesednik.inference.native import load_for_this_cpu

logger = logging.getLogger(__name__)

ISA = "avx2"  # 256-bit vectors on every x86 class: the kernel waits on memory, and wider ones would gain nothing
MAX_LENGTH, MAX_DIM = 16384, 256  # the C kernel's limits (cached tokens per row, head width)


def fits(device: torch.device, dtype: torch.dtype, head_width: int, length: int) -> bool:
    """Whether the kernel takes tensors on `device` of `dtype`, heads `head_width` wide, up to `length` tokens."""
    return (device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and head_width % 8 == 0
            and head_width <= MAX_DIM and length <= MAX_LENGTH)


class AttentionKernel:
    """The compiled `decode_attention`, called on torch tensors."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._attend = library.decode_attention
        self._attend.restype = ctypes.c_int
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        self._attend.argtypes = [pointer, size, size, pointer, pointer, size, size, pointer, pointer, size, size,
                                 size, size, ctypes.c_float, ctypes.c_int, ctypes.c_int]

    def attend(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor,
               scale: float) -> torch.Tensor:
        """softmax(scale · query · keysᵀ) · values over each row's `valid` tokens, as [rows, 1, heads · dim].

        `query` [rows, heads, 1, dim]; `keys`, `values` [rows, heads, length, dim], the same layout, each token's
        `dim` numbers contiguous (a view of a longer block is fine); `valid` [rows, length] bool (False over
        padding; every row has a valid token). All in one dtype, float32 or bf16.
        """
        rows, heads, queries, dim = query.shape
        length = keys.shape[2]
        if (not fits(query.device, query.dtype, dim, length) or keys.dtype != query.dtype
                or values.dtype != query.dtype or keys.device != query.device or values.device != query.device):
            raise ValueError(f"attend takes float32 or bf16 CPU tensors of one dtype, head width a multiple of 8 "
                             f"up to {MAX_DIM}, at most {MAX_LENGTH} tokens; got {query.dtype} query, "
                             f"{keys.dtype} keys, {values.dtype} values, width {dim}, {length} tokens")
        if queries != 1 or query.stride(-1) != 1:
            raise ValueError(f"query must be [rows, heads, 1, dim] with contiguous dims, got {tuple(query.shape)} "
                             f"strides {query.stride()}")
        if (keys.shape != (rows, heads, length, dim) or values.shape != keys.shape
                or values.stride() != keys.stride() or keys.stride()[2:] != (dim, 1)):
            raise ValueError(f"keys and values must be [{rows}, {heads}, length, {dim}] with contiguous tokens and "
                             f"the same strides, got {tuple(keys.shape)} {keys.stride()} and "
                             f"{tuple(values.shape)} {values.stride()}")
        if valid.dtype != torch.bool or valid.shape != (rows, length) or not valid.is_contiguous():
            raise ValueError(f"valid must be a contiguous bool [{rows}, {length}] tensor, got {valid.dtype} "
                             f"{tuple(valid.shape)}")
        out = torch.empty(rows, 1, heads * dim, dtype=query.dtype)
        failed = self._attend(query.data_ptr(), query.stride(0), query.stride(1), keys.data_ptr(),
                              values.data_ptr(), keys.stride(0), keys.stride(1), valid.data_ptr(), out.data_ptr(),
                              rows, heads, length, dim, scale, query.dtype == torch.bfloat16, torch.get_num_threads())
        if failed:  # the checks above keep the C code's limits; this is the guard should they ever drift apart
            raise ValueError(f"decode_attention refused {length} tokens of width {dim}")
        return out


@functools.cache
def load() -> AttentionKernel | None:
    """The kernel for this CPU, built once per process; None (with one log line) where it cannot be had."""
    return load_for_this_cpu("decode_attention.c", lambda library, _: AttentionKernel(library), logger,
                             what="attention kernel", serves="torch's attention serves decoding steps",
                             cost="a fifth to a third fewer tokens/s at 16 users", isa=ISA)
