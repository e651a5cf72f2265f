"""Both formats on every tiny architecture: sample ids equal the whole string's, labels on the reply and its closer."""

from __future__ import annotations

from pathlib import Path

import pytest

from sobesednik.dialogue import ASSISTANT_TOKEN, USER_TOKEN
from sobesednik.errors import ConfigError
from sobesednik.modeling.formats import chat_format
from sobesednik.modeling.load import load_tokenizer
from sobesednik.training.dataset import IGNORE_INDEX, tokenize_dialogue

DIALOGUE = [
    {"role": "user", "content": "Кто едет на дачу в субботу?"},
    {"role": "assistant", "content": "Я еду, возьму мангал"},
    {"role": "user", "content": "А шашлык кто купит?"},
    {"role": "assistant", "content": "Давай я, только скинь список 🙂 ok"},  # emoji and Latin: byte pieces in llama
]
CASES = [("gpt2", "dialogue"), ("llama", "dialogue"), ("llama", "native"), ("qwen2", "dialogue"), ("qwen2", "native")]


@pytest.mark.parametrize(("arch", "format"), CASES)
def test_sample_is_the_whole_string_tokenized_with_labels_on_the_reply(tiny_arch_dirs: dict[str, Path], arch: str,
                                                                       format: str):
    tokenizer, _ = load_tokenizer(str(tiny_arch_dirs[arch]), format)
    chat = chat_format(tokenizer)
    assert chat.name == format
    prompt, reply = chat.texts(DIALOGUE[:-1], DIALOGUE[-1]["content"])
    sample = tokenize_dialogue(DIALOGUE, tokenizer, max_length=256)
    assert sample.input_ids == tokenizer(prompt + reply, add_special_tokens=False)["input_ids"]
    # The prompt the service encodes on its own is exactly the sample's unlabelled prefix.
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert sample.input_ids[: len(prompt_ids)] == prompt_ids
    assert sample.labels == [IGNORE_INDEX] * len(prompt_ids) + sample.input_ids[len(prompt_ids):]
    labelled = sample.input_ids[len(prompt_ids):]
    assert labelled[-1] == tokenizer.convert_tokens_to_ids(chat.end_of_turn) == tokenizer.eos_token_id
    assert tokenizer.decode(labelled, skip_special_tokens=True).strip() == DIALOGUE[-1]["content"]
    assert tokenizer.apply_chat_template(DIALOGUE[:-1], add_generation_prompt=True, tokenize=False) == prompt


def test_native_formats_close_replies_with_the_templates_end_of_turn(tiny_arch_dirs: dict[str, Path]):
    assert chat_format(load_tokenizer(str(tiny_arch_dirs["qwen2"]), "native")[0]).end_of_turn == "<|im_end|>"
    assert chat_format(load_tokenizer(str(tiny_arch_dirs["llama"]), "native")[0]).end_of_turn == "<|eot_id|>"


@pytest.mark.parametrize(("arch", "format"), CASES)
def test_markers_inside_content_never_become_tokens(tiny_arch_dirs: dict[str, Path], arch: str, format: str):
    tokenizer, _ = load_tokenizer(str(tiny_arch_dirs[arch]), format)
    chat = chat_format(tokenizer)
    forged = " ".join([*chat.markers, USER_TOKEN, ASSISTANT_TOKEN])
    dirty = [{"role": "user", "content": f"смотри {forged}"}, {"role": "assistant", "content": f"ну {forged}"}]
    clean = [{"role": "user", "content": "смотри"}, {"role": "assistant", "content": "ну"}]
    specials = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(m) for m in chat.markers}

    def special_ids(messages: list[dict[str, str]]) -> list[int]:
        ids = tokenize_dialogue(messages, tokenizer, max_length=256).input_ids
        return [token for token in ids if token in specials]

    assert special_ids(dirty) == special_ids(clean)


def test_native_format_needs_a_base_with_its_own_template(tiny_arch_dirs: dict[str, Path]):
    with pytest.raises(ConfigError, match=r"ships its own chat template.+drop --format native"):
        load_tokenizer(str(tiny_arch_dirs["gpt2"]), "native")
