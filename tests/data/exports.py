"""Builders of small Telegram Desktop exports for the data tests."""

from __future__ import annotations

import json
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
