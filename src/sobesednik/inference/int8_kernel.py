"""The weight-only int8 linear of small decoding steps (`kernels/w8a16.c`), built for this CPU on first use.

    kernel = int8_kernel.load()                    # None where it cannot be built here
    out = kernel.linear(hidden, weight, scale, bias)   # == hidden @ (weight * scale[:, None]).T + bias

Why a kernel of our own: a decoding step of one user reads every weight once, and torch's weight-only int8
kernel converts each weight to float before it multiplies, so on two cores it reads at about two thirds of the
memory bandwidth (all GPT-2-medium linears of one step: 31-34 ms against 19.5-20 ms here; docs/benchmarks.md, "An
int8 decoding kernel of our own"). This one multiplies in integers (activations quantised to int16, one scale per
row, finer than bf16).

Built by `native.py` for the ISA variant the capability probe names (`Capabilities.int8_kernel_isa`). Where there
is no C compiler, no AVX2, or the build fails, `load()` returns None, one log line says why, and callers keep
torch's kernel.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math

import torch

from sobesednik.inference.native import load_for_this_cpu, load_library

logger = logging.getLogger(__name__)


# Rows of a weight quantised at a time: the float copy of a slice, not of the whole matrix (ruDialoGPT's output
# layer alone would be a 206 MB float copy while the model loads).
_QUANTIZE_ROWS = 256


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`weight [n, k]` as int8 codes in -127..127 with one float32 scale per row (its largest magnitude / 127),
    the layout both our int8 kernels take."""
    scale = torch.linalg.vector_norm(weight, ord=math.inf, dim=1).float().clamp(min=1e-12) / 127
    codes = torch.empty(weight.shape, dtype=torch.int8)
    for first in range(0, weight.shape[0], _QUANTIZE_ROWS):
        rows = slice(first, first + _QUANTIZE_ROWS)
        codes[rows] = torch.div(weight[rows].float(), scale[rows, None]).round_().clamp_(-127, 127)
    return codes, scale


class Int8Kernel:
    """The compiled `w8a16_linear`, called on torch tensors."""

    def __init__(self, library: ctypes.CDLL, isa: str) -> None:
        self.isa = isa
        self._linear = library.w8a16_linear
        self._linear.restype = ctypes.c_int
        self._linear.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]

    def linear(self, hidden: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
        """`hidden [m, k]` (bf16 or float32) times int8 `weight [n, k]` with float32 `scale [n]` per output row,
        plus float32 `bias [n]`; the result has `hidden`'s dtype. Meant for a few rows (a decoding step)."""
        if hidden.dtype not in (torch.bfloat16, torch.float32) or hidden.dim() != 2:
            raise ValueError(f"hidden must be a 2-D bf16 or float32 tensor, got {hidden.dtype} {tuple(hidden.shape)}")
        rows, width = hidden.shape
        outputs = weight.shape[0]
        if weight.dtype != torch.int8 or weight.shape[1] != width or not weight.is_contiguous():
            raise ValueError(f"weight must be a contiguous int8 [n, {width}] tensor, got {weight.dtype} "
                             f"{tuple(weight.shape)}")
        if scale.dtype != torch.float32 or scale.shape != (outputs,):
            raise ValueError(f"scale must be float32 [{outputs}], got {scale.dtype} {tuple(scale.shape)}")
        if bias is not None and (bias.dtype != torch.float32 or bias.shape != (outputs,)):
            raise ValueError(f"bias must be float32 [{outputs}], got {bias.dtype} {tuple(bias.shape)}")
        hidden = hidden.contiguous()
        out = torch.empty(rows, outputs, dtype=hidden.dtype)
        failed = self._linear(hidden.data_ptr(), hidden.dtype == torch.bfloat16, weight.data_ptr(),
                              scale.data_ptr(), None if bias is None else bias.data_ptr(), out.data_ptr(),
                              rows, outputs, width, torch.get_num_threads())
        if failed:
            raise MemoryError(f"w8a16_linear could not allocate its scratch for {rows} x {width} activations")
        return out


def load_isa(isa: str) -> Int8Kernel:
    """The kernel built for `isa`, loaded; raises `KernelBuildError`. The CPU must run `isa`'s instructions."""
    return Int8Kernel(load_library("w8a16.c", isa), isa)


@functools.cache
def load() -> Int8Kernel | None:
    """The kernel for this CPU, built once per process; None (with one log line) where it cannot be had."""
    return load_for_this_cpu("w8a16.c", Int8Kernel, logger, what="int8 decoding kernel",
                             serves="torch's kernel serves decoding steps", cost="about a third slower at batch 1")
