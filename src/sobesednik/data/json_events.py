"""ijson's `(prefix, event, value)` events built from its prefix-free `basic_parse`, with a bound on nesting.

    for prefix, event, value in parse(reader, use_float=True):
        ...   # the same events as ijson.parse; TooDeepError past MAX_DEPTH open arrays and objects

ijson's C `parse` keeps the prefix of every open level as a string, so its memory grows with the square of
the nesting depth: 40 KB of `[` took 1 GB, and a 2 MB file of them was killed at 23 GB. `basic_parse` holds
no prefixes; `Prefixer` rebuilds them in Python for at most `MAX_DEPTH` levels and refuses deeper input at
once, so every export is read in time and memory linear in its size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ijson

# A full-account export nests 8 levels at most (root → chats → list → chat → messages → message →
# text_entities → entity); no real export comes near 64, and 64 short prefixes cost nothing.
MAX_DEPTH = 64


class TooDeepError(ijson.JSONError):
    """JSON nested deeper than MAX_DEPTH levels (an ijson.JSONError, so every parser's error path catches it)."""


class Prefixer:
    """Turns `basic_parse` events into `parse` events, one at a time, keeping the open levels' prefixes."""

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._open: list[list[str]] = []  # per open array or object: [its prefix, the prefix of its next value]

    def __call__(self, event: str, value: Any) -> tuple[str, str, Any]:
        if event == "map_key":
            level = self._open[-1]
            level[1] = f"{level[0]}.{value}" if level[0] else value
            return level[0], event, value
        if event in ("end_map", "end_array"):
            return self._open.pop()[0], event, value
        prefix = self._open[-1][1] if self._open else ""
        if event in ("start_map", "start_array"):
            if len(self._open) >= self.max_depth:
                raise TooDeepError(f"JSON nested deeper than {self.max_depth} levels")
            item = (f"{prefix}.item" if prefix else "item") if event == "start_array" else ""
            self._open.append([prefix, item])
        return prefix, event, value


def parse(source: Any, **kwargs: Any) -> Iterator[tuple[str, str, Any]]:
    """`ijson.parse(source, **kwargs)` in linear memory, raising `TooDeepError` past MAX_DEPTH levels."""
    prefixer = Prefixer()
    for event, value in ijson.basic_parse(source, **kwargs):
        yield prefixer(event, value)
