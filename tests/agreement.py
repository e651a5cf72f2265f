"""How closely an optimised model follows float32: used by tests/inference/test_optimize.py and bench/serve.py.

    from agreement import top1_agreement     # tests/ is on sys.path (rootdir conftest; bench/serve.py adds it)
"""

from __future__ import annotations

from typing import Any

import torch


@torch.inference_mode()
def top1_agreement(reference: Any, candidate: Any, sequences: list[list[int]], prompt_lengths: list[int], *,
                   stepwise: bool = False) -> float:
    """Share of reply positions where `candidate`'s argmax equals `reference`'s, teacher-forced on `sequences`.

    Each sequence is a prompt followed by a reply; only the positions that predict reply tokens count, so this
    is the share of steps where greedy decoding of `candidate` would pick the token `reference` picks.
    `stepwise`: the candidate reads the prompt in one pass and the reply one token per pass over its KV cache,
    as it decodes, through the decoding step `Generator` uses (`GPT2Decoder` and its attention kernel where it
    takes the model): a path that treats decoding steps differently (int8 steps, our attention) is measured as
    it serves.
    """
    agree = total = 0
    for sequence, prompt_length in zip(sequences, prompt_lengths, strict=True):
        ids = torch.tensor([sequence])
        expected = reference(input_ids=ids).logits[0, prompt_length - 1:-1].argmax(-1)
        got = (_stepwise_logits(candidate, ids, prompt_length) if stepwise
               else candidate(input_ids=ids).logits[0, prompt_length - 1:-1]).float().argmax(-1)
        agree += int((expected == got).sum())
        total += len(expected)
    return agree / max(total, 1)


def _stepwise_logits(model: Any, ids: torch.Tensor, prompt_length: int) -> torch.Tensor:
    from sobesednik.inference.gpt2_decode import GPT2Decoder
    from sobesednik.inference.kv_cache import reserved_cache

    decoder = GPT2Decoder.of(model)
    output = model(input_ids=ids[:, :prompt_length], cache=reserved_cache(), use_cache=True)
    cache, logits = output.cache, [output.logits[0, -1]]
    for position in range(prompt_length, ids.shape[1] - 1):
        token = ids[:, position:position + 1]
        if decoder is not None:
            logits.append(decoder(token, torch.tensor([[position]]), torch.ones(1, position + 1), cache)[0])
        else:
            output = model(input_ids=token, cache=cache, use_cache=True)
            cache = output.cache
            logits.append(output.logits[0, -1])
    return torch.stack(logits)
