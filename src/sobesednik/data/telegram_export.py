"""Read a Telegram Desktop JSON export as a stream of `(ChatInfo, RawMessage)` pairs, and normalise messages.

    for chat, raw in ExportStream(Path("result.json")):   # or `.batches()`: (chat, a parsed chunk's raws)
        message = normalise_message(raw, counters, mask_pii=False, ...)

Two layouts exist: a single-chat export (`{"name", "type", "id", "messages": [...]}`) and a full-account
export (`{"chats": {"list": [{"name", "id", "messages": [...]}, ...]}, ...}`). Both are read as a stream, so
memory does not grow with the file, by `fast_path.fast_messages` in any whitespace layout: each ~1 MB chunk of
a messages array is cut after its last message and decoded by msgspec into `raw_message.RawMessage`s (the
fields prepare reads, nothing else: a quarter of ijson's time). When that path cannot vouch for the input (a
parse error, a truncated file, an odd layout) ijson's C backend (yajl2_c) re-reads the file, skips the messages
already given and raises its usual error: a single chat through `ijson.items` entirely in C, a full account
through parse events, because its messages must be told apart by chat; its dicts become the same `RawMessage`s.
Telegram Desktop writes control characters as `\\xNN`, which JSON forbids; `_ExportReader` rewrites them to
`\\u00NN` at the byte level before either parser sees them, and drops a UTF-8 byte-order mark.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import ijson
import msgspec
from ijson.common import ObjectBuilder

from sobesednik.data import json_events
from sobesednik.data.fast_path import NotFast, fast_messages
from sobesednik.data.filters import UNCHECKED
from sobesednik.data.privacy import ENTITY_PLACEHOLDERS, mask_text
from sobesednik.data.raw_message import UNSET, RawMessage, has_media, raw_item
from sobesednik.errors import ExportFormatError

_CHUNK = 1 << 20  # bytes per read: big enough that per-chunk Python work is negligible
_BOM = b"\xef\xbb\xbf"
# An even run of backslashes is literal; an odd one followed by x and two hex digits is Telegram's `\xNN`.
_X_ESCAPE = re.compile(rb"(\\\\)|\\x([0-9a-fA-F]{2})")
_HELP = "export the chat again in Telegram Desktop: ⋯ → Export chat history → Format: Machine-readable JSON"
# What `str.splitlines` breaks lines at, and what `str.split` splits words at (the same `isspace` set as `\s`).
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_WORD_RUN = re.compile(r"\S+")


class ChatInfo(NamedTuple):
    """The chat a message belongs to."""

    id: int | str
    name: str
    type: str


class Message(msgspec.Struct, gc=False):  # a Struct: built per message, at a fifth of a NamedTuple's cost
    """A normalised message that passed the skip rules: what the dialogue builder needs, no more."""

    id: int
    author: str  # "user123", "channel5", "deleted" (from: null), "name:<from>" when there is no from_id
    name: str  # display name at the time of the message ("" when unknown)
    date: int  # unix seconds
    text: str
    reply_to: int  # 0 when the message is not a reply
    # Why `text` cannot be a sample's reply (`filters.reply_drop_reason`), None when it can: checked where the export
    # is read, which is the forked reader process on an idle second core (`events.py`), not the builder's.
    drop_reason: str | None = UNCHECKED


def _fix_escapes(match: re.Match[bytes]) -> bytes:
    return match.group(1) or b"\\u00" + match.group(2)


class _ExportReader:
    """A binary file wrapper for ijson: drops a BOM, rewrites `\\xNN`, hashes the raw bytes, reports progress."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        self._file = path.open("rb")
        self._eof = False
        self._on_bytes = on_bytes
        head = self._file.read(len(_BOM))
        self.sha256 = hashlib.sha256(head)
        self.bytes_read = len(head)
        self.head_size = len(head)  # read here, before `on_bytes` is called for anything
        # The tail of the last chunk that may hold half of an escape sequence; a BOM is dropped here.
        self._pending = b"" if head == _BOM else head

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        while True:
            chunk = self._file.read(max(size, _CHUNK))
            if chunk:
                self.sha256.update(chunk)
                self.bytes_read += len(chunk)
                if self._on_bytes is not None:
                    self._on_bytes(len(chunk))
            else:
                self._eof = True
            data = self._pending + chunk
            self._pending = b""
            if not self._eof:
                # Hold back a trailing backslash run and what follows it, so `\x0` + `b` is never split.
                cut = data.rfind(b"\\", max(0, len(data) - 4))
                if cut >= 0:
                    while cut > 0 and data[cut - 1] == 0x5C:
                        cut -= 1
                    data, self._pending = data[:cut], data[cut:]
            if b"\\x" in data:
                data = _X_ESCAPE.sub(_fix_escapes, data)
            if data or self._eof:
                return data

    def drain(self) -> None:
        """Read to the end so that `sha256` covers the whole file."""
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        self._file.close()


def check_export_path(path: Path) -> None:
    """Refuse what cannot be an export before parsing: missing paths, directories, empty files."""
    if not path.exists():
        raise ExportFormatError(f"{path}: no such file; give the path to the export's result.json")
    if path.is_dir():
        hint = " (it holds a result.json: pass that file)" if (path / "result.json").is_file() else ""
        raise ExportFormatError(f"{path} is a directory{hint}; give the path to the export's result.json")
    if path.stat().st_size == 0:
        raise ExportFormatError(f"{path} is empty; {_HELP}")


def _parse_error(path: Path, error: Exception, reader: _ExportReader) -> ExportFormatError:
    text = str(error.args[0] if error.args else error)
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", "replace")
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    if isinstance(error, json_events.TooDeepError):
        return ExportFormatError(f"{path} nests arrays or objects deeper than {json_events.MAX_DEPTH} levels "
                                 f"(near byte {reader.bytes_read}), and an export nests a few: {_HELP}")
    if "premature EOF" in text or "Incomplete" in text:
        return ExportFormatError(f"{path} is truncated (the JSON ends early, near byte {reader.bytes_read}); "
                                 f"the export or the copy was interrupted: {_HELP}")
    if reader.bytes_read <= _CHUNK and ("invalid char" in text or "<" in text[:200]):
        return ExportFormatError(f"{path} is not JSON (an HTML export?): {first_line}; {_HELP}")
    return ExportFormatError(f"{path} is not valid JSON near byte {reader.bytes_read}: {first_line}; {_HELP}")


def _detect_layout(path: Path) -> tuple[str, ChatInfo]:
    """("chat" | "account", the single chat's info) from the keys before the first `messages` or `chats`."""
    reader = _ExportReader(path)
    meta: dict[str, Any] = {}
    try:
        for prefix, event, value in json_events.parse(reader, use_float=True):
            if prefix == "" and event in ("start_array", "string", "number", "boolean", "null"):
                break  # the top level is not an object
            if prefix == "" and event == "map_key" and value in ("messages", "chats"):
                layout = "chat" if value == "messages" else "account"
                name = str(meta.get("name") or path.stem)
                return layout, ChatInfo(meta.get("id", 0), name, str(meta.get("type", "")))
            if prefix in ("name", "id", "type") and event in ("string", "number"):
                meta[prefix] = value
    except ijson.JSONError as error:
        raise _parse_error(path, error, reader) from None
    finally:
        reader.close()
    raise ExportFormatError(f"{path} is JSON but holds no messages (neither a 'messages' list nor 'chats'); "
                            f"is it a Telegram Desktop export? {_HELP}")


def _account_chat(meta: dict[str, Any]) -> ChatInfo:
    """A full account's chat from the `name`, `id` and `type` seen before its `messages`."""
    return ChatInfo(meta.get("id", 0), str(meta.get("name") or "chat"), str(meta.get("type", "")))


def _account_messages(reader: _ExportReader) -> Iterator[tuple[ChatInfo, RawMessage]]:
    """Messages of `chats.list[*]`, built from parse events (the fallback of the fast path for this layout)."""
    item_prefix = "chats.list.item.messages.item"
    meta: dict[str, Any] = {}
    chat = ChatInfo(0, "", "")
    builder: ObjectBuilder | None = None
    for prefix, event, value in json_events.parse(reader, use_float=True, buf_size=_CHUNK):
        if builder is not None:
            builder.event(event, value)
            if prefix == item_prefix and event == "end_map":
                yield chat, raw_item(builder.value)
                builder = None
        elif prefix == item_prefix and event == "start_map":
            builder = ObjectBuilder()
            builder.event(event, value)
        elif prefix == "chats.list.item" and event == "start_map":
            meta = {}
        elif prefix in ("chats.list.item.name", "chats.list.item.id", "chats.list.item.type"):
            meta[prefix.rsplit(".", 1)[1]] = value
        elif prefix == "chats.list.item.messages" and event == "start_array":
            chat = _account_chat(meta)


class ExportStream:
    """Every raw message of an export with its chat, as `(ChatInfo, RawMessage)` (or the plain value of an item that
    is not an object); `sha256` is set once it is read."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        check_export_path(path)
        self.path = path
        self.layout, self._chat = _detect_layout(path)
        self.on_bytes = on_bytes  # progress callback, called with each chunk's size
        self.sha256 = ""

    def __iter__(self) -> Iterator[tuple[ChatInfo, Any]]:
        for chat, raws in self.batches():
            for raw in raws:
                yield chat, raw

    def batches(self) -> Iterator[tuple[ChatInfo, list[Any]]]:
        """The same messages as `(chat, raws)`, a list of one chat's messages at a time (a parsed chunk)."""
        reader = _ExportReader(self.path, self.on_bytes)
        given, chat = 0, self._chat
        try:
            try:
                for chat, raws in self._fast(reader):
                    given += len(raws)
                    yield chat, raws
            except NotFast:
                reader.close()
                reader = _ExportReader(self.path, _after(reader.bytes_read - reader.head_size, self.on_bytes))
                for resumed, raw in _resume(self._ijson(reader), given, chat):
                    yield resumed, [raw]
            reader.drain()
        except ijson.JSONError as error:
            raise _parse_error(self.path, error, reader) from None
        finally:
            reader.close()
        self.sha256 = reader.sha256.hexdigest()

    def _fast(self, reader: _ExportReader) -> Iterator[tuple[ChatInfo, list[Any]]]:
        read = lambda: reader.read(_CHUNK)  # noqa: E731  (reads `_CHUNK` when called: tests shrink it)
        if self.layout == "chat":
            return fast_messages(read, wanted="", chat_of=lambda meta: self._chat)
        return fast_messages(read, wanted="chats.list.item", chat_of=_account_chat, objects_only=True)

    def _ijson(self, reader: _ExportReader) -> Iterator[tuple[ChatInfo, Any]]:
        if self.layout == "chat":
            events = json_events.parse(reader, use_float=True, buf_size=_CHUNK)
            items = ijson.items(events, "messages.item")
            return ((self._chat, raw_item(raw)) for raw in items)
        return _account_messages(reader)


def _resume(pairs: Iterator[tuple[ChatInfo, Any]], given: int, chat: ChatInfo) -> Iterator[tuple[ChatInfo, Any]]:
    """`pairs` after the first `given`, the chat in progress kept as the same object (a new one starts a chat)."""
    last = deque(itertools.islice(pairs, given), maxlen=1)
    skipped = last[0][0] if last else None
    for current, raw in pairs:
        yield (chat if current is skipped else current), raw


def _after(reported: int, on_bytes: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """A progress callback for a second read of a file that reports only bytes past the `reported` ones."""
    if on_bytes is None:
        return None
    seen = 0

    def report(size: int) -> None:
        nonlocal seen
        new = max(0, seen + size - max(seen, reported))
        seen += size
        if new:
            on_bytes(new)

    return report


def kept_chars(max_chars: int) -> int:
    """How much of a text `prepare` keeps, in characters after normalising: the cut made while reading.

    A text over `max_chars` is never written (a reply is dropped, a context turn ends the context), so only
    its being too long matters, and its first characters say so: one 100 MB message cost 2 GB (`str.split`
    makes an object per word) before the cut. The margin keeps it too long after `--mask-pii` shrinks what is
    kept (an e-mail becomes `<EMAIL>`: a fifth of a long one at most): 8× plus 4 KB.
    """
    return 8 * max_chars + 4096


def _normalised_head(text: str, keep: int) -> str:
    """`normalise_whitespace(text)[:keep]` in memory and time for `keep` characters, not for all of `text`."""
    # The whole text's normalising splits on `\n`/`\r` only when it holds one; `splitlines` then breaks on these.
    breaks = _LINE_BREAKS if "\n" in text or "\r" in text else None
    parts: list[str] = []
    length = end = 0
    for word in _WORD_RUN.finditer(text):
        if parts:
            parts.append("\n" if breaks is not None and breaks.search(text, end, word.start()) else " ")
            length += 1
        start = word.start()
        parts.append(text[start : min(word.end(), start + keep - length)])
        length += len(parts[-1])
        end = word.end()
        if length >= keep:
            break
    return "".join(parts)


def normalise_whitespace(text: str, keep: int | None = None) -> str:
    """Runs of spaces become one space, blank lines go, each line is stripped; with `keep`, the first `keep`
    characters of that (`kept_chars`)."""
    if keep is not None and len(text) > keep:
        return _normalised_head(text, keep)
    if "\n" in text or "\r" in text:
        lines = (" ".join(line.split()) for line in text.splitlines())
        return "\n".join(line for line in lines if line)
    return " ".join(text.split())


def visible_text(text: Any, counters: Counter[str], *, mask_pii: bool, keep: int | None = None) -> str:
    """The text a reader sees: a string, or a list of strings and entities `{"type", "text"}` joined; its first
    `keep` characters (`kept_chars`) when `keep` is given."""
    if type(text) is str:
        joined = text
    elif type(text) is list:
        parts = []
        for part in text:
            if type(part) is str:
                parts.append(part)
            elif type(part) is dict and type(part.get("text")) is str:
                placeholder = ENTITY_PLACEHOLDERS.get(part.get("type", "")) if mask_pii else None
                parts.append(placeholder or part["text"])
        joined = "".join(parts)
    else:
        counters["text_not_string_or_list"] += 1
        joined = ""
    joined = normalise_whitespace(joined, keep)
    return mask_text(joined) if mask_pii and joined else joined


def _author(raw: RawMessage, counters: Counter[str]) -> str:
    if raw.from_ is None:
        return "deleted"  # deleted accounts: one unknown author
    from_id = raw.from_id
    if type(from_id) is str:
        return from_id
    if type(from_id) is int:
        counters["integer_from_id"] += 1  # older exports
        return f"user{from_id}"
    name = raw.from_
    return f"name:{name}" if isinstance(name, str) else "unknown"


def _date(raw: RawMessage, counters: Counter[str]) -> int | None:
    try:
        return int(raw.date_unixtime)
    except (TypeError, ValueError):
        pass
    try:
        return int(datetime.fromisoformat(raw.date).timestamp())
    except (TypeError, ValueError):
        counters["message_without_date"] += 1
        return None


def normalise_message(
    raw: Any, counters: Counter[str], *, mask_pii: bool, keep_forwarded: bool, keep_via_bot: bool, last_date: int,
    keep: int | None = None,
) -> Message | str:
    """A `Message`, or the name of the reason it is skipped ("service", "media_only", "forwarded", ...).

    With `keep` (`kept_chars`) the text is cut to that many characters as it is read.
    """
    if type(raw) is not RawMessage:
        return "not_a_message_object"
    if raw.type != "message":
        return "service"
    message_id = raw.id
    if type(message_id) is not int:
        return "message_without_id"
    if not keep_forwarded and raw.forwarded_from is not UNSET:
        return "forwarded"
    if not keep_via_bot and raw.via_bot is not UNSET:
        return "via_bot"
    # Fast paths for the common shapes (a plain one-line string, a string from_id, a unix time string): this
    # runs for every message of a 1 GB export.
    text = raw.text
    if type(text) is str and not mask_pii and (keep is None or len(text) <= keep) and text.isprintable():
        # Its only whitespace is " " (every other whitespace character is unprintable), so it is one line, and
        # normalised already unless a space doubles, leads or trails: these tests cost half of a split and join.
        if "  " in text or text[:1] == " " or text[-1:] == " ":
            text = " ".join(text.split())
    else:
        text = visible_text(text, counters, mask_pii=mask_pii, keep=keep)
    if not text:
        return "media_only" if has_media(raw) else "empty_text"
    name = raw.from_
    from_id = raw.from_id
    author = from_id if type(from_id) is str and name is not None else _author(raw, counters)
    unixtime = raw.date_unixtime
    date = int(unixtime) if type(unixtime) is str and unixtime.isdigit() else _date(raw, counters)
    reply_to = raw.reply_to_message_id
    return Message(
        message_id,
        author,
        name if type(name) is str else "",
        last_date if date is None else date,
        text,
        reply_to if type(reply_to) is int else 0,
    )
