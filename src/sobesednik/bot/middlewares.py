"""Cross-cutting bot behaviour: flood-control retries, the polling heartbeat, and the allowlist with update logging.

- `RetryAfterMiddleware` wraps every Bot API call (a *session* middleware): on 429 it sleeps the server's
  `retry_after` and tries again, at most `retries` times; best-effort calls (drafts, intermediate edits of a
  streamed reply, see `bot/streaming.py`) get the 429 at once.
- `HeartbeatMiddleware` (session) touches the heartbeat file after each answered long poll (`bot/health.py`).
- `AccessMiddleware` is an outer *update* middleware: logs each update (ids only, never text) and drops those
  from users or chats outside the allowlist before any handler runs.

The per-user and per-chat limits of generations live in `bot/throttle.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import GetUpdates, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update

from sobesednik.bot.health import touch
from sobesednik.bot.history import HistoryStore
from sobesednik.bot.streaming import is_best_effort

logger = logging.getLogger(__name__)


class RetryAfterMiddleware(BaseRequestMiddleware):
    """Honour Telegram's flood control: wait `retry_after` seconds and repeat the call."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        if is_best_effort():  # a draft or an intermediate edit: its caller skips ahead instead of waiting
            return await make_request(bot, method)
        for attempt in range(self.retries + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self.retries:
                    raise
                logger.warning("flood control on %s: retrying in %s s", type(method).__name__, error.retry_after)
                await asyncio.sleep(error.retry_after)
        raise AssertionError("unreachable")  # the loop returns or raises


class HeartbeatMiddleware(BaseRequestMiddleware):
    """Touch the heartbeat file whenever a long poll (getUpdates) comes back: the healthcheck reads its age, and
    the history store's problem written into it."""

    def __init__(self, path: Path, store: HistoryStore) -> None:
        self.path = path
        self.store = store

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        response = await make_request(bot, method)
        if isinstance(method, GetUpdates):
            touch(self.path, self.store.problem)
        return response


def _ids(update: Update) -> tuple[int | None, int | None]:
    """(user id, chat id) of the update's event, where it has them."""
    event = update.event
    user = getattr(event, "from_user", None)
    chat = getattr(event, "chat", None)
    return (user.id if user else None), (chat.id if chat else None)


class AccessMiddleware(BaseMiddleware):
    """Outer middleware on updates: log ids, and ignore everyone outside a non-empty allowlist."""

    def __init__(self, allowed_ids: Iterable[int]) -> None:
        self.allowed_ids = frozenset(allowed_ids)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)  # registered on dp.update
        if event.business_message or event.edited_business_message:
            # From the owner's contacts: handlers/business.py checks the owner against the allowlist.
            return await handler(event, data)
        user_id, chat_id = _ids(event)
        if self.allowed_ids and user_id not in self.allowed_ids and chat_id not in self.allowed_ids:
            logger.info("update %d from user %s in chat %s: not in the allowlist", event.update_id, user_id, chat_id)
            return None
        logger.debug("update %d (%s) from user %s in chat %s", event.update_id, event.event_type, user_id, chat_id)
        return await handler(event, data)
