"""`ConversationDataset`: prepared JSONL dialogues → token ids with labels on the reply only.

Each sample is rendered exactly as `dialogue.render()` + `dialogue.render_reply()` (so as the exported chat
template renders it), tokenized turn by turn, and truncated to `max_length` by dropping the oldest context
turns. The labels are -100 everywhere except on the reply's tokens and the closing `@@ПЕРВЫЙ@@` after it:
the loss teaches what to say and when to stop, never the context. A reply that does not fit on its own is
dropped and counted in `dropped_too_long`.

    dataset = ConversationDataset(read_jsonl(Path("data/train.jsonl")), tokenizer, max_length=256)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.dialogue import ASSISTANT_TOKEN, ROLE_TOKENS, Message, render_reply
from sobesednik.errors import DatasetError

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


def context_pieces(messages: Sequence[Message]) -> list[str]:
    """The prompt as rendered text pieces: one per context turn, then the generation prompt `@@ВТОРОЙ@@`.

    Their concatenation is `render(messages, add_generation_prompt=True)`; since role tokens are special
    tokens, tokenizing the pieces one by one gives the same ids as tokenizing the whole string.
    """
    return [f"{ROLE_TOKENS[m['role']]} {m['content']} " for m in messages] + [ASSISTANT_TOKEN]


def tokenize_dialogue(messages: Sequence[Message], tokenizer: Any, max_length: int) -> Sample | None:
    """Tokenize one dialogue, dropping the oldest context turns to fit; None when the reply alone is too long."""
    *context, reply = messages
    pieces = context_pieces(context)
    encoded = tokenizer([*pieces, render_reply(reply["content"])], add_special_tokens=False)["input_ids"]
    *turn_ids, prompt_ids, reply_ids = encoded
    budget = max_length - len(prompt_ids) - len(reply_ids)
    if budget < 0:
        return None
    kept: list[list[int]] = []
    for ids in reversed(turn_ids):  # newest first: the turns right before the reply matter most
        if len(ids) > budget:
            break
        kept.insert(0, ids)
        budget -= len(ids)
    context_ids = [token for ids in kept for token in ids] + prompt_ids
    return Sample(context_ids + reply_ids, [IGNORE_INDEX] * len(context_ids) + reply_ids)


class ConversationDataset:
    """A map-style torch Dataset of `Sample`s as dicts of `input_ids` and `labels` lists."""

    def __init__(self, dialogues: Iterable[Sequence[Message]], tokenizer: Any, max_length: int) -> None:
        self.samples: list[Sample] = []
        self.dropped_too_long = 0
        for messages in dialogues:
            sample = tokenize_dialogue(messages, tokenizer, max_length)
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
