"""One owner of what a model dir carries: the written generation config is what the service samples with."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, GenerationConfig

from sobesednik.dialogue import CLOSING_TOKEN
from sobesednik.inference.sampling import SamplingParams
from sobesednik.modeling.chat_template import CHAT_TEMPLATE
from sobesednik.modeling.model_dir import sampling_defaults


def test_a_written_model_dir_samples_with_the_model_cards_settings(tiny_model_dir: Path):
    config = GenerationConfig.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert SamplingParams.from_generation_config(config) == SamplingParams()
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(CLOSING_TOKEN)
    assert config.pad_token_id == tokenizer.pad_token_id != tokenizer.eos_token_id


def test_what_a_generation_config_lacks_is_turned_off():
    defaults = sampling_defaults(GenerationConfig(do_sample=False, top_k=None, top_p=None,
                                                  repetition_penalty=None, no_repeat_ngram_size=None))
    assert defaults["temperature"] == 0.0
    assert (defaults["top_k"], defaults["top_p"], defaults["repetition_penalty"]) == (0, 1.0, 1.0)
    assert defaults["no_repeat_ngram_size"] == 0
    assert defaults["max_new_tokens"] == SamplingParams().max_new_tokens
