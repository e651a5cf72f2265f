"""GPT-2's decoding step as the tensor ops alone: one new token per row, without the module stack around them.

At batch 1 a decoding step on a 2-core CPU is ~20 ms of matmuls and ~15 ms of Python around them: `transformers`'
GPT-2 forward runs ~300 module calls per token, builds a mask and output objects, and looks the attention up in a
registry in each of the 24 blocks. `GPT2Decoder` runs the same ops in the same order straight from the model's own
layers (so bf16-packed and int8 linears and `TanhGelu` are what it calls). It saved 7 ms of 38 per token at batch 1
on the AVX2 int8 path (docs/benchmarks.md, "decoding step"); the prompt pass and every other architecture keep
`transformers`' forward. Its attention runs on our kernel where it builds (`attention_kernel.py`: one query per
row, 1.7x torch's in float32 and 3.7x in bf16 at 16 users), elsewhere on torch's `scaled_dot_product_attention`,
and then its logits are bit-identical to the model's (`tests/inference/test_gpt2_decode.py`; on our kernel they
are equal to float rounding).

It takes a plain `GPT2LMHeadModel` in eval mode: no adapters (peft's layers route rows to personas in their own
forward), no cross-attention, no upcast-and-reorder attention (`GPT2Decoder.of` returns None for those).

    decoder = GPT2Decoder.of(model)
    logits = decoder(next_ids, positions, mask, cache)  # [rows, 1] ids and positions, [rows, width] mask
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sobesednik.inference import attention_kernel
from sobesednik.inference.attention_kernel import AttentionKernel, fits

Layer = Callable[[torch.Tensor], torch.Tensor]


class _Block(NamedTuple):
    ln_1: nn.LayerNorm
    qkv: Layer
    out: Layer
    scaling: float
    ln_2: nn.LayerNorm
    up: Layer
    act: Layer
    down: Layer


class GPT2Decoder:
    """One decoding step of a GPT-2 LM over a `kv_cache.reserved_cache`: next-token ids in, logits out."""

    def __init__(self, model: Any, attention: AttentionKernel | None = None) -> None:
        transformer = model.transformer
        self.width = model.config.n_embd
        self.heads = model.config.n_head
        self.wte, self.wpe = transformer.wte.weight, transformer.wpe.weight
        self.ln_f, self.lm_head = transformer.ln_f, model.lm_head.forward
        # Bound `forward`s: no hooks are expected on an inference model, and `__call__` costs ~4 µs per layer.
        self.blocks = [_Block(b.ln_1, b.attn.c_attn.forward, b.attn.c_proj.forward, b.attn.scaling,
                              b.ln_2, b.mlp.c_fc.forward, b.mlp.act.forward, b.mlp.c_proj.forward)
                       for b in transformer.h]
        # The embeddings' dtype is the activations', and so the cache's.
        takes = fits(self.wte.device, self.wte.dtype, self.width // self.heads, model.config.n_positions)
        self.attention = attention if takes else None

    @classmethod
    def of(cls, model: Any) -> GPT2Decoder | None:
        """A decoder for `model`, or None where `transformers`' forward must run (see the module docstring)."""
        from transformers import GPT2LMHeadModel

        if (type(model) is not GPT2LMHeadModel or model.training or model.config.add_cross_attention
                or model.config.reorder_and_upcast_attn):
            return None
        return cls(model, attention_kernel.load())

    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor,
                 cache: Any) -> torch.Tensor:
        """Logits [rows, vocab] of the token after `input_ids` [rows, 1]; `mask` [rows, width] covers the cached
        tokens and this one (0 over left padding); `cache` gets this token's keys and values."""
        rows, width, heads = input_ids.shape[0], self.width, self.heads
        hidden = F.embedding(input_ids, self.wte) + F.embedding(position_ids, self.wpe)
        # One query per row sees every cached token but the padding: no causal part, and no mask without padding.
        valid = mask.bool().contiguous()
        attention_mask = None if self.attention is not None or bool(valid.all()) else valid[:, None, None, :]
        for layer, block in zip(cache.layers, self.blocks, strict=True):
            x = F.layer_norm(hidden, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
            query, key, value = block.qkv(x).view(rows, 1, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            keys, values = layer.update(key, value)
            if self.attention is not None:
                attended = self.attention.attend(query, keys, values, valid, block.scaling)
            else:
                attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=attention_mask,
                                                          scale=block.scaling).transpose(1, 2).reshape(rows, 1, width)
            hidden = hidden + block.out(attended)
            x = F.layer_norm(hidden, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
            hidden = hidden + block.down(block.act(block.up(x)))
        return self.lm_head(self.ln_f(hidden))[:, -1]
