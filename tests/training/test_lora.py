"""LoRA targets from the base's own layout, a clear line for unknown ones, and added tokens on untied heads."""

from __future__ import annotations

from pathlib import Path

import pytest

from sobesednik.dialogue import USER_TOKEN, render
from sobesednik.errors import ConfigError
from sobesednik.modeling.load import load_base, load_run
from sobesednik.training.lora import LAYOUTS, save_adapter, target_modules, wrap_with_lora
from sobesednik.training.settings import TrainSettings
from tiny_training import train_briefly

MESSAGES = [{"role": "user", "content": "Кто едет на дачу?"}, {"role": "assistant", "content": "Я еду"},
            {"role": "user", "content": "Во сколько?"}]


@pytest.mark.parametrize(("arch", "layout"), [("gpt2", "GPT-2"), ("llama", "Llama"), ("qwen2", "Llama")])
def test_default_targets_follow_the_bases_layout(tiny_arch_dirs: dict[str, Path], arch: str, layout: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_arch_dirs[arch])
    assert target_modules(TrainSettings(), model) == list(dict(LAYOUTS)[layout])
    chosen = ["c_attn"] if layout == "GPT-2" else ["q_proj", "v_proj"]
    assert target_modules(TrainSettings(lora_target_modules=chosen), model) == chosen  # overridable


def test_unknown_layout_lists_the_linear_modules_and_the_flag():
    """A GPT-NeoX base (Pythia): neither layout; the line names its modules and how to pass them."""
    from transformers import AutoModelForCausalLM, GPTNeoXConfig

    model = AutoModelForCausalLM.from_config(GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                           num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ConfigError, match=r"\(gpt_neox\) has no known module layout .+ linear modules are "
                                          r"dense, dense_4h_to_h, dense_h_to_4h, query_key_value: pass the ones "
                                          r"to adapt with --lora-target-modules NAME"):
        target_modules(TrainSettings(), model)
    with pytest.raises(ConfigError, match=r"\['c_attn'\] are not linear modules of this model; .+query_key_value"):
        target_modules(TrainSettings(lora_target_modules=["c_attn"]), model)


def _logits(model, tokenizer, text: str):
    import torch

    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits


def test_untied_head_trains_the_added_tokens_rows_and_the_adapter_reproduces_them(
        tiny_arch_dirs: dict[str, Path], tmp_path: Path):
    """Llama's head is a matrix of its own: the closing token's output row must train, and travel with the adapter."""
    import torch
    from safetensors.torch import load_file

    model, tokenizer, added = load_base(str(tiny_arch_dirs["llama"]), format="dialogue")
    assert not model.config.tie_word_embeddings and tokenizer.convert_tokens_to_ids(USER_TOKEN) in added
    closing = tokenizer.convert_tokens_to_ids(USER_TOKEN)
    head_before = model.get_output_embeddings().weight[closing].detach().clone()
    embedding_before = model.get_input_embeddings().weight[closing].detach().clone()
    model = wrap_with_lora(model, TrainSettings(lora_dropout=0.0), added)
    text = render(MESSAGES, add_generation_prompt=False) + f" {USER_TOKEN}"
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    train_briefly(model, batch)
    trained = _logits(model, tokenizer, text)
    run_dir = tmp_path / "run"
    save_adapter(model, tokenizer, run_dir / "adapter")

    reloaded, _ = load_run(run_dir)
    torch.testing.assert_close(_logits(reloaded, tokenizer, text), trained, rtol=0, atol=0)
    merged = reloaded.merge_and_unload()
    assert not torch.equal(merged.get_output_embeddings().weight[closing], head_before)
    assert not torch.equal(merged.get_input_embeddings().weight[closing], embedding_before)
    # Only the added rows are stored, not the whole head or embedding.
    hidden, vocabulary = model.config.hidden_size, len(tokenizer)
    shapes = [tuple(t.shape) for t in load_file(run_dir / "adapter" / "adapter_model.safetensors").values()]
    assert (vocabulary, hidden) not in shapes and (len(added), hidden) in shapes
