"""The offline stand-in base model: a normal HF dir with role tokens, a pad token distinct from EOS."""

from __future__ import annotations

from pathlib import Path

from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN
from sobesednik.modeling.tiny import TinyModelConfig, build_tiny_model


def test_tiny_model_loads_like_a_hub_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    user_id = tokenizer.convert_tokens_to_ids(USER_TOKEN)
    assistant_id = tokenizer.convert_tokens_to_ids(ASSISTANT_TOKEN)
    assert tokenizer.eos_token_id == user_id == model.generation_config.eos_token_id
    assert tokenizer.pad_token_id not in (None, user_id, assistant_id)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.generation_config.top_k == 10


def test_role_tokens_are_single_tokens(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer(f"{USER_TOKEN} привет {ASSISTANT_TOKEN}")["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids(USER_TOKEN)
    assert ids[-1] == tokenizer.convert_tokens_to_ids(ASSISTANT_TOKEN)


def test_tiny_model_without_role_tokens_lacks_them(tmp_path: Path):
    from transformers import AutoTokenizer

    out = build_tiny_model(["привет как дела"] * 20, tmp_path, TinyModelConfig(with_role_tokens=False))
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert USER_TOKEN not in tokenizer.get_vocab()
    assert tokenizer.eos_token != tokenizer.pad_token
