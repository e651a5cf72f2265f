"""Per-row logits processing: top-k / top-p keep the right candidates, penalties and n-gram bans hit the right ids,
and a batch with different settings per row gives each row what `transformers`' processors give it alone."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from sobesednik.inference.sampling import SamplingParams, apply_repetition_penalty, ban_repeated_ngrams, sample_next

LOGITS = torch.tensor([[0.0, 3.0, 2.9, 1.0, -1.0]])  # softmax ≈ [.02, .48, .43, .06, .01]


def draws(params: SamplingParams, times: int = 200) -> set[int]:
    rng = torch.Generator().manual_seed(0)
    return {int(sample_next(LOGITS.clone(), [params], [rng])[0]) for _ in range(times)}


def test_top_k_and_top_p_limit_the_candidates() -> None:
    base = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    assert draws(base) == {0, 1, 2, 3, 4}
    assert draws(base.with_overrides(top_k=2)) == {1, 2}
    assert draws(base.with_overrides(top_p=0.5)) == {1, 2}  # 0.48 alone is short of 0.5
    assert draws(base.with_overrides(top_p=0.4)) == {1}
    assert draws(base.with_overrides(top_p=1e-300)) == {1}  # rounds to 0 in float32: the top token still stays


def test_greedy_rows_take_the_argmax_beside_sampled_rows() -> None:
    logits = LOGITS.repeat(2, 1)
    rngs = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)]
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, top_k=0, top_p=1.0)]
    chosen = {tuple(sample_next(logits.clone(), params, rngs).tolist()) for _ in range(50)}
    assert {first for first, _ in chosen} == {1} and len({second for _, second in chosen}) > 1


def test_a_row_with_every_token_banned_falls_back_without_failing_the_batch() -> None:
    logits = torch.cat([torch.full_like(LOGITS, float("-inf")), LOGITS])
    logits[1, [0, 2, 3, 4]] = float("-inf")  # one token left: a sampled row must take it
    params = [SamplingParams(temperature=1.0)] * 2
    first, second = sample_next(logits, params, [torch.Generator().manual_seed(0)] * 2).tolist()
    assert 0 <= first < LOGITS.shape[1] and second == 1


def test_repetition_penalty_and_ngram_ban() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 1.0]])
    apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), [2.0])  # a repeated id is penalised once
    assert logits.tolist() == [[1.0, -4.0, 1.0, 1.0]]
    ban_repeated_ngrams(logits, [[2, 3, 2]], [2])  # "2 3" seen before, so after "2" the token 3 is banned
    assert logits[0, 3] == float("-inf") and logits[0, 2] == 1.0


def test_exempt_tokens_keep_their_scores_under_both_penalties() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 1.0]])
    apply_repetition_penalty(logits, torch.tensor([[0, 1, 3]]), [2.0], exempt=[3])
    assert logits.tolist() == [[1.0, -4.0, 1.0, 1.0]]
    # "2 3" and "2 1" seen before: after "2", 1 is banned but the exempt 3 (a stop id) is not
    ban_repeated_ngrams(logits, [[2, 3, 2, 1, 2]], [2], exempt=[3])
    assert logits[0, 1] == float("-inf") and logits[0, 3] == 1.0


def test_penalty_and_ngram_ban_per_row_match_transformers() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 50)
    tokens = [[3, 7, 3, 9, 7, 3], [1, 2, 1, 2, 4], [5, 6, 7, 8]]
    penalties, sizes = [1.2, 1.0, 2.0], [2, 3, 0]
    width = max(map(len, tokens))
    seen = torch.tensor([[row[0]] * (width - len(row)) + row for row in tokens])  # padded as the generator does
    batched = logits.clone()
    apply_repetition_penalty(batched, seen, penalties)
    ban_repeated_ngrams(batched, tokens, sizes)
    for row, (ids, penalty, size) in enumerate(zip(tokens, penalties, sizes, strict=True)):
        alone, ids = logits[row:row + 1].clone(), torch.tensor([ids])
        alone = RepetitionPenaltyLogitsProcessor(penalty)(ids, alone)
        if size:
            alone = NoRepeatNGramLogitsProcessor(size)(ids, alone)
        assert torch.equal(batched[row], alone[0])
    assert (batched == float("-inf")).any()  # the bans did hit something


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (10, 0.6), (0, 0.9)])
def test_sampled_rows_draw_only_what_transformers_warpers_keep(top_k: int, top_p: float) -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 40)
    params = [SamplingParams(temperature=0.7, top_k=top_k, top_p=top_p), SamplingParams(temperature=0.0),
              SamplingParams(temperature=1.5, top_k=5, top_p=0.8), SamplingParams(temperature=1.0, top_k=2, top_p=1.0)]
    allowed = []
    for row, p in enumerate(params):
        warped = logits[row:row + 1]
        if p.greedy:
            allowed.append({int(warped.argmax())})
            continue
        warped = TemperatureLogitsWarper(p.temperature)(None, warped)
        if p.top_k:
            warped = TopKLogitsWarper(p.top_k)(None, warped)
        if p.top_p < 1:
            warped = TopPLogitsWarper(p.top_p)(None, warped)
        allowed.append(set(torch.isfinite(warped[0]).nonzero().flatten().tolist()))
    rngs = [torch.Generator().manual_seed(row) for row in range(4)]
    drawn: list[set[int]] = [set() for _ in params]
    for _ in range(300):
        for row, token in enumerate(sample_next(logits.clone(), params, rngs).tolist()):
            drawn[row].add(token)
    assert drawn == allowed


def test_a_rows_draws_do_not_depend_on_the_other_rows() -> None:
    params = SamplingParams(temperature=1.0, top_k=3, top_p=1.0)
    alone_rng, beside_rngs = torch.Generator().manual_seed(5), [torch.Generator().manual_seed(5),
                                                                 torch.Generator().manual_seed(9)]
    other = SamplingParams(temperature=0.5, top_k=0, top_p=0.5)
    alone = [int(sample_next(LOGITS.clone(), [params], [alone_rng])[0]) for _ in range(30)]
    beside = [int(sample_next(LOGITS.repeat(2, 1), [params, other], beside_rngs)[0]) for _ in range(30)]
    assert beside == alone and len(set(alone)) > 1
