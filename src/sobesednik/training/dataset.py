"""`ConversationDataset`: prepared JSONL dialogues → token ids with labels on the reply only.

Each sample is rendered in the tokenizer's format (`modeling/formats.py`: the dialogue format, as
`dialogue.render()` + `dialogue.render_reply()` and the exported chat template render it, or the base's native
template), tokenized as one string, and truncated to `max_length` by dropping the oldest context turns. The
labels are -100 everywhere except on the reply's tokens and the token that closes it (`@@ПЕРВЫЙ@@`, or the
template's end-of-turn token): the loss teaches what to say and when to stop, never the context. A reply
that does not fit on its own is dropped and counted in `dropped_too_long`.

    dataset = ConversationDataset(read_jsonl(Path("data/train.jsonl")), tokenizer, max_length=256)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.dialogue import ROLE_TOKENS, Message
from sobesednik.errors import DatasetError
from sobesednik.modeling.formats import ChatFormat, chat_format

IGNORE_INDEX = -100  # label value that the cross-entropy loss skips


@dataclass(frozen=True)
class Sample:
    """One tokenized training sample."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def _check_messages(record: Any, where: str) -> list[dict[str, str]]:
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: expected an object with a non-empty 'messages' list; "
                           "regenerate the file with `sobesednik prepare`")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLE_TOKENS \
                or not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}: bad message {message!r}: each needs role user|assistant and a text content")
    if messages[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the last message must be the assistant's target reply, "
                           f"found role {messages[-1]['role']!r}")
    return messages


def read_jsonl(path: Path) -> list[list[dict[str, str]]]:
    """The `messages` of every line of a prepared JSONL file, checked against the contract."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: run `sobesednik prepare EXPORT --out {path.parent}` first")
    dialogues = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}:{number}: not JSON ({error.msg})") from None
            dialogues.append(_check_messages(record, f"{path}:{number}"))
    if not dialogues:
        raise DatasetError(f"{path} holds no samples: prepare more chat history or lower prepare's filters")
    return dialogues


def data_file(data_dir: Path, split: str) -> Path:
    """`DIR/<split>.jsonl` of a prepared dataset dir, with a clear error when it is not one."""
    if not data_dir.is_dir():
        raise DatasetError(f"dataset directory {data_dir} does not exist: "
                           f"run `sobesednik prepare EXPORT --out {data_dir}` first")
    return data_dir / f"{split}.jsonl"


def _encode(tokenizer: Any, prompt: str, reply: str) -> tuple[list[int], int]:
    """Token ids of `prompt + reply` tokenized as one string, and how many of them are the prompt's.

    One string, not two: tokenizers that mark the text's start (SentencePiece's `▁`) or merge across the seam
    would give other ids for the reply alone than for the reply after its prompt, and the model sees the latter.
    """
    encoded = tokenizer(prompt + reply, add_special_tokens=False, return_offsets_mapping=True)
    boundary = sum(start < len(prompt) for start, _ in encoded["offset_mapping"])
    return encoded["input_ids"], boundary


def tokenize_dialogue(messages: Sequence[Message], tokenizer: Any, max_length: int,
                      chat: ChatFormat | None = None) -> Sample | None:
    """Tokenize one dialogue, dropping the oldest context turns to fit; None when the reply alone is too long."""
    chat = chat or chat_format(tokenizer)
    *context, reply = messages
    # Chat templates refuse an empty conversation: the native format keeps at least the turn before the reply.
    shortest = 0 if chat.name == "dialogue" else 1
    if len(context) < shortest:
        return None
    for start in range(len(context) - shortest + 1):  # the turns right before the reply matter most: drop the oldest
        ids, boundary = _encode(tokenizer, *chat.texts(context[start:], reply["content"]))
        if len(ids) <= max_length:
            return Sample(ids, [IGNORE_INDEX] * boundary + ids[boundary:])
        if len(ids) - boundary >= max_length:  # the reply leaves no room even for the shortest prompt
            return None
    return None


class ConversationDataset:
    """A map-style torch Dataset of `Sample`s as dicts of `input_ids` and `labels` lists."""

    def __init__(self, dialogues: Iterable[Sequence[Message]], tokenizer: Any, max_length: int) -> None:
        self.samples: list[Sample] = []
        self.dropped_too_long = 0
        chat = chat_format(tokenizer)
        for messages in dialogues:
            sample = tokenize_dialogue(messages, tokenizer, max_length, chat)
            if sample is None:
                self.dropped_too_long += 1
            else:
                self.samples.append(sample)

    @classmethod
    def from_file(cls, path: Path, tokenizer: Any, max_length: int) -> ConversationDataset:
        dataset = cls(read_jsonl(path), tokenizer, max_length)
        if not dataset.samples:
            raise DatasetError(f"every sample of {path} has a reply longer than max_length={max_length} tokens: "
                               "raise --max-length")
        return dataset

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        sample = self.samples[index]
        return {"input_ids": sample.input_ids, "labels": sample.labels}

    @property
    def lengths(self) -> list[int]:
        return [len(sample) for sample in self.samples]

    @property
    def reply_tokens(self) -> int:
        """Tokens the loss counts (replies plus closing tokens)."""
        return sum(sum(label != IGNORE_INDEX for label in sample.labels) for sample in self.samples)
