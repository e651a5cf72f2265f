"""Make a loaded model fast for inference on this machine: dtype, GPT-2 Conv1D → nn.Linear, dynamic int8.

GPT-2 keeps its projections in `transformers`' `Conv1D` (an `addmm` over a transposed weight). oneDNN's fast
bf16 kernels and torch's dynamic int8 quantization only take `nn.Linear`, so every Conv1D becomes an equivalent
`nn.Linear` first (same outputs up to float rounding). Several personas on one base (a `PeftModel` holding
many adapters) get the same path for the frozen base layers under their LoRA wrappers; what peft's own forward
reads as weights (LoRA's A and B, trained token rows, fully trained modules) stays a plain float layer, so every
adapter's delta is computed as trained. (A single RUN_DIR is merged when it loads, `Generator.load`.)

Two more CPU wins, measured in `docs/benchmarks.md`: on bf16, every `nn.Linear` weight is re-laid out once
into oneDNN's blocked format (`PackedLinear`), which a plain bf16 `nn.Linear` redoes on every call (the
linear layers ≈1.5× faster at batch 1 and 16), and with `quantize="auto"` each linear keeps a weight-only int8
copy for decoding steps of a few users (`Int8StepsLinear`: half the bytes read per token, on our integer kernel,
`int8_kernel`); GPT-2's `gelu_new`, five elementwise passes in Python, becomes `TanhGelu` (the same function, by
the faster of two forms). On the int8 path the linears run on our dynamic int8 kernel (`dynamic_int8`) where it
builds, on torch's elsewhere.

    model = optimize_model(model, dtype="bfloat16", quantize="none")
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn

from sobesednik.errors import ConfigError
from sobesednik.hardware import probe, serving_path
from sobesednik.inference import dynamic_int8, int8_kernel

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE = ("auto", "none", "int8")
# Rows per call up to which `Int8StepsLinear` takes its int8 weights: decoding steps of one to four users.
# All linears of a GPT-2-medium step on an AMX Xeon, our int8 kernel / packed bf16, three runs: 19-23 / 36-55 ms
# at 1 row, 19-21 / 38-51 at 2, 26-37 / 57-64 at 4, 50-64 / 52-66 at 8 (docs/benchmarks.md, "An int8 decoding
# kernel of our own"); prompt passes have more rows.
INT8_MAX_ROWS = 4


def _replace_modules(model: nn.Module, replacement: Callable[[nn.Module], nn.Module | None]) -> int:
    """Put `replacement(child)` in place of every submodule for which it is not None; return the count.

    Modules that peft reads as weights (`adapter_owned`) are left as they are.
    """
    owned = adapter_owned(model)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = None if id(child) in owned else replacement(child)
            if new is not None:
                setattr(parent, name, new)
                replaced += 1
    return replaced


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every GPT-2 `Conv1D` in `model` with an `nn.Linear` holding the same weights; return the count."""
    from transformers.pytorch_utils import Conv1D

    def linear_of(child: nn.Module) -> nn.Linear | None:
        if not isinstance(child, Conv1D):
            return None
        n_in, n_out = child.weight.shape  # Conv1D stores the weight as [in, out]
        linear = nn.Linear(n_in, n_out, dtype=child.weight.dtype, device=child.weight.device)
        linear.weight.data = child.weight.data.t().contiguous()
        linear.bias.data = child.bias.data
        return linear

    return _replace_modules(model, linear_of)


class PackedLinear(nn.Module):
    """A bf16 `nn.Linear` for the CPU whose weight oneDNN has already re-laid out for its matmul kernels."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # The batch-size hint only picks the blocking; measured the same for 1 to 16 rows.
        packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 16)
        self.register_buffer("weight", packed, persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach(), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(hidden, self.weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 packed for oneDNN"


class WeightOnlyInt8(nn.Module):
    """A linear's weight as int8 with one scale per output row; the activations keep their dtype.

    Computed on our kernel (`int8_kernel`: integer multiply-adds) where it builds, else on torch's weight-only
    kernel, which converts every weight to float, is about a third slower at one row, and takes bf16 only.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.on_kernel = int8_kernel.load() is not None
        int8, scale = int8_kernel.quantize_rows(linear.weight.detach())
        self.register_buffer("weight", int8, persistent=False)
        # Our kernel takes the scale and bias in float32; torch's in the activations' dtype.
        dtype = torch.float32 if self.on_kernel else linear.weight.dtype
        self.register_buffer("scale", scale.to(dtype), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, self.in_features)
        if self.on_kernel:
            out = int8_kernel.load().linear(rows, self.weight, self.scale, self.bias)
        else:
            out = torch._weight_int8pack_mm(rows, self.weight, self.scale)
            if self.bias is not None:
                out += self.bias
        return out.view(*hidden.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kernel = "our kernel" if self.on_kernel else "torch's kernel"
        return f"in_features={self.in_features}, out_features={self.out_features}, weight-only int8 on {kernel}"


class Int8StepsLinear(nn.Module):
    """A linear whose calls of up to `INT8_MAX_ROWS` rows (decoding steps of one to four users) run on a
    `WeightOnlyInt8` copy of its weight, and larger ones (prompt passes) on `large`.

    A decoding step of a few users reads every weight once per token, so it is bound by memory bandwidth, and
    int8 reads half of bf16's bytes; a prompt pass has hundreds of rows, where `large` (AMX's bf16 tiles)
    computes faster. Weight-only int8 keeps the activations as they are: greedy replies follow float32 as closely
    as bf16's do (0.972 against 0.969 on a random GPT-2 medium), where dynamic int8, which quantises the
    activations to 8 bits too, fell to 0.922 (docs/benchmarks.md, "int8 decoding steps").
    """

    def __init__(self, large: nn.Module, linear: nn.Linear) -> None:
        super().__init__()
        self.large = large
        self.int8 = WeightOnlyInt8(linear)
        self.int8_max_elements = INT8_MAX_ROWS * linear.in_features

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.numel() > self.int8_max_elements:
            return self.large(hidden)
        return self.int8(hidden)


def pack_bf16_linears(model: nn.Module, *, int8_steps: bool = False) -> int:
    """Replace every bf16 `nn.Linear` of a CPU model with a `PackedLinear` (with `int8_steps`, inside an
    `Int8StepsLinear`); return the count.

    The tied `lm_head` gets its own packed copy (one more vocab × width matrix in memory): the input
    embedding keeps the plain weight it needs for lookups.
    """

    def packed(child: nn.Module) -> nn.Module | None:
        if not (type(child) is nn.Linear and child.weight.dtype == torch.bfloat16 and child.weight.is_cpu):
            return None
        return Int8StepsLinear(PackedLinear(child), child) if int8_steps else PackedLinear(child)

    return _replace_modules(model, packed)


class TanhGelu(nn.Module):
    """GPT-2's tanh GELU, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, by whichever kernel is faster for `x`.

    `0.5·(1 + tanh(u))` is `σ(2u)`, so on float32 batches it runs as `x·σ(2√(2/π)·(x + 0.044715·x³))`: five ops
    on one buffer, and torch's sigmoid is three times as fast as its tanh. 16 rows of 4096 took 47 µs against
    92 µs for torch's fused `gelu(approximate="tanh")` with AVX2 kernels and 46 against 57 with AVX-512; a
    1,149-token prompt pass 3.3 ms against 6.3 ms and 2.5 against 3.6 per layer (AMD EPYC, 2 threads;
    docs/benchmarks.md, "GELU by the sigmoid"). Below 4 rows, and in bf16 (where each op would round to bf16),
    the fused kernel is as fast or more exact, so it runs there.
    """

    _COMPOSITE_MIN_ELEMENTS = 4 * 4096  # measured: 1 and 2 rows of 4096 faster fused with AVX-512, 4 and more not
    _TWICE_SQRT_2_OVER_PI = 2 * math.sqrt(2 / math.pi)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dtype != torch.float32 or hidden.numel() < self._COMPOSITE_MIN_ELEMENTS:
            return nn.functional.gelu(hidden, approximate="tanh")
        scale = self._TWICE_SQRT_2_OVER_PI
        out = hidden * hidden
        return out.mul_(0.044715 * scale).add_(scale).mul_(hidden).sigmoid_().mul_(hidden)


def fuse_gelu(model: nn.Module) -> int:
    """Replace `transformers`' Python tanh-GELU (`gelu_new`, five passes in Python) with `TanhGelu`; return the
    count."""
    from transformers.activations import NewGELUActivation

    return _replace_modules(model, lambda child: TanhGelu() if isinstance(child, NewGELUActivation) else None)


def adapter_owned(model: nn.Module) -> set[int]:
    """`id`s of the modules of a `PeftModel` whose weights peft's forward reads itself: LoRA's A and B, trained
    token rows and fully trained modules (with their frozen originals). Empty for a plain model."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper, TrainableTokensWrapper

    owned: set[int] = set()
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper | TrainableTokensWrapper):
            owned.update(map(id, module.modules()))
        elif isinstance(module, LoraLayer):
            for name, child in module.named_children():
                if name != "base_layer":
                    owned.update(map(id, child.modules()))
    return owned


def quantize_int8(model: nn.Module, *, keep: Collection[str] = ()) -> nn.Module:
    """Every `nn.Linear` of `model` (but `adapter_owned` ones and those named in `keep`) as a dynamic int8 linear,
    in place: ours (`dynamic_int8`: per-row activation and per-row weight scales; on an AVX2 EPYC a 16-row step's
    linears in 1.25 against fbgemm's 2.30 ms, a whole 16-user batch 1.15x faster) where it builds, else torch's
    (`quantize_int8_torch`).

    In place: a copy would hold the float model twice while quantising. `lm_head` shares its weight with the
    embedding; its quantized copy only serves the output projection.
    """
    kernel = dynamic_int8.load()
    if kernel is None:
        return quantize_int8_torch(model, keep=keep)
    names = _int8_candidates(model, keep)
    targets = {id(module) for name, module in model.named_modules() if name in names}
    _replace_modules(model, lambda child: dynamic_int8.DynamicInt8Linear(child, kernel) if id(child) in targets
                     else None)
    return model


def quantize_int8_torch(model: nn.Module, *, per_channel: bool = False, keep: Collection[str] = ()) -> nn.Module:
    """`quantize_int8` on torch's dynamic int8 linear (fbgemm / qnnpack), with one weight scale per tensor or per
    output channel (`bench/serve.py --agreement` measures both)."""
    names = _int8_candidates(model, keep)
    torch.backends.quantized.engine = probe().int8_engine  # the packed weights are the engine's, and so its kernels
    # torch 2.13 marks its eager quantisation as deprecated (for torchao); it is still the int8 engine measured
    # here, and its notices would be the only lines of library noise in `serve`'s log.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(quantize_per_tensor|torch\.ao\.quantization).*deprecated")
        spec = dict.fromkeys(names, torch.ao.quantization.per_channel_dynamic_qconfig) if per_channel else names
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def _int8_candidates(model: nn.Module, keep: Collection[str]) -> set[str]:
    """Names of the `nn.Linear`s that `quantize_int8` takes: not `adapter_owned`, not in `keep`."""
    owned = adapter_owned(model)
    return {name for name, module in model.named_modules()
            if type(module) is nn.Linear and id(module) not in owned and name not in keep}


def optimize_model(model: Any, *, dtype: str = "float32", quantize: str = "none") -> Any:
    """The model in eval mode on the path `hardware.serving_path` picks for `dtype` and `quantize` (or `auto`)."""
    device = next(model.parameters()).device.type
    if dtype not in (*DTYPES, "auto"):
        raise ConfigError(f"dtype {dtype!r} is not supported: use one of auto, {', '.join(DTYPES)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize {quantize!r} is not supported: use one of {', '.join(QUANTIZE)}")
    if quantize == "int8":
        _check_int8(device, dtype)
    path = serving_path(dtype, quantize, device=device)
    logger.info("%s: serving %s", probe().describe(), path.describe())
    model.eval()
    fuse_gelu(model)
    conv1d_to_linear(model)
    if path.quantize == "int8":
        return quantize_int8(model)
    if path.dtype != "float32":
        model = model.to(DTYPES[path.dtype])
    if path.pack_bf16:
        pack_bf16_linears(model, int8_steps=path.int8_steps)
    return model


def _check_int8(device: str, dtype: str) -> None:
    """Refuse an explicit `--quantize int8` where it cannot run, naming the fix."""
    if device != "cpu" or dtype not in ("auto", "float32"):
        raise ConfigError("--quantize int8 is dynamic int8 for the CPU: use it with --dtype float32 on a CPU")
    if not probe().int8:
        raise ConfigError(f"--quantize int8: torch has no int8 engine for this CPU ({probe().describe()}): "
                          "use --quantize none")
