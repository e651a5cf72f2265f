"""Getting updates to the handlers: long polling, the webhook endpoint, and the handler tasks both start.

    runner = UpdateRunner(dispatcher, bot, open_recent_updates(settings.storage))
    await poll(bot, runner, stop, allowed_updates=[...], shutdown_timeout=30)   # or: webhook_handler(runner, secret)
    await runner.drain(settings.shutdown_timeout)   # webhook mode: before the session and the stores close

Each update is parsed on its own: one that does not parse (a message without `chat`, a message given as a string)
is skipped and counted, logged by its id only, and the offset moves past it, so it cannot block the updates after
it (aiogram's polling parses the whole `getUpdates` batch at once, retries it forever and logs the payload, other
users' texts included). An update id seen recently is not handled again (Telegram redelivers a webhook update it
thinks failed; replicas share the memory of ids through Redis). On shutdown the bot stops taking updates, then
waits up to `shutdown_timeout` for the running handlers before anything closes under them; a poll cut short
leaves its updates unconfirmed for the next start. Telegram counts an update delivered once the next poll (or the
webhook's 200) confirmed it, so a reply still unfinished at the deadline is cancelled and its update id logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import OrderedDict
from typing import Any, ClassVar, Protocol

from aiogram import Bot, Dispatcher
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig
from aiohttp import web
from pydantic import ValidationError

from sobesednik.bot.history import sqlite_path

logger = logging.getLogger(__name__)

POLL_TIMEOUT = 10  # seconds a long poll waits for updates (aiogram's default; bot/health.py relies on it)
# Telegram keeps an undelivered update for 24 hours: a redelivery cannot come later than that.
SEEN_TTL = 24 * 3600
_SEEN_IN_MEMORY = 10_000  # update ids remembered by one process: far more than arrive within a redelivery
_BACKOFF = BackoffConfig(min_delay=1.0, max_delay=5.0, factor=1.3, jitter=0.1)  # aiogram's default


class _RawGetUpdates(GetUpdates):
    """getUpdates whose result stays raw JSON: each update is parsed on its own (`UpdateRunner.submit`)."""

    __returning__: ClassVar[type] = list[Any]


class RecentUpdates(Protocol):
    async def first(self, bot_id: int, update_id: int) -> bool:
        """True the first time a bot's update id is seen (within `SEEN_TTL`), False for a redelivery."""

    async def close(self) -> None:
        """Release the connection, if any."""


class MemoryRecentUpdates:
    """The newest update ids of this process (a single bot with SQLite history)."""

    def __init__(self, size: int = _SEEN_IN_MEMORY) -> None:
        self.size = size
        self._ids: OrderedDict[tuple[int, int], None] = OrderedDict()

    async def first(self, bot_id: int, update_id: int) -> bool:
        if (bot_id, update_id) in self._ids:
            return False
        self._ids[bot_id, update_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    async def close(self) -> None:
        pass


class RedisRecentUpdates:
    """Update ids in Redis with an expiry, shared by the replicas behind one webhook."""

    def __init__(self, url: str, *, prefix: str = "sobesednik:bot") -> None:
        import redis.asyncio  # only the Redis deployments need the client

        self.prefix = prefix
        self._redis = redis.asyncio.from_url(url, decode_responses=True)

    async def first(self, bot_id: int, update_id: int) -> bool:
        # SET NX: of two replicas given the same update, exactly one sets the key. Update ids are per bot, and
        # bots may share a Redis.
        key = f"{self.prefix}:update:{bot_id}:{update_id}"
        return bool(await self._redis.set(key, "1", nx=True, ex=SEEN_TTL))


    async def close(self) -> None:
        await self._redis.aclose()


def open_recent_updates(storage: str) -> RecentUpdates:
    """Kept beside the history: in Redis when replicas share one, else in this process."""
    return MemoryRecentUpdates() if sqlite_path(storage) is not None else RedisRecentUpdates(storage)


def _bad_fields(error: ValidationError) -> str:
    # Locations only (`message.chat`): pydantic's messages and inputs could carry the text of the message.
    return ", ".join(sorted({".".join(str(part) for part in item["loc"]) for item in error.errors()})[:5])


class UpdateRunner:
    """Parses raw updates, drops redeliveries, and handles each in its own task until `drain`."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, seen: RecentUpdates) -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.seen = seen
        self.skipped = 0  # updates that did not parse, since start
        self._running: dict[asyncio.Task[Any], int] = {}  # handler task → its update id

    def parse(self, raw: object) -> Update | None:
        """The update, or None (logged and counted) when it is not a valid Bot API update."""
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        try:
            return Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError as error:
            self.skipped += 1
            logger.warning("update %s skipped: it does not parse as a Bot API update (bad fields: %s); %d skipped "
                           "since start", update_id, _bad_fields(error), self.skipped)
            return None

    async def submit(self, raw: object) -> int | None:
        """Start handling one raw update, unless it does not parse or was handled already; its id, if it has one."""
        update = self.parse(raw)
        if update is None:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            return update_id if type(update_id) is int else None
        if not await self.seen.first(self.bot.id, update.update_id):
            logger.info("update %d skipped: delivered again, already handled", update.update_id)
            return update.update_id
        task = asyncio.create_task(self.dispatcher.feed_update(self.bot, update))
        self._running[task] = update.update_id
        task.add_done_callback(self._finished)
        return update.update_id

    def _finished(self, task: asyncio.Task[Any]) -> None:
        update_id = self._running.pop(task)
        if not task.cancelled() and task.exception() is not None:
            # The errors router answers the user; this is what it did not handle. Type only: no message texts.
            logger.error("update %d failed: %s", update_id, type(task.exception()).__name__)

    def unfinished(self) -> list[int]:
        return sorted(self._running.values())

    async def drain(self, timeout: float) -> list[int]:
        """Wait up to `timeout` seconds for the running handlers, cancel the rest; their update ids."""
        if self._running:
            logger.info("waiting up to %g s for %d running handler(s)", timeout, len(self._running))
            await asyncio.wait(list(self._running), timeout=timeout)
        cut = self.unfinished()
        for task in list(self._running):
            task.cancel()
        if cut:
            # Telegram counts them delivered (the next poll, or the webhook's 200, confirmed them): say which.
            logger.warning("stopping: updates %s not answered within shutdown_timeout (%g s)", cut, timeout)
            await asyncio.wait(list(self._running), timeout=5)
        return cut


async def _until_stopped(awaitable: Any, stop: asyncio.Event) -> tuple[bool, Any]:
    """(True, result) when `awaitable` finished first, (False, None) when `stop` was set first (it is cancelled)."""
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([work, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not work.done():
        work.cancel()
        return False, None
    return True, work.result()


async def poll(bot: Bot, runner: UpdateRunner, stop: asyncio.Event, *, allowed_updates: list[str],
               shutdown_timeout: float) -> None:
    """Long-poll until `stop`, then let the running handlers finish (`drain`)."""
    offset: int | None = None
    backoff = Backoff(config=_BACKOFF)
    # The session's own timeout is shorter than a long poll; wait for the poll and then some.
    request_timeout = int(bot.session.timeout + POLL_TIMEOUT)
    while not stop.is_set():
        method = _RawGetUpdates(offset=offset, timeout=POLL_TIMEOUT, allowed_updates=allowed_updates)
        try:
            done, raws = await _until_stopped(bot(method, request_timeout=request_timeout), stop)
        except Exception as error:  # the Bot API server down or failing: retry, as aiogram does
            # Type only: an error may quote the response, and with it other users' messages.
            logger.error("getUpdates failed (%s); retrying in %.1f s", type(error).__name__, backoff.next_delay)
            await _until_stopped(backoff.asleep(), stop)
            continue
        if not done:
            break  # the updates of a poll cut short stay unconfirmed: Telegram delivers them to the next start
        ids = [update_id for raw in raws if (update_id := await runner.submit(raw)) is not None]
        if raws and not ids:  # nothing with an id to confirm: the server repeats the batch; do not spin on it
            await _until_stopped(backoff.asleep(), stop)
            continue
        backoff.reset()
        if ids:  # moves past updates that do not parse, too
            offset = max(offset or 0, *ids) + 1
    await runner.drain(shutdown_timeout)


def webhook_handler(runner: UpdateRunner, secret: str) -> Any:
    """The aiohttp handler of Telegram's webhook calls: 401 without the secret, 400 for a body that is not JSON."""

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not secrets.compare_digest(given, secret):
            raise web.HTTPUnauthorized()
        try:
            raw = json.loads(await request.read())
        except (UnicodeDecodeError, ValueError):
            logger.warning("webhook call with a body that is not JSON: answered 400")
            raise web.HTTPBadRequest(text="the body is not JSON") from None
        # 200 for an update that does not parse, too: Telegram would deliver it again and again.
        await runner.submit(raw)
        return web.json_response({})

    return handle
