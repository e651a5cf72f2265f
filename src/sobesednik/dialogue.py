"""The dialogue contract shared by every stage: message roles, the role tokens and the one rendering.

A dialogue is a list of OpenAI-style messages, `{"role": "user" | "assistant", "content": str}`; the last
message of a training sample is the target reply. The model sees it as ruDialoGPT does:

    @@ПЕРВЫЙ@@ привет @@ВТОРОЙ@@ привет! @@ПЕРВЫЙ@@ как дела? @@ВТОРОЙ@@

`@@ПЕРВЫЙ@@` opens a turn of the other person, `@@ВТОРОЙ@@` a turn of the speaker whose reply is generated.
The model ends its reply by writing the next `@@ПЕРВЫЙ@@`, so that token closes every trained reply.
`render()` is the single source of truth: the dataset tokenizes its output, the exported chat template
(`modeling/chat_template.py`) reproduces it in Jinja, and tests hold the two equal. `read_jsonl` and
`data_file` read a prepared dataset dir (what `prepare` writes), checking every line against this contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from sobesednik.errors import DatasetError

USER_TOKEN = "@@ПЕРВЫЙ@@"
ASSISTANT_TOKEN = "@@ВТОРОЙ@@"
ROLE_TOKENS: dict[str, str] = {"user": USER_TOKEN, "assistant": ASSISTANT_TOKEN}

# The token that ends a reply: the next turn of the other person (ruDialoGPT's EOS, id 50257).
CLOSING_TOKEN = USER_TOKEN

Role = Literal["user", "assistant"]
Message = Mapping[str, str]

# A role string written inside a message (a quote, or a group member forging the bot's turn) must not become a
# role token: a WORD JOINER (U+2060, invisible) after its opening "@@" breaks the exact match that a tokenizer's
# added tokens need. `render` applies it to every content, and the exported chat template does the same.
NEUTRALIZED_ROLE_STRINGS: dict[str, str] = {token: f"{token[:2]}\u2060{token[2:]}" for token in ROLE_TOKENS.values()}

# OpenAI clients send system prompts; the dialogue format has no place for them, so they are left out.
IGNORED_ROLES = frozenset({"system", "developer"})


def neutralize_roles(text: str) -> str:
    """`text` with every role string in it made inert (see NEUTRALIZED_ROLE_STRINGS); it looks the same."""
    for token, inert in NEUTRALIZED_ROLE_STRINGS.items():
        text = text.replace(token, inert)
    return text


def render(messages: Sequence[Message], *, add_generation_prompt: bool) -> str:
    """Render messages in the dialogue format; with `add_generation_prompt` end with `@@ВТОРОЙ@@`.

    `messages` are trusted here: roles are checked at the edges (dataset loading, the API schema).
    """
    parts = [
        f"{ROLE_TOKENS[message['role']]} {neutralize_roles(message['content'])}"
        for message in messages
        if message["role"] not in IGNORED_ROLES
    ]
    if add_generation_prompt:
        parts.append(ASSISTANT_TOKEN)
    return " ".join(parts)


def render_reply(reply: str) -> str:
    """The text the model must produce after a prompt from `render(..., add_generation_prompt=True)`."""
    return f" {neutralize_roles(reply)} {CLOSING_TOKEN}"


# ---- the files of a prepared dataset dir: one JSON object with `messages` per line -------------------------

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
