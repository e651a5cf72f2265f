"""Packed prompts (one row of all a batch's prompt tokens) give what left-padded prompts give: the same first-token
logits, the same cache, the same greedy replies, on every architecture `tiny-model` builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sobesednik.inference.generator import Generator, Row, _Decoding, _rng
from sobesednik.inference.packing import PACKED_ATTENTION, use_packed_attention
from sobesednik.modeling.tiny import ARCHS

PROMPTS = [[11, 12, 13, 14, 15, 16, 17, 18, 19], [21, 22], [31, 32, 33, 34, 35], [41]]


def _rows(generator: Generator, max_new_tokens: int = 1) -> list[_Decoding]:
    params = generator.defaults.with_overrides(temperature=0, max_new_tokens=max_new_tokens,
                                               min_new_tokens=max_new_tokens)
    return [_Decoding(Row(prompt, params), _rng(0)) for prompt in PROMPTS]


@pytest.fixture(scope="module", params=ARCHS)
def arch_generator(request: pytest.FixtureRequest, tiny_arch_dirs: dict[str, Path]) -> Generator:
    return Generator.load(tiny_arch_dirs[request.param])


def test_every_tiny_architecture_packs_its_prompts(arch_generator: Generator) -> None:
    assert arch_generator.packs_prompts
    assert arch_generator.model.config._attn_implementation == PACKED_ATTENTION


def test_packed_prompts_give_the_padded_logits_and_cache(arch_generator: Generator) -> None:
    arch_generator.packs_prompts = False
    try:
        padded = arch_generator._prefill(_rows(arch_generator))
    finally:
        arch_generator.packs_prompts = True
    packed = arch_generator._prefill(_rows(arch_generator))
    torch.testing.assert_close(packed.logits, padded.logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(packed.mask, padded.mask) and torch.equal(packed.seen, padded.seen)
    assert torch.equal(packed.last_position, padded.last_position)
    for got, want in zip(packed.cache.layers, padded.cache.layers, strict=True):
        for i, prompt in enumerate(PROMPTS):  # each row's own tokens; the padding before them is never attended
            torch.testing.assert_close(got.keys[i, :, -len(prompt):], want.keys[i, :, -len(prompt):],
                                       rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(got.values[i, :, -len(prompt):], want.values[i, :, -len(prompt):],
                                       rtol=1e-4, atol=1e-4)
        assert got.keys.shape == want.keys.shape


def test_packed_prompts_decode_the_padded_replies(arch_generator: Generator) -> None:
    generator = arch_generator
    rows = [row.request for row in _rows(generator, max_new_tokens=12)]
    generator.packs_prompts = False
    try:
        padded = generator.generate(rows)
    finally:
        generator.packs_prompts = True
    assert generator.generate(rows) == padded


def test_a_model_off_the_sdpa_interface_keeps_padded_prompts(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert not use_packed_attention(model)
    assert model.config._attn_implementation == "eager"
    assert not Generator(model, Generator.load(tiny_model_dir).tokenizer).packs_prompts
