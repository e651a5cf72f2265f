"""Make a loaded model fast for inference on this machine: dtype, GPT-2 Conv1D → nn.Linear, dynamic int8.

GPT-2 keeps its projections in `transformers`' `Conv1D` (an `addmm` over a transposed weight). oneDNN's fast
bf16 kernels and torch's dynamic int8 quantization only take `nn.Linear`, so the plain-model paths convert
every Conv1D to an equivalent `nn.Linear` first (same outputs up to float rounding). A RUN_DIR's `PeftModel`
keeps its LoRA layers as they are: only a dtype cast applies there; export it for int8.

    model = optimize_model(model, dtype="bfloat16", quantize="none")
"""

from __future__ import annotations

import logging
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


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every GPT-2 `Conv1D` in `model` with an `nn.Linear` holding the same weights; return the count."""
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                n_in, n_out = child.weight.shape  # Conv1D stores the weight as [in, out]
                linear = nn.Linear(n_in, n_out, dtype=child.weight.dtype, device=child.weight.device)
                linear.weight.data = child.weight.data.t().contiguous()
                linear.bias.data = child.bias.data
                setattr(parent, name, linear)
                replaced += 1
    return replaced


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
