"""Delivering a reply while the model writes it: a growing draft in private chats, an edited message in groups.

    surface = DraftSurface(bot, message, store, gate, interval=0.4) if private else EditSurface(...)
    last = await stream_reply(client.stream_chat(messages), surface)
    await surface.finish(last)

Intermediate views (drafts, edits) are best effort: a 429 `retry_after` pauses them until then, an edit that
would not change the text is skipped, and a draft error switches the chat (or, for a server that lacks
`sendMessageDraft`, every chat) to complete replies for a while, logged once. Only `finish` really sends: each
finished part of at most 4096 characters becomes one message, stored in the history once, whichever way it came.
All text is plain (no parse mode), so model output can never fail with "can't parse entities".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.methods import SendMessageDraft
from aiogram.types import Message

from sobesednik.bot import texts
from sobesednik.bot.history import HistoryStore, StoredMessage
from sobesednik.errors import ServiceError

logger = logging.getLogger(__name__)
TELEGRAM_MESSAGE_LIMIT = 4096  # characters per message, Bot API sendMessage (and sendMessageDraft)
# Seconds a draft or an intermediate edit may take: a server that hangs on one must not hold the reply back.
BEST_EFFORT_TIMEOUT = 5

# Set around a best-effort call: the flood-control middleware then raises the 429 instead of sleeping on it.
_BEST_EFFORT: ContextVar[bool] = ContextVar("sobesednik_best_effort", default=False)


@contextmanager
def best_effort() -> Iterator[None]:
    """Bot API calls inside are not retried on 429: a stale draft is worth nothing after the wait."""
    token = _BEST_EFFORT.set(True)
    try:
        yield
    finally:
        _BEST_EFFORT.reset(token)


def is_best_effort() -> bool:
    return _BEST_EFFORT.get()


def cut_part(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> tuple[str, str]:
    """(the first part of at most `limit` characters, the rest), cut at the last newline or space when near."""
    if len(text) <= limit:
        return text, ""
    cut = max(text.rfind("\n", 0, limit + 1), text.rfind(" ", 0, limit + 1))
    cut = cut if cut > limit // 2 else limit
    return text[:cut].rstrip(), text[cut:].lstrip()


def split_text(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut like `cut_part`; never empty (Telegram refuses empty messages)."""
    pieces = []
    while text:
        piece, text = cut_part(text, limit)
        pieces.append(piece)
    return [piece for piece in pieces if piece] or [texts.EMPTY_REPLY]


def _not_modified(error: TelegramBadRequest) -> bool:
    return "message is not modified" in error.message


class DraftGate:
    """Where drafts fail, so later replies skip them: per chat, or for the whole Bot API server."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown  # seconds a switched-off chat gets complete replies before drafts are tried again
        self._off_until: dict[int | None, float] = {}  # chat id (None: every chat) → monotonic time

    def allowed(self, chat_id: int) -> bool:
        now = time.monotonic()
        return all(self._off_until.get(key, 0.0) <= now for key in (None, chat_id))

    def switch_off(self, chat_id: int, error: Exception) -> None:
        # A 404 or a body that is not the Bot API's JSON: the server has no such method; no chat will do better.
        server_wide = isinstance(error, ClientDecodeError | TelegramNotFound)
        key = None if server_wide else chat_id
        self._off_until[key] = time.monotonic() + self.cooldown
        logger.warning(
            "drafts off for %s for %g s, replies are sent complete: sendMessageDraft failed (%s: %s)",
            "every chat" if server_wide else f"chat {chat_id}", self.cooldown, type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
        )


class Surface(Protocol):
    """Where a reply appears: `show` the text so far (best effort), `finish` a part for good."""

    interval: float  # seconds between two `show` calls
    live: bool  # False once intermediate views are off for this reply

    async def show(self, text: str) -> None: ...

    async def finish(self, text: str) -> None: ...


class PlainSurface:
    """A reply sent once, complete: each part one message, stored once, replying to the previous part."""

    interval = 0.0
    live = False

    def __init__(self, message: Message, store: HistoryStore) -> None:
        self.message = message
        self.store = store
        self.reply_to = message.message_id
        self.private = message.chat.type == ChatType.PRIVATE

    async def send(self, text: str) -> Message:
        # In groups a Telegram reply shows whom the bot answers; in private chats it would be noise.
        return await (self.message.answer(text) if self.private else self.message.reply(text))

    async def stored(self, sent: Message, text: str) -> None:
        await self.store.add(sent.chat.id, StoredMessage(sent.message_id, "assistant", text, reply_to=self.reply_to))
        self.reply_to = sent.message_id

    async def show(self, text: str) -> None:
        raise AssertionError("a plain reply has no intermediate views")  # live is False

    async def finish(self, text: str) -> None:
        await self.stored(await self.send(text), text)


class DraftSurface(PlainSurface):
    """A private chat: the text so far in `sendMessageDraft` (one draft id per reply), each part by `sendMessage`."""

    def __init__(self, bot: Bot, message: Message, store: HistoryStore, gate: DraftGate, *, interval: float) -> None:
        super().__init__(message, store)
        self.bot = bot
        self.gate = gate
        self.interval = interval
        self.live = gate.allowed(message.chat.id)
        self._paused_until = 0.0
        self._draft_id = message.message_id  # non-zero and unique per reply in this chat

    async def show(self, text: str) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            with best_effort():
                await self.bot(SendMessageDraft(chat_id=self.message.chat.id, draft_id=self._draft_id, text=text),
                               request_timeout=BEST_EFFORT_TIMEOUT)
        except TelegramRetryAfter as error:
            self._paused_until = time.monotonic() + error.retry_after
        except TelegramNetworkError:
            pass  # a lost draft; the next one or the final message carries the text
        except (TelegramAPIError, ClientDecodeError) as error:
            self.gate.switch_off(self.message.chat.id, error)
            self.live = False


class EditSurface(PlainSurface):
    """A group: the first words sent as a message, then `editMessageText` as text arrives; one message per part."""

    def __init__(self, bot: Bot, message: Message, store: HistoryStore, *, interval: float) -> None:
        super().__init__(message, store)
        self.bot = bot
        self.interval = interval
        self.live = True
        self._current: Message | None = None  # the message of the part being written
        self._shown = ""
        self._paused_until = 0.0

    async def _edit(self, text: str, timeout: int | None = None) -> None:
        assert self._current is not None
        try:
            await self.bot.edit_message_text(text=text, chat_id=self._current.chat.id,
                                             message_id=self._current.message_id, request_timeout=timeout)
        except TelegramBadRequest as error:
            if not _not_modified(error):
                raise
        self._shown = text

    async def show(self, text: str) -> None:
        if time.monotonic() < self._paused_until or text == self._shown:
            return
        if self._current is None:
            self._current, self._shown = await self.send(text), text
            return
        try:
            with best_effort():
                await self._edit(text, BEST_EFFORT_TIMEOUT)
        except TelegramRetryAfter as error:
            self._paused_until = time.monotonic() + error.retry_after
        except TelegramNetworkError:
            pass
        except TelegramAPIError as error:  # e.g. the message was deleted: the final part is sent anew
            logger.info("chat %d: editing the streamed reply failed (%s); sending it at the end", self.message.chat.id,
                        error)
            self.live, self._current = False, None

    async def finish(self, text: str) -> None:
        if self._current is None:
            sent = await self.send(text)
        else:
            # The final text must land: wait out a pause (the flood-control middleware handles later 429s).
            await asyncio.sleep(max(0.0, self._paused_until - time.monotonic()))
            if text != self._shown:
                await self._edit(text)
            sent = self._current
        await self.stored(sent, text)
        self._current, self._shown = None, ""


async def stream_reply(chunks: AsyncIterator[str], surface: Surface) -> str:
    """Show `chunks` as they come, at most once per `surface.interval`, finishing each full part on the way;
    return the last part's text for the caller to `finish` (once the generation's slot is free).

    A stream that breaks (a `ServiceError`) finishes the text so far, then the error propagates to the errors
    router, which adds the apology.
    """
    text = ""  # the part being written
    finished_any = False
    next_show = 0.0
    try:
        async for delta in chunks:
            text += delta
            while len(text.strip()) > TELEGRAM_MESSAGE_LIMIT:
                part, text = cut_part(text.lstrip())  # the tail keeps its space before the next delta
                await surface.finish(part)
                finished_any = True
            if surface.live and time.monotonic() >= next_show and text.strip():
                await surface.show(text.strip())
                next_show = time.monotonic() + surface.interval
    except ServiceError:
        if text.strip():
            await surface.finish(text.strip())
        raise
    return text.strip() if text.strip() or finished_any else texts.EMPTY_REPLY
