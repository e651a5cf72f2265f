"""Make a loaded model fast for inference on this machine: dtype, GPT-2 Conv1D → nn.Linear, dynamic int8.

GPT-2 keeps its projections in `transformers`' `Conv1D` (an `addmm` over a transposed weight). oneDNN's fast
bf16 kernels and torch's dynamic int8 quantization only take `nn.Linear`, so the plain-model paths convert
every Conv1D to an equivalent `nn.Linear` first (same outputs up to float rounding). A RUN_DIR's `PeftModel`
keeps its LoRA layers as they are: only a dtype cast and the GELU fusion apply there; export it for int8.

Two more CPU wins, measured in `docs/benchmarks.md`: on bf16, every `nn.Linear` weight is re-laid out once
into oneDNN's blocked format (`PackedLinear`), which a plain bf16 `nn.Linear` redoes on every call (the
linear layers ≈1.5× faster at batch 1 and 16); GPT-2's `gelu_new`, five elementwise passes in Python, becomes
torch's fused tanh GELU (the same function).

    model = optimize_model(model, dtype="bfloat16", quantize="none")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sobesednik.errors import ConfigError

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE = ("none", "int8")
# CPU flags of native bf16 matrix units; without them bf16 matmuls are emulated and slower than float32.
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """`auto` → bfloat16 where the hardware computes it natively (CUDA, AMX / AVX-512 bf16 CPUs), else float32."""
    if dtype != "auto":
        return dtype
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return "float32"
    return "bfloat16" if any(flag in flags.split() for flag in _BF16_CPU_FLAGS) else "float32"


def _replace_modules(model: nn.Module, replacement: Callable[[nn.Module], nn.Module | None]) -> int:
    """Put `replacement(child)` in place of every submodule for which it is not None; return the count."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replacement(child)
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


def can_pack_bf16() -> bool:
    """Whether this torch build has oneDNN's packed bf16 linear (every x86 and arm64 CPU wheel has)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def pack_bf16_linears(model: nn.Module) -> int:
    """Replace every bf16 `nn.Linear` of a CPU model with a `PackedLinear`; return the count.

    The tied `lm_head` gets its own packed copy (one more vocab × width matrix in memory): the input
    embedding keeps the plain weight it needs for lookups.
    """
    def packed(child: nn.Module) -> PackedLinear | None:
        bf16_on_cpu = type(child) is nn.Linear and child.weight.dtype == torch.bfloat16 and child.weight.is_cpu
        return PackedLinear(child) if bf16_on_cpu else None

    return _replace_modules(model, packed)


def fuse_gelu(model: nn.Module) -> int:
    """Replace `transformers`' Python tanh-GELU (`gelu_new`) with torch's fused one; return the count."""
    from transformers.activations import NewGELUActivation

    return _replace_modules(model, lambda child: nn.GELU(approximate="tanh")
                            if isinstance(child, NewGELUActivation) else None)


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def optimize_model(model: Any, *, dtype: str = "float32", quantize: str = "none") -> Any:
    """The model in eval mode with `dtype` (or `auto`) and optional dynamic int8 quantization of its linear layers."""
    device = next(model.parameters()).device.type
    dtype = "float32" if dtype == "auto" and quantize == "int8" else resolve_dtype(dtype, device)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported: use one of {', '.join(DTYPES)}")
    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize {quantize!r} is not supported: use one of {', '.join(QUANTIZE)}")
    model.eval()
    on_cpu = device == "cpu"
    fuse_gelu(model)
    if quantize == "int8":
        if _is_peft(model):
            raise ConfigError("--quantize int8 needs a plain model, and this is a RUN_DIR (base + LoRA adapter): "
                              "run `sobesednik export RUN_DIR --out MODEL_DIR` and serve MODEL_DIR")
        if not on_cpu or dtype != "float32":
            raise ConfigError("--quantize int8 is dynamic int8 for the CPU: use it with --dtype float32 on a CPU")
        conv1d_to_linear(model)
        # lm_head shares its weight with the embedding; the quantized copy only serves the output projection.
        model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        logger.info("quantized the linear layers to dynamic int8")
        return model
    if not _is_peft(model):
        conv1d_to_linear(model)
    if dtype != "float32":
        model = model.to(DTYPES[dtype])
    if on_cpu and dtype == "bfloat16" and not _is_peft(model) and can_pack_bf16():
        logger.info("packed %d bf16 linear layers for oneDNN", pack_bf16_linears(model))
    return model


@torch.inference_mode()
def top1_agreement(reference: Any, candidate: Any, sequences: list[list[int]], prompt_lengths: list[int]) -> float:
    """Share of reply positions where `candidate`'s argmax equals `reference`'s, teacher-forced on `sequences`.

    Each sequence is a prompt followed by a reply; only the positions that predict reply tokens count, so this
    is the share of steps where greedy decoding of `candidate` would pick the token `reference` picks.
    """
    agree = total = 0
    for sequence, prompt_length in zip(sequences, prompt_lengths, strict=True):
        ids = torch.tensor([sequence])
        expected = reference(input_ids=ids).logits[0, prompt_length - 1:-1].argmax(-1)
        got = candidate(input_ids=ids).logits[0, prompt_length - 1:-1].float().argmax(-1)
        agree += int((expected == got).sum())
        total += len(expected)
    return agree / max(total, 1)
