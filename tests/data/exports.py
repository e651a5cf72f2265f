"""Builders of small Telegram Desktop exports for the data tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

START = 1_709_276_400  # 2024-03-01 07:00 UTC


def msg(message_id: int, author: str | int | None, text: Any, *, minute: float | None = None,
        **extra: Any) -> dict[str, Any]:
    """A Telegram Desktop text message; `author` is a from_id ("user1"), an int (old exports) or None (deleted)."""
    date = START + int((message_id if minute is None else minute) * 60)
    message: dict[str, Any] = {"id": message_id, "type": "message", "date": "2024-03-01T10:00:00",
                               "date_unixtime": str(date), "from": None if author is None else f"Имя {author}",
                               "from_id": "user999" if author is None else author, "text": text}
    message.update(extra)
    return message


def service(message_id: int, action: str = "pin_message", **extra: Any) -> dict[str, Any]:
    return {"id": message_id, "type": "service", "date": "2024-03-01T10:00:00",
            "date_unixtime": str(START + message_id * 60), "actor": "Имя", "action": action, "text": "", **extra}


def account(*chats: dict[str, Any]) -> dict[str, Any]:
    """A full-account export holding `chats`, with the parts of one that are not chats."""
    return {"about": "x", "personal_information": {"first_name": "Я", "bio": '"messages": ['},
            "contacts": {"about": "y", "list": [{"first_name": "Иван", "phone_number": "+7"}]},
            "chats": {"about": "z", "list": list(chats)}, "left_chats": {"about": "w", "list": []}}


def _lines(chat: dict[str, Any]) -> bytes:
    """One compact message object per line, as tools that filter or re-save an export write it."""
    head = json.dumps({key: value for key, value in chat.items() if key != "messages"}, ensure_ascii=False)
    lines = ",\n".join(json.dumps(message, ensure_ascii=False) for message in chat["messages"])
    return f'{head[:-1]}, "messages": [\n{lines}\n]}}\n'.encode()


def _indent(width: int) -> Callable[[dict[str, Any]], bytes]:
    return lambda export: json.dumps(export, ensure_ascii=False, indent=width).encode()


# A single-chat export as bytes in each layout the reader must take alike ("telegram": Telegram Desktop's own).
LAYOUTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "telegram": _indent(1),
    "indent 2": _indent(2),
    "indent 4": _indent(4),
    "lines": _lines,
    "minified": lambda export: json.dumps(export, ensure_ascii=False, separators=(",", ":")).encode(),
    "account": lambda chat: _indent(1)(account(chat)),
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_samples(out: Path) -> list[dict[str, Any]]:
    return [row for split in ("train", "valid", "test") for row in read_jsonl(out / f"{split}.jsonl")]


def run_prepare(exports: Path | list[Path], out: Path, **options: Any) -> dict[str, Any]:
    """`prepare()` with `options` over the defaults; returns the stats."""
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings

    paths = exports if isinstance(exports, list) else [exports]
    return prepare(PrepareSettings(exports=paths, out=out, **{"progress": False, **options})).stats
