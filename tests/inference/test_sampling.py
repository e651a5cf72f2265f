"""Per-row logits processing: top-k / top-p keep the right candidates, penalties and n-gram bans hit the right ids."""

from __future__ import annotations

import torch

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


def test_repetition_penalty_and_ngram_ban() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 1.0]])
    apply_repetition_penalty(logits, [torch.tensor([0, 1])], [2.0])
    assert logits.tolist() == [[1.0, -4.0, 1.0, 1.0]]
    ban_repeated_ngrams(logits, [[2, 3, 2]], [2])  # "2 3" seen before, so after "2" the token 3 is banned
    assert logits[0, 3] == float("-inf") and logits[0, 2] == 1.0


def test_exempt_tokens_keep_their_scores_under_both_penalties() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 1.0]])
    apply_repetition_penalty(logits, [torch.tensor([0, 1, 3])], [2.0], exempt=[3])
    assert logits.tolist() == [[1.0, -4.0, 1.0, 1.0]]
    # "2 3" and "2 1" seen before: after "2", 1 is banned but the exempt 3 (a stop id) is not
    ban_repeated_ngrams(logits, [[2, 3, 2, 1, 2]], [2], exempt=[3])
    assert logits[0, 1] == float("-inf") and logits[0, 3] == 1.0
