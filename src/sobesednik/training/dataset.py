"""`ConversationDataset`: prepared JSONL dialogues → token ids with labels on the reply only.

Each sample is rendered in the tokenizer's format (`modeling/formats.py`: the dialogue format, as
`dialogue.render()` + `dialogue.render_reply()` and the exported chat template render it, or the base's native
template), tokenized as one string, and truncated to `max_length` by dropping the oldest context turns. The
labels are -100 everywhere except on the reply's tokens and the token that closes it (`@@ПЕРВЫЙ@@`, or the
template's end-of-turn token): the loss teaches what to say and when to stop, never the context. A reply
that does not fit on its own is dropped and counted in `dropped_too_long`.

    dataset = ConversationDataset(read_jsonl(Path("data/train.jsonl")), tokenizer, max_length=256)  # dialogue.py
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.dialogue import Message, read_jsonl
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

