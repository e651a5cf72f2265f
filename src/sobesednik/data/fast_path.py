"""The fast path of `export`: every chat's `messages` array cut at message ends and decoded a chunk at a time.

    for chat, raws in fast_messages(read, wanted="", chat_of=lambda meta: chat_info):
        ...   # a chunk's messages at a time; raises NotFast on anything it cannot vouch for, and
              # telegram_export.py then re-reads with ijson

Layout-independent: indent 1 (Telegram Desktop), indent 4, one compact object per line and one minified line all
go through the same code. Two parsers share the work:

- everything outside the messages arrays (the chat's name and id, a full account's contacts and chat list) goes
  to an ijson push parser as if each array were `[]`; it is a few KB, and it is what tells a real `"messages": [`
  key of a chat object from the same bytes elsewhere, and what checks the file around the arrays;
- inside an array, the bytes between two messages look the same all through a file (`},\\n  {\\n   "id"` in
  Telegram's layout, `},{"id"` minified): learned from the first two messages, found with `bytes.rfind`, they
  give a cut after the last message end of each ~1 MB chunk, and msgspec decodes `"[" + chunk[:cut] + "]"` into
  `RawMessage`s (raw_message.py: only the fields prepare reads are built). A cut that lands inside a string or a
  nested object (a text that quotes JSON) leaves unbalanced brackets and fails to parse, so the cut before it is
  tried; when msgspec refuses a chunk, orjson parses it again to say why in terms this path reads: a parse that
  ends before the cut ("unexpected content after document") found the array's closing `]`. What is given is thus
  exactly what ijson gives, and anything else (a syntax error, a truncated file, an odd layout) raises `NotFast`.

Known difference: an integer beyond 64 bits, which ijson refuses ("integer overflow"), msgspec reads as an int
instead of failing the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from typing import Any

import ijson
import msgspec
import orjson

from sobesednik.data.json_events import Prefixer
from sobesednik.data.raw_message import RawMessage, decode_messages

# A `messages` key opening an array, anywhere; the skeleton parser says whether it is a key of a chat object.
_MESSAGES_KEY = re.compile(rb'"messages"\s*:\s*\[')
# The first message's opening brace and first key, with the whitespace between them (nested objects differ in it).
_FIRST_KEY = re.compile(rb'\s*\{(\s*)"([^"\\]{1,64})"')
_HOLD = 64  # bytes kept back at a chunk's end, so that a read never splits a `"messages": [` unseen
_TRIES = 4  # cuts tried per chunk before reading more: a wrong one needs a JSON-quoting text, so one is rare
# Bytes without a cut that parses, holding more than one message: not an export this path reads, leave it to ijson.
_MAX_PENDING = 64 << 20
_ARRAY_END = "unexpected content after document"  # orjson's message when the array closed before the cut
# What msgspec raises on bytes it cannot decode (invalid UTF-8 is a UnicodeDecodeError, deep nesting a RecursionError).
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class NotFast(Exception):
    """The fast path cannot vouch for what follows; ijson takes over."""


Read = Callable[[], bytes]  # the next chunk of the (fixed-up) export, b"" at the end
# Batches of one array, then the buffer and the position just after the array's closing `]`.
Position = Generator[tuple[Any, list[Any]], None, tuple[bytes, int]]


class _Skeleton:
    """The export outside its messages arrays, parsed by ijson as if each array were empty."""

    def __init__(self, wanted: str, chat_of: Callable[[dict[str, Any]], Any]) -> None:
        self._events = ijson.sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        self._prefixer = Prefixer()  # prefixes in linear memory, and a bound on nesting (json_events.py)
        self._wanted = wanted
        self._chat_of = chat_of
        self._meta: dict[str, Any] = {}
        self._meta_keys = {f"{wanted}.{key}" if wanted else key: key for key in ("name", "id", "type")}

    def feed(self, data: bytes, *, at_key: bool = False) -> tuple[bool, Any]:
        """Parse `data`; with `at_key` it ends where a `"messages": [` match has its `[`.

        Returns (whether that match is a real `messages` key, the chat when it is one of `wanted`'s, else None).
        """
        try:
            if data:  # an empty send means the end of the document to ijson
                self._parser.send(data)
        except ijson.JSONError:
            raise NotFast from None
        events = self._events
        last = len(events) - 1
        real, chat = False, None
        for index, (prefix, event, value) in enumerate(self._prefixer(*basic) for basic in events):
            if event == "map_key" and value == "messages":
                real = at_key and index == last
                if prefix == self._wanted:
                    if not real:
                        raise NotFast  # a chat's messages that ijson would read and this path did not cut
                    chat = self._chat_of(self._meta)
            elif prefix in self._meta_keys:
                self._meta[self._meta_keys[prefix]] = value
            elif prefix == self._wanted and event == "start_map":
                self._meta = {}
        del events[:]
        return real, chat

    def close(self) -> None:
        try:
            self._parser.close()
        except ijson.JSONError:
            raise NotFast from None


def fast_messages(read: Read, *, wanted: str, chat_of: Callable[[dict[str, Any]], Any],
                  objects_only: bool = False) -> Iterator[tuple[Any, list[Any]]]:
    """`(chat, items)` for the items of the `messages` arrays of objects at ijson prefix `wanted`, a parsed chunk
    at a time (a list per chunk rather than a pair per item: one generator step per message less).

    `chat_of` gets the `name`, `id` and `type` seen in that object before its messages and returns the chat
    to pair them with; `objects_only` leaves out items that are not objects (as the account reader does).
    """
    skeleton = _Skeleton(wanted, chat_of)
    # Positions into one buffer rather than slices of it: a full account has thousands of small chats per chunk.
    data, at = b"", 0
    while True:
        match = _MESSAGES_KEY.search(data, at)
        if match is None:
            chunk = read()
            if not chunk:
                break
            keep = max(at, len(data) - _HOLD)
            skeleton.feed(data[at:keep])
            data, at = data[keep:] + chunk, 0
            continue
        bracket = match.end() - 1
        real, chat = skeleton.feed(data[at:bracket], at_key=True)
        at = bracket
        if real:  # other arrays (a full account's left chats) are cut too, and their items dropped
            data, at = yield from _array(data, bracket + 1, read, chat, objects_only)
            skeleton.feed(b"[]")
    skeleton.feed(data[at:])
    skeleton.close()


def _separator(pending: bytes, start: int, limit: int) -> bytes:
    """The bytes from one message's `}` to the next one's first key; b"" while `pending` shows no such pair."""
    first = _FIRST_KEY.match(pending, start)
    if first is None:
        return b""
    between = re.compile(rb"\}\s*,\s*\{" + re.escape(first[1]) + b'"' + re.escape(first[2]) + b'"')
    for tries, match in enumerate(between.finditer(pending, start, limit)):
        if tries == _TRIES:
            break
        try:
            decode_messages(b"[" + pending[start : match.start() + 1] + b"]")
        except _DECODE_ERRORS:
            continue
        return match[0]
    return b""


def _array(pending: bytes, start: int, read: Read, chat: Any, objects_only: bool) -> Position:
    """Pairs of the array whose items start at `pending[start]`; returns the buffer and where its `]` ends."""
    separator = b""
    eof = False
    ignore_limit = False
    while True:
        key = None if ignore_limit else _MESSAGES_KEY.search(pending, start)
        # The array ends before the next chat's `messages`: no cut beyond it can be this array's.
        limit = key.start() if key else len(pending)
        separator = separator or _separator(pending, start, limit)
        cut = _last_cut(pending, start, separator, limit) if separator else None
        if cut is not None:
            items, after, at = cut
            yield from _batch(items, chat, objects_only)
            if after is not None:
                return pending, after
            start = at + separator.index(b",") + 1
            ignore_limit = False
            continue
        if key or eof:  # the rest of the array is before `limit`, or it is the whole rest of the file
            parsed = _parse(pending, start, limit, b"")
            if parsed is not None:
                items, after = parsed
                yield from _batch(items, chat, objects_only)
                return pending, limit if after is None else after
            if eof:
                raise NotFast  # truncated or broken: ijson says which, and where
            ignore_limit = True  # that `messages` was inside this array (a quoted text); look past it
        if len(pending) - start > _MAX_PENDING and _holds_two_messages(pending, start):
            raise NotFast
        pending, start, eof = _more(pending, start, read)


def _more(pending: bytes, start: int, read: Read) -> tuple[bytes, int, bool]:
    """The unparsed rest with at least as many bytes again read after it (or all there is), and whether the file
    ended. Doubling rather than a chunk at a time: a message of 100 MB is scanned a few times, not 100 times."""
    parts = [pending[start:]]
    wanted = len(parts[0])
    got = 0
    while True:
        chunk = read()
        if not chunk:
            return b"".join(parts), 0, True
        parts.append(chunk)
        got += len(chunk)
        if got >= wanted:
            return b"".join(parts), 0, False


def _holds_two_messages(pending: bytes, start: int) -> bool:
    """Whether a second message opens after the first in `pending[start:]`: many messages without a cut between
    them are a layout this path cannot cut, while one long message is only long (and read on: a 100 MB text
    sent to ijson cost it minutes, as yajl lexes a token spanning reads again from its start on every read).

    An unescaped `{"id"` can only be an object's start: inside a string the quote would be `\\"`.
    """
    first = _FIRST_KEY.match(pending, start)
    if first is None:
        return True
    opening = re.compile(rb'\{\s*"' + re.escape(first[2]) + b'"')
    return opening.search(pending, first.end()) is not None


def _last_cut(pending: bytes, start: int, separator: bytes, limit: int) -> tuple[list[Any], int | None, int] | None:
    """(items, what `_parse` says follows, where the separator is) of the last cut before `limit` that parses.

    None when none of the last `_TRIES` separators is a message end (each was in a string or a nested object).
    """
    at = pending.rfind(separator, start, limit)
    for _ in range(_TRIES):
        if at < 0:
            return None
        parsed = _parse(pending, start, at + 1, b"]")
        if parsed is not None:
            return parsed[0], parsed[1], at
        at = pending.rfind(separator, start, at + len(separator) - 1)  # the one before
    return None


def _parse(pending: bytes, start: int, cut: int, close: bytes) -> tuple[list[Any], int | None] | None:
    """Items of `[` + `pending[start:cut]` + `close` and None, or the items and the position after the array's `]`
    when it closed before `cut`; None when `cut` is not after a message; `NotFast` on an error in the middle."""
    document = b"[" + pending[start:cut] + close
    try:
        return decode_messages(document), None
    except _DECODE_ERRORS:
        pass
    try:
        orjson.loads(document)
    except orjson.JSONDecodeError as error:
        failure = error
    else:
        raise NotFast  # JSON that msgspec refuses (a number out of range): ijson decides
    try:
        text = document.decode()
        if failure.msg.startswith(_ARRAY_END):
            # orjson counts characters; the buffer's position needs bytes (less the `[` put in front).
            head = text[: text.rindex("]", 0, failure.pos) + 1].encode()
            return decode_messages(head), start + len(head) - 1
    except (*_DECODE_ERRORS, orjson.JSONDecodeError):
        raise NotFast from None
    if failure.pos < len(text) - 1:
        raise NotFast  # broken before the cut, not a cut inside a message
    return None


def _batch(items: list[Any], chat: Any, objects_only: bool) -> Iterator[tuple[Any, list[Any]]]:
    """`(chat, items)` unless the items are of no wanted chat or none is left."""
    if objects_only:
        items = [item for item in items if type(item) is RawMessage]
    return iter(((chat, items),) if chat is not None and items else ())
