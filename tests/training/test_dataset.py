"""`ConversationDataset`: the rendering, the reply-only labels, truncation and the JSONL contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sobesednik.dialogue import CLOSING_TOKEN, read_jsonl, render, render_reply
from sobesednik.errors import DatasetError
from sobesednik.modeling.load import load_tokenizer
from sobesednik.training.dataset import IGNORE_INDEX, ConversationDataset, tokenize_dialogue

DIALOGUE = [
    {"role": "user", "content": "Кто едет на дачу в субботу?"},
    {"role": "assistant", "content": "Я еду, возьму мангал"},
    {"role": "user", "content": "А шашлык кто купит?"},
    {"role": "assistant", "content": "Давай я, только скинь список 🙂"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return load_tokenizer(str(tiny_model_dir))[0]


def test_ids_equal_the_rendering_and_the_chat_template(tokenizer):
    sample = tokenize_dialogue(DIALOGUE, tokenizer, max_length=256)
    text = render(DIALOGUE[:-1], add_generation_prompt=True) + render_reply(DIALOGUE[-1]["content"])
    assert sample.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt = tokenizer.apply_chat_template(DIALOGUE[:-1], add_generation_prompt=True, tokenize=False)
    assert prompt == render(DIALOGUE[:-1], add_generation_prompt=True)


def test_labels_cover_exactly_the_reply_and_the_closing_token(tokenizer):
    sample = tokenize_dialogue(DIALOGUE, tokenizer, max_length=256)
    reply_ids = tokenizer(render_reply(DIALOGUE[-1]["content"]), add_special_tokens=False)["input_ids"]
    context_length = len(sample.input_ids) - len(reply_ids)
    assert sample.labels == [IGNORE_INDEX] * context_length + reply_ids
    assert sample.labels[-1] == tokenizer.convert_tokens_to_ids(CLOSING_TOKEN)
    labelled = [token for token in sample.labels if token != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == f" {DIALOGUE[-1]['content']} {CLOSING_TOKEN}"


def test_truncation_drops_the_oldest_turns_and_keeps_the_reply(tokenizer):
    full = tokenize_dialogue(DIALOGUE, tokenizer, max_length=256)
    first_turn = len(tokenizer(f"@@ПЕРВЫЙ@@ {DIALOGUE[0]['content']} ", add_special_tokens=False)["input_ids"])
    cut = tokenize_dialogue(DIALOGUE, tokenizer, max_length=len(full) - 1)
    assert cut.input_ids == full.input_ids[first_turn:]  # exactly the first turn went
    assert cut.labels == full.labels[first_turn:]
    text = tokenizer.decode(cut.input_ids)
    assert DIALOGUE[0]["content"] not in text and DIALOGUE[2]["content"] in text
    assert text.startswith("@@ВТОРОЙ@@")  # a whole turn, beginning with its role token


def test_reply_alone_too_long_is_dropped_and_counted(tokenizer):
    long_reply = [{"role": "user", "content": "ну?"}, {"role": "assistant", "content": "очень длинно " * 40}]
    dataset = ConversationDataset([DIALOGUE, long_reply, DIALOGUE], tokenizer, max_length=64)
    assert len(dataset) == 2
    assert dataset.dropped_too_long == 1
    assert all(len(sample) <= 64 for sample in dataset.samples)


def test_dataset_items_and_reply_token_count(tokenizer):
    dataset = ConversationDataset([DIALOGUE], tokenizer, max_length=256)
    item = dataset[0]
    assert set(item) == {"input_ids", "labels"}
    assert any(label != IGNORE_INDEX for label in item["labels"])
    assert dataset.lengths == [len(item["input_ids"])]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"meta": {}}), "non-empty 'messages'"),
        (json.dumps({"messages": [{"role": "bot", "content": "x"}]}), "role user\\|assistant"),
        (json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}),
         "last message must be the assistant"),
    ],
)
def test_bad_jsonl_names_file_line_and_problem(tmp_path: Path, line: str, problem: str):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": DIALOGUE}, ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"train.jsonl:2: .*{problem}"):
        read_jsonl(path)


def test_missing_and_empty_files_are_clear_errors(tmp_path: Path, tokenizer):
    with pytest.raises(DatasetError, match="does not exist: run `sobesednik prepare"):
        read_jsonl(tmp_path / "valid.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no samples"):
        read_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "long.jsonl").write_text(json.dumps({"messages": DIALOGUE}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="raise --max-length"):
        ConversationDataset.from_file(tmp_path / "long.jsonl", tokenizer, max_length=8)
