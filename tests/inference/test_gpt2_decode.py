"""The GPT-2 decoding step without the module stack gives `transformers`' logits exactly with torch's attention, and
to float rounding on our attention kernel, on every serving path, with left padding and rows leaving the batch;
models it does not cover keep `transformers`' forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sobesednik.inference import attention_kernel
from sobesednik.inference.generator import Generator, Row
from sobesednik.inference.gpt2_decode import GPT2Decoder
from sobesednik.inference.kv_cache import reserved_cache

PROMPTS = [[11, 12, 13, 14, 15, 16, 17], [21, 22, 23], [31]]


def _decode(generator: Generator, steps: int, *, lean: bool) -> list[torch.Tensor]:
    """Greedy decoding of PROMPTS left-padded, the first row leaving after step 2; each step's logits."""
    model, width = generator.model, max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        output = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=reserved_cache(),
                       use_cache=True)
        cache, logits, history = output.cache, output.logits[:, -1], []
        position = positions[:, -1:]
        for step in range(steps):
            history.append(logits.float())
            if step == 2:
                keep = torch.arange(1, logits.shape[0])
                cache.batch_select_indices(keep)
                logits, mask, position = logits[keep], mask[keep], position[keep]
            token, position = logits.argmax(-1, keepdim=True), position + 1
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            if lean:
                logits = generator.decoder(token, position, mask, cache)
            else:
                logits = model(input_ids=token, attention_mask=mask, position_ids=position, cache=cache,
                               use_cache=True).logits[:, -1]
    return history


@pytest.mark.parametrize(("dtype", "quantize"), [("float32", "none"), ("float32", "int8"), ("bfloat16", "none")])
def test_the_decoder_gives_the_models_logits(tiny_model_dir: Path, dtype: str, quantize: str) -> None:
    generator = Generator.load(tiny_model_dir, dtype=dtype, quantize=quantize)
    assert generator.decoder is not None
    generator.decoder = GPT2Decoder(generator.model)  # torch's attention: the same ops as the model's forward
    for step, (lean, plain) in enumerate(zip(_decode(generator, 6, lean=True), _decode(generator, 6, lean=False),
                                             strict=True)):
        assert torch.equal(lean, plain), f"step {step}: {(lean - plain).abs().max()}"


@pytest.mark.parametrize(("dtype", "quantize", "tolerance"),
                         [("float32", "none", 1e-5), ("float32", "int8", 1e-5), ("bfloat16", "none", 0.05)])
def test_on_the_attention_kernel_the_logits_agree_to_rounding(tiny_model_dir: Path, dtype: str, quantize: str,
                                                              tolerance: float) -> None:
    if attention_kernel.load() is None:
        pytest.skip("no attention kernel here (needs an x86 CPU with AVX2 and a C compiler)")
    generator = Generator.load(tiny_model_dir, dtype=dtype, quantize=quantize)
    assert generator.decoder.attention is not None
    for step, (lean, plain) in enumerate(zip(_decode(generator, 6, lean=True), _decode(generator, 6, lean=False),
                                             strict=True)):
        torch.testing.assert_close(lean, plain, rtol=tolerance, atol=tolerance, msg=f"step {step}")
        assert torch.equal(lean.argmax(-1), plain.argmax(-1)), f"step {step}"


def test_the_generator_decodes_the_same_replies_without_it(tiny_model_dir: Path) -> None:
    generator = Generator.load(tiny_model_dir)
    params = generator.defaults.with_overrides(temperature=0, max_new_tokens=10, min_new_tokens=10)
    rows = [Row(prompt, params) for prompt in PROMPTS]
    lean = generator.generate(rows)
    generator.decoder = None
    assert generator.generate(rows) == lean


def test_other_models_keep_the_transformers_forward(tiny_model_dir: Path, tiny_arch_dirs: dict[str, Path]) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    assert GPT2Decoder.of(AutoModelForCausalLM.from_pretrained(tiny_arch_dirs["llama"])) is None
    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert GPT2Decoder.of(gpt2.train()) is None
    peft_model = get_peft_model(gpt2.eval(), LoraConfig(target_modules=["c_attn"], fan_in_fan_out=True))
    assert GPT2Decoder.of(peft_model) is None
