"""`ConversationDataset`: prepared JSONL dialogues → token ids with labels on the reply only.

Each sample is rendered exactly as `dialogue.render()` + `dialogue.render_reply()` (so as the exported chat
template renders it), tokenized turn by turn, and truncated to `max_length` by dropping the oldest context
turns. The labels are -100 everywhere except on the reply's tokens and the closing `@@ПЕРВЫЙ@@` after it:
the loss teaches what to say and when to stop, never the context. A reply that does not fit on its own is
dropped and counted in `dropped_too_long`.

    dataset = ConversationDataset(read_jsonl(Path("data/train.jsonl")), tokenizer, max_length=256)  # dialogue.py
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.dialogue import ASSISTANT_TOKEN, ROLE_TOKENS, Message, read_jsonl, render_reply
from sobesednik.errors import DatasetError

IGNORE_INDEX = -100  # label value that the cross-entropy loss skips


@dataclass(frozen=True)
class Sample:
    """One tokenized training sample."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


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

