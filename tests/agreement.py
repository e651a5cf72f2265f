"""How closely an optimised model follows float32: used by tests/inference/test_optimize.py and bench/serve.py.

    from agreement import top1_agreement     # tests/ is on sys.path (rootdir conftest; bench/serve.py adds it)
"""

from __future__ import annotations

from typing import Any

import torch


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
