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

from sobesednik.modeling.defaults import RECOMMENDED_GENERATION

MIN_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class SamplingParams:
    """How to generate one reply; defaults come from the model's `generation_config` (see `from_generation_config`)."""

    # defaults: ruDialoGPT's model card (modeling/defaults.py), which every written model dir carries
    max_new_tokens: int = int(RECOMMENDED_GENERATION["max_new_tokens"])  # tokens
    min_new_tokens: int = 0  # tokens before the closing token / EOS may end the reply (benchmarks force a length)
    temperature: float = float(RECOMMENDED_GENERATION["temperature"])  # 0 means greedy
    top_k: int = int(RECOMMENDED_GENERATION["top_k"])  # 0 disables
    top_p: float = float(RECOMMENDED_GENERATION["top_p"])  # 1 disables
    repetition_penalty: float = float(RECOMMENDED_GENERATION["repetition_penalty"])  # 1 disables
    no_repeat_ngram_size: int = int(RECOMMENDED_GENERATION["no_repeat_ngram_size"])  # 0 disables
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
        """Defaults from a model dir's `GenerationConfig` (`modeling.model_dir.sampling_defaults`)."""
        from sobesednik.modeling.model_dir import sampling_defaults

        return cls(**sampling_defaults(config))


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalties: Sequence[float],
                             exempt: Sequence[int] = ()) -> None:
    """CTRL-style penalty on every token already in the row (prompt and reply) but `exempt`, in place, all rows
    at once.

    `seen` is `[rows, width]` token ids; a row shorter than the widest is padded with one of its own tokens
    (a token listed twice is penalised once: both copies read the unpenalised score and write the same value).
    The generator exempts its stop ids: every prompt holds both role tokens, and penalising them would
    penalise ending the reply, which is not a repetition.
    """
    if all(penalty == 1.0 for penalty in penalties):
        return
    kept = logits[:, list(exempt)].clone() if exempt else None
    penalty = torch.tensor(penalties, dtype=logits.dtype, device=logits.device).unsqueeze(1)
    scores = logits.gather(1, seen)
    logits.scatter_(1, seen, torch.where(scores < 0, scores * penalty, scores / penalty))
    if kept is not None:
        logits[:, list(exempt)] = kept


def ban_repeated_ngrams(logits: torch.Tensor, seen: list[list[int]], sizes: Sequence[int],
                        exempt: Sequence[int] = ()) -> None:
    """Forbid any token but `exempt` that would complete an n-gram already present in the row, in place.

    The generator exempts its stop ids. A byte-level BPE writes the space before a role token as a token of
    its own, so "␣ @@ВТОРОЙ@@" ends every prompt and "␣ @@ПЕРВЫЙ@@" follows every earlier reply in it: with
    no_repeat_ngram_size 2 (ruDialoGPT's card) a reply that ends with that space could never close (measured
    by bench/persona.py on the tiny base: 60 % of replies stopped on their own, 91 % once exempt).
    """
    allowed = set(exempt)
    rows: list[int] = []
    banned: list[int] = []
    for row, (tokens, size) in enumerate(zip(seen, sizes, strict=True)):
        if size <= 0 or len(tokens) < size:
            continue
        prefix = tuple(tokens[len(tokens) - size + 1:])
        found = [tokens[i + size - 1] for i in range(len(tokens) - size + 1)
                 if tuple(tokens[i:i + size - 1]) == prefix and tokens[i + size - 1] not in allowed]
        rows += [row] * len(found)
        banned += found
    if banned:  # one indexed write for the whole batch
        logits[rows, banned] = float("-inf")


def sample_next(logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[Any]) -> torch.Tensor:
    """One token per row: argmax for greedy rows, otherwise temperature → top-k → top-p → multinomial.

    Top-p works on the top-k candidates only (10 for ruDialoGPT), not on a sort of the whole vocabulary: the
    same result as `transformers`' TopK then TopP warpers, at a fraction of the cost per step. Dividing by a
    positive temperature keeps the order of the scores, so the top k are taken from the raw logits and only
    those k are scaled: the vocabulary is read once per step (by `topk`), not also copied, divided and
    searched for its argmax (16 rows of ruDialoGPT's 50k logits, AMD EPYC Zen 3: 1.7–2.8 against 6.2–7.6 ms a
    step, docs/benchmarks.md). Each op runs once for all sampled rows: per row, each would be an OpenMP region
    over 50k logits. Only the draw itself stays per row, on its row's own `generator` (seeds reproduce).
    """
    logits = logits.float()
    sampled = [row for row, p in enumerate(params) if not p.greedy]
    some_greedy = len(sampled) < len(params)
    # The greedy rows' tokens; the sampled rows' are written at the end.
    chosen = logits.argmax(dim=-1) if some_greedy else torch.empty(len(params), dtype=torch.long, device=logits.device)
    if not sampled:
        return chosen
    scores = logits[sampled] if some_greedy else logits  # no copy of the logits when every row samples
    vocab = logits.shape[-1]
    top_k = [params[row].top_k if 0 < params[row].top_k < vocab else vocab for row in sampled]
    values, indices = torch.topk(scores, max(top_k))  # sorted, largest first
    # A floor on the temperature keeps the scaled scores finite (1e-4 is already greedy in practice).
    temperature = torch.tensor([max(params[row].temperature, MIN_TEMPERATURE) for row in sampled])
    values = values / temperature.unsqueeze(1)
    beyond_k = torch.arange(values.shape[1]) >= torch.tensor(top_k).unsqueeze(1)
    values = values.masked_fill(beyond_k, float("-inf"))
    top_p = torch.tensor([params[row].top_p if params[row].top_p < 1 else float("inf") for row in sampled])
    probs = values.softmax(dim=-1)
    # Keep the smallest head whose mass reaches top_p: a token stays if the mass before it is below top_p.
    drop = probs.cumsum(dim=-1) - probs >= top_p.unsqueeze(1)
    drop[:, 0] = False  # the most likely token always stays (a top_p that rounds to 0 in float32, too)
    probs = values.masked_fill(drop, float("-inf")).softmax(dim=-1)
    finite = torch.isfinite(values[:, 0]).tolist()
    picks = []
    for i, row in enumerate(sampled):
        if finite[i]:
            # The row's own k candidates only, so a seed draws the same numbers whatever the other rows ask for.
            picks.append(torch.multinomial(probs[i, :top_k[i]], 1, generator=generators[row]))
        else:  # everything is banned: fall back to the top candidate rather than fail
            picks.append(torch.zeros(1, dtype=torch.long))
    chosen[sampled] = indices.gather(1, torch.stack(picks)).squeeze(1)
    return chosen
