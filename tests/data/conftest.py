"""Fixtures of the data tests: small exports written to a temp dir."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def make_export(tmp_path: Path) -> Callable[..., Path]:
    """`make_export(messages)` writes a single-chat export and returns its path."""
    counter = iter(range(1_000_000))

    def make(messages: list[dict[str, Any]], *, name: str = "Дача", chat_id: int = 42) -> Path:
        path = tmp_path / f"export{next(counter)}" / "result.json"
        path.parent.mkdir()
        export = {"name": name, "type": "private_group", "id": chat_id, "messages": messages}
        path.write_text(json.dumps(export, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    return make
