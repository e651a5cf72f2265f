"""The reserved-room KV cache gives the logits `transformers`' concatenating cache gives, step after step, and
two caches stacked into one batch give each row the logits it has alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers.cache_utils import DynamicCache

from sobesednik.inference.kv_cache import ReservedLayer, reserved_cache, stack_caches


def _decode(model, cache, prompt: torch.Tensor, steps: int, drop_row_at: int | None) -> list[torch.Tensor]:
    """Greedy decoding of a batch, a row leaving the batch at step `drop_row_at`; the logits of every step."""
    output = model(input_ids=prompt, cache=cache, use_cache=True)
    cache, logits, history = output.cache, output.logits[:, -1], []
    for step in range(steps):
        history.append(logits)
        if step == drop_row_at:
            keep = torch.arange(1, logits.shape[0])
            cache.batch_select_indices(keep)
            logits = logits[keep]
        output = model(input_ids=logits.argmax(-1, keepdim=True), cache=cache, use_cache=True)
        cache, logits = output.cache, output.logits[:, -1]
    return history


@pytest.mark.parametrize("headroom", [64, 3])  # 3: the room runs out and is re-reserved on the way
def test_reserved_cache_matches_the_dynamic_cache(tiny_model_dir: Path, headroom: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(ReservedLayer, "headroom", headroom)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt = torch.randint(10, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = _decode(model, DynamicCache(), prompt, steps=12, drop_row_at=5)
        got = _decode(model, reserved_cache(), prompt, steps=12, drop_row_at=5)
    for step, (want, have) in enumerate(zip(expected, got, strict=True)):
        torch.testing.assert_close(have, want, msg=lambda text, step=step: f"step {step}: {text}")


def test_layers_write_into_reserved_room_instead_of_reallocating(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    cache = reserved_cache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([[11, 12, 13]]), cache=cache, use_cache=True)
        before = cache.layers[0].keys.data_ptr()
        model(input_ids=torch.tensor([[14]]), cache=cache, use_cache=True)
    assert cache.layers[0].keys.data_ptr() == before
    assert cache.get_seq_length() == 4


def test_stacked_caches_give_each_row_its_own_logits(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    seeded = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, model.config.vocab_size, (1, length), generator=seeded) for length in (4, 11)]
    following = torch.tensor([[21], [22]])

    def prefilled(prompt: torch.Tensor):
        return model(input_ids=prompt, cache=reserved_cache(), use_cache=True).cache

    with torch.inference_mode():
        alone = [model(input_ids=following[i:i + 1], cache=prefilled(prompt), use_cache=True,
                       position_ids=torch.tensor([[prompt.shape[1]]])).logits[0, -1]
                 for i, prompt in enumerate(prompts)]
        # The short row is left-padded to the long one's length: its mask hides the padding.
        mask = torch.ones((2, 12), dtype=torch.long)
        mask[0, :7] = 0
        stacked = model(input_ids=following, cache=stack_caches(*(prefilled(prompt) for prompt in prompts)),
                        use_cache=True, attention_mask=mask, position_ids=torch.tensor([[4], [11]])).logits[:, -1]
    torch.testing.assert_close(stacked[0], alone[0])
    torch.testing.assert_close(stacked[1], alone[1])
