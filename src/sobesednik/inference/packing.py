"""Packed prompts: a batch's prompts as one row of tokens, so that no padding is computed.

Left-padding a batch of prompts to its longest wastes what the padding costs: in a mix of 60- to 150-token
dialogues a third of the prompt pass (docs/benchmarks.md, "packed prompts"), and on a CPU the prompt pass is
half of what 16 users cost. Packed, the prompts run as one sequence of their total length through every
linear layer, and attention runs per prompt, each over its own tokens only (`packed_attention`): a causal SDPA
per prompt instead of one masked SDPA over the padded rectangle. The KV cache scatters the packed keys and
values into the usual left-padded rows as it stores them (`kv_cache.ReservedLayer`), so decoding after a packed
prompt pass is the same as after a padded one.

The attention is registered with `transformers`' attention interface under `PACKED_ATTENTION` and otherwise is
its SDPA (decoding steps, masks), so a model takes it by `set_attn_implementation`; a model whose attention does
not go through that interface keeps padded prompts (`use_packed_attention` says which).

    if use_packed_attention(model):
        output = model(input_ids=packed_ids, position_ids=positions, cache=reserved_cache(packed=lengths),
                       packed_lengths=lengths, logits_to_keep=ends)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

PACKED_ATTENTION = "sobesednik_packed"


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, *, packed_lengths: Sequence[int] | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """SDPA; over packed prompts (`packed_lengths` given, one row of their tokens), causal SDPA per prompt.

    `query`, `key`, `value` are [batch, heads, tokens, head width]; the result is [batch, tokens, heads, width],
    as the attention interface returns it. The mask of a packed pass is not needed: each prompt sees only itself.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if packed_lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    lengths = list(packed_lengths)
    outputs = [sdpa_attention_forward(module, q, k, v, None, **kwargs)[0]
               for q, k, v in zip(query.split(lengths, dim=2), key.split(lengths, dim=2),
                                  value.split(lengths, dim=2), strict=True)]
    return torch.cat(outputs, dim=1), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)


def use_packed_attention(model: Any) -> bool:
    """Switch `model` (plain or peft) to `packed_attention`; False, and nothing changed, where it cannot take it.

    It must be running SDPA now (the attention `packed_attention` falls back on), through the attention interface.
    """
    config = model.config
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    _register()
    try:
        model.set_attn_implementation(PACKED_ATTENTION)
    except (AttributeError, ValueError) as error:  # an architecture outside the attention interface
        logger.debug("packed prompts off: %s", error)
        return False
    return config._attn_implementation == PACKED_ATTENTION
