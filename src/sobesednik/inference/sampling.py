"""Sampling settings of one request and the per-row logits processing of the batched decoding loop.

Each row of a batch may carry its own temperature, top-k, top-p, repetition penalty and no-repeat n-gram size
(requests that arrive together rarely agree), so the processors here work on a `[rows, vocab]` tensor with one
setting per row, the same maths as the `transformers` logits processors of the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

MIN_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class SamplingParams:
    """How to generate one reply; defaults come from the model's `generation_config` (see `from_generation_config`)."""

    max_new_tokens: int = 40  # tokens; ruDialoGPT's model card
    min_new_tokens: int = 0  # tokens before the closing token / EOS may end the reply (benchmarks force a length)
    temperature: float = 1.2  # 0 means greedy
    top_k: int = 10  # 0 disables
    top_p: float = 0.95  # 1 disables
    repetition_penalty: float = 1.2  # 1 disables
    no_repeat_ngram_size: int = 2  # 0 disables
    stop: tuple[str, ...] = ()  # extra strings that end the reply (the role strings always do)
    seed: int | None = None  # makes sampling reproducible

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_overrides(self, **overrides: Any) -> SamplingParams:
        """A copy with the given (not None) values replaced."""
        return replace(self, **{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def from_generation_config(cls, config: Any) -> SamplingParams:
        """Defaults from a `GenerationConfig`; `do_sample=False` there means greedy."""
        base = cls()
        return cls(
            max_new_tokens=config.max_new_tokens or base.max_new_tokens,
            temperature=float(config.temperature or 1.0) if config.do_sample else 0.0,
            top_k=int(config.top_k or 0),
            top_p=float(config.top_p if config.top_p is not None else 1.0),
            repetition_penalty=float(config.repetition_penalty or 1.0),
            no_repeat_ngram_size=int(config.no_repeat_ngram_size or 0),
        )


def apply_repetition_penalty(logits: torch.Tensor, seen: list[torch.Tensor], penalties: Sequence[float]) -> None:
    """CTRL-style penalty on every token already in the row (prompt and reply), in place."""
    for row, (tokens, penalty) in enumerate(zip(seen, penalties, strict=True)):
        if penalty == 1.0:
            continue
        scores = logits[row, tokens]
        logits[row, tokens] = torch.where(scores < 0, scores * penalty, scores / penalty)


def ban_repeated_ngrams(logits: torch.Tensor, seen: list[list[int]], sizes: Sequence[int]) -> None:
    """Forbid any token that would complete an n-gram already present in the row, in place."""
    for row, (tokens, size) in enumerate(zip(seen, sizes, strict=True)):
        if size <= 0 or len(tokens) < size:
            continue
        prefix = tuple(tokens[len(tokens) - size + 1:])
        banned = [tokens[i + size - 1] for i in range(len(tokens) - size + 1)
                  if tuple(tokens[i:i + size - 1]) == prefix]
        if banned:
            logits[row, banned] = float("-inf")


def sample_next(logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[Any]) -> torch.Tensor:
    """One token per row: argmax for greedy rows, otherwise temperature → top-k → top-p → multinomial."""
    logits = logits.float()
    chosen = logits.argmax(dim=-1)
    sampled_rows = [row for row, p in enumerate(params) if not p.greedy]
    if not sampled_rows:
        return chosen
    index = torch.tensor(sampled_rows)
    # A floor on the temperature keeps the scaled scores finite (1e-4 is already greedy in practice).
    temperatures = torch.tensor([max(params[row].temperature, MIN_TEMPERATURE) for row in sampled_rows])
    scores = logits[index] / temperatures.unsqueeze(1)
    vocab = scores.shape[-1]
    for i, row in enumerate(sampled_rows):
        top_k = params[row].top_k
        if 0 < top_k < vocab:
            kth = torch.topk(scores[i], top_k).values[-1]
            scores[i][scores[i] < kth] = float("-inf")
    top_p = torch.tensor([params[row].top_p for row in sampled_rows]).unsqueeze(1)
    if bool((top_p < 1).any()):
        sorted_scores, order = scores.sort(dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # Drop the low tail whose total mass is at most 1 - top_p, always keeping the most likely token.
        remove = cumulative <= (1 - top_p)
        remove[:, -1] = False
        scores = scores.scatter(1, order, sorted_scores.masked_fill(remove, float("-inf")))
    probs = scores.softmax(dim=-1)
    for i, row in enumerate(sampled_rows):
        chosen[row] = torch.multinomial(probs[i], 1, generator=generators[row]).item()
    return chosen
