"""The dynamic int8 linear of the int8 serving path (`kernels/u8s8.c`), built for this CPU on first use.

    kernel = dynamic_int8.load()                 # None where it cannot be built here
    layer = DynamicInt8Linear(linear, kernel)    # in place of a float32 nn.Linear
    out = layer(hidden)                          # ≈ linear(hidden); activations quantised per row, as they come

Why a kernel of our own: on two AVX2 EPYC cores torch's dynamic int8 linear (fbgemm) ran all four linears of
a GPT-2-medium layer for 16 rows (a decoding step of 16 users) in 2.30 ms, ours in about 1.2 ms, and a
1,149-row prompt pass in 108 against about 82 ms (docs/benchmarks.md, "A dynamic int8 kernel of our own"). Its
scales are finer too: one per activation row and one per weight row, where torch's are one per tensor.

Built by `native.py` for the ISA variant the capability probe names (`Capabilities.int8_kernel_isa`). Where there
is no C compiler, no AVX2, or the build fails, `load()` returns None, one log line says why, and
`optimize.quantize_int8` keeps torch's dynamic int8 linear.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math

import torch
from torch import nn

from sobesednik.inference.int8_kernel import quantize_rows
from sobesednik.inference.native import load_for_this_cpu, load_library

logger = logging.getLogger(__name__)

BLOCK_ROWS = 8  # weight rows interleaved in the packed layout (one int32 lane each)
BLOCK_DEPTH = 4  # consecutive weights of a row per lane (one `vpmaddubsw` pair of pairs)
TILE_COLS = 16  # output rows the kernel computes at once: n is padded to a multiple


class DynamicInt8Kernel:
    """The compiled `u8s8_linear`, called on torch tensors."""

    def __init__(self, library: ctypes.CDLL, isa: str) -> None:
        self.isa = isa
        self._linear = library.u8s8_linear
        self._linear.restype = ctypes.c_int
        self._linear.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 3 + [ctypes.c_int]

    def linear(self, hidden: torch.Tensor, layer: DynamicInt8Linear) -> torch.Tensor:
        """float32 `hidden [m, k]` times `layer`'s packed weight, plus its bias: float32 `[m, n]`."""
        if hidden.dtype != torch.float32 or hidden.dim() != 2 or hidden.shape[1] != layer.in_features:
            raise ValueError(f"hidden must be a 2-D float32 [m, {layer.in_features}] tensor, got {hidden.dtype} "
                             f"{tuple(hidden.shape)}")
        hidden = hidden.contiguous()
        rows = hidden.shape[0]
        out = torch.empty(rows, layer.out_features, dtype=torch.float32)
        if not rows:  # nothing to quantise: the C code's scratch would be empty
            return out
        bias = None if layer.bias is None else layer.bias.data_ptr()
        failed = self._linear(hidden.data_ptr(), layer.weight.data_ptr(), layer.scale.data_ptr(),
                              layer.weight_sum.data_ptr(), bias, out.data_ptr(), rows, layer.out_features,
                              layer.in_features, torch.get_num_threads())
        if failed:
            raise MemoryError(f"u8s8_linear could not allocate its scratch for {rows} x {layer.in_features} "
                              "activation codes")
        return out


class DynamicInt8Linear(nn.Module):
    """An `nn.Linear` with its weight in int8 (one scale per output row), packed for `kernels/u8s8.c`; each call
    quantises the activations per row to 7 bits and multiplies in integers."""

    def __init__(self, linear: nn.Linear, kernel: DynamicInt8Kernel) -> None:
        super().__init__()
        self.kernel = kernel
        self.in_features, self.out_features = linear.in_features, linear.out_features
        codes, scale = quantize_rows(linear.weight.detach())
        outputs = math.ceil(self.out_features / TILE_COLS) * TILE_COLS
        depth = math.ceil(self.in_features / BLOCK_DEPTH) * BLOCK_DEPTH
        # Zero rows and columns up to whole tiles: they add nothing to any sum.
        codes = torch.nn.functional.pad(codes, (0, depth - self.in_features, 0, outputs - self.out_features))
        # [n, k] → [n/8, k/4, 8, 4]: 32 bytes hold four consecutive weights of eight output rows.
        packed = codes.view(outputs // BLOCK_ROWS, BLOCK_ROWS, depth // BLOCK_DEPTH, BLOCK_DEPTH)
        self.register_buffer("weight", packed.permute(0, 2, 1, 3).contiguous(), persistent=False)
        self.register_buffer("weight_sum", codes.sum(dim=1, dtype=torch.int32).float(), persistent=False)
        self.register_buffer("scale", _padded(scale, outputs), persistent=False)
        bias = None if linear.bias is None else _padded(linear.bias.detach().float(), outputs)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.shape[-1] != self.in_features:
            raise ValueError(f"hidden must be a float32 [..., {self.in_features}] tensor, got {hidden.dtype} "
                             f"{tuple(hidden.shape)}")
        out = self.kernel.linear(hidden.reshape(-1, self.in_features), self)
        return out.view(*hidden.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dynamic int8 on our kernel"


def _padded(values: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(values.float(), (0, length - values.shape[0]))


def load_isa(isa: str) -> DynamicInt8Kernel:
    """The kernel built for `isa`, loaded; raises `KernelBuildError`. The CPU must run `isa`'s instructions."""
    return DynamicInt8Kernel(load_library("u8s8.c", isa), isa)


@functools.cache
def load() -> DynamicInt8Kernel | None:
    """The kernel for this CPU, built once per process; None (with one log line) where it cannot be had."""
    return load_for_this_cpu("u8s8.c", DynamicInt8Kernel, logger, what="dynamic int8 kernel",
                             serves="torch's dynamic int8 linears serve", cost="about a seventh fewer tokens/s")
