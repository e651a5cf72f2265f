"""Exports → a stream of events for the dialogue builder; for big inputs the reading runs in a worker process.

    for event in read_events(streams, settings, quirks, parallel=True, on_bytes=None):
        kind = event[0]   # "chat" | "messages" | "skip" | "end"; then unpack: _, messages = event

Events: `("chat", ChatInfo, selected)` when a chat starts, `("messages", [Message, ...])` for a run of kept messages,
`("skip", reason, extra)` for a skipped one (`extra`: the topic id of a forum topic's opening message, or the
`reply_to_message_id` of a skipped forward, which ends a conversation), `("end", stream_index, sha256)` when a
file is read to its end.

Parsing and normalising (msgspec or ijson + `normalise_message`, and the reply filters' verdict on each text) take a
third of `prepare`'s CPU time, the dialogue builder and the writer the rest, so with `parallel=True` a forked worker
parses while the main process builds;
batches of events cross a pipe (pickled, ~15% extra CPU). That pays off when a second core is free; on a box
whose cores are already busy, or on one core, it does not (docs/benchmarks.md has both measurements), so
`prepare` asks for it only when a second usable core is idle (`prepare._PARALLEL_MIN_FREE_CORES`). The worker
holds only the parser's buffers; the kept text stays in the main process. Errors in the worker (a truncated
file) are sent over and raised in the main process, so the user sees the same one-line error.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Literal

from sobesednik.data.filters import reply_drop_reason
from sobesednik.data.settings import PrepareSettings
from sobesednik.data.telegram_export import ChatInfo, ExportStream, Message, kept_chars, normalise_message

_BATCH = 2048  # events per pipe message (a run of kept messages is one): pickling overhead per event stays small
# Plain tuples, unpacked by the consumer (`_, reason, extra = event`): a million of them cross the pipe, and a
# NamedTuple costs more to build and to pickle. The worker also sends ("bytes", n) and ("quirks", Counter).
ChatEvent = tuple[Literal["chat"], ChatInfo, bool]
MessageEvent = tuple[Literal["messages"], list[Message]]
SkipEvent = tuple[Literal["skip"], str, Any]
EndEvent = tuple[Literal["end"], int, str]
Event = ChatEvent | MessageEvent | SkipEvent | EndEvent


def _chat_selected(chat: ChatInfo, wanted: list[str]) -> bool:
    return not wanted or chat.name in wanted or str(chat.id) in wanted


def _events(streams: list[ExportStream], settings: PrepareSettings, quirks: Counter[str]) -> Iterator[Event]:
    # Plain keywords rather than `**options`: that built a dict per message.
    mask_pii, keep_forwarded, keep_via_bot = settings.mask_pii, settings.keep_forwarded, settings.keep_via_bot
    min_chars, max_chars = settings.min_chars, settings.max_chars
    keep = kept_chars(max_chars)
    for index, stream in enumerate(streams):
        current: ChatInfo | None = None
        selected = False
        last_date = 0
        for chat, raws in stream.batches():
            if chat is not current:
                current, selected = chat, _chat_selected(chat, settings.chat)
                yield ("chat", chat, selected)
            if not selected:
                for _ in raws:
                    yield ("skip", "chat_not_selected", None)
                continue
            # Kept messages go out in runs, one event per run up to the next skipped one: a generator step and
            # an event tuple per message cost more than the builder's own work on a short message.
            run: list[Message] = []
            for raw in raws:
                message = normalise_message(raw, quirks, mask_pii=mask_pii, keep_forwarded=keep_forwarded,
                                            keep_via_bot=keep_via_bot, last_date=last_date, keep=keep)
                if type(message) is str:
                    extra = None
                    if message == "service" and raw.action == "topic_created":
                        extra = raw.id
                    elif message in ("forwarded", "via_bot"):
                        extra = raw.reply_to_message_id
                    if run:
                        yield ("messages", run)
                        run = []
                    yield ("skip", message, extra)
                    continue
                last_date = message.date
                message.drop_reason = reply_drop_reason(message.text, min_chars=min_chars, max_chars=max_chars)
                run.append(message)
            if run:
                yield ("messages", run)
        yield ("end", index, stream.sha256)


def _worker(connection: Any, streams: list[ExportStream], settings: PrepareSettings) -> None:
    gc.disable()  # as in the main process (prepare._without_gc); this process ends when the stream does
    quirks: Counter[str] = Counter()
    batch: list[Event] = []
    for stream in streams:
        stream.on_bytes = lambda size: batch.append(("bytes", size))
    try:
        for event in _events(streams, settings, quirks):
            batch.append(event)
            if len(batch) >= _BATCH:
                connection.send(batch)
                batch.clear()
        batch.append(("quirks", dict(quirks)))
        connection.send(batch)
        connection.send(None)
    except Exception as error:
        connection.send(batch)
        connection.send(error)
    finally:
        connection.close()


def _parallel_events(streams: list[ExportStream], settings: PrepareSettings, quirks: Counter[str],
                     on_bytes: Callable[[int], None] | None) -> Iterator[Event]:
    context = multiprocessing.get_context("fork")  # the worker needs the open state, not a fresh interpreter
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_worker, args=(sender, streams, settings), name="prepare-reader", daemon=True)
    worker.start()
    sender.close()
    try:
        while True:
            try:
                item = receiver.recv()
            except EOFError:
                raise RuntimeError(f"the export reader process died (exit code {worker.exitcode})") from None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            for event in item:
                kind = event[0]
                if kind == "bytes":
                    if on_bytes is not None:
                        on_bytes(event[1])  # ("bytes", count read)
                elif kind == "quirks":
                    quirks.update(event[1])  # ("quirks", Counter)
                else:
                    yield event
    finally:
        receiver.close()
        if worker.is_alive():
            worker.kill()
        worker.join()


def read_events(streams: list[ExportStream], settings: PrepareSettings, quirks: Counter[str], *, parallel: bool,
                on_bytes: Callable[[int], None] | None) -> Iterator[Event]:
    """Events of every export in order; `quirks` counts odd data; `on_bytes` reports reading progress."""
    if parallel and "fork" in multiprocessing.get_all_start_methods():
        return _parallel_events(streams, settings, quirks, on_bytes)
    for stream in streams:
        stream.on_bytes = on_bytes
    return _events(streams, settings, quirks)
