"""The throttle: before a generation starts, has this user sent too many requests in the window, and is this
chat already waiting for `max_inflight` replies?

Two implementations behind one interface: `MemoryThrottle` for a single bot process (SQLite storage), and
`RedisThrottle` for replicas behind a webhook that share a Redis (`SOBESEDNIK_BOT_STORAGE=redis://…`): a user
whose updates land on different replicas is still limited once, and a chat still waits for its one reply.

    throttle = open_throttle(settings.storage, messages=6, seconds=30, max_inflight=1, inflight_ttl=120)
    async with throttle.slot(user_id, chat_id):   # raises ThrottledError when there is no slot
        reply = await client.chat(messages)
    await throttle.close()
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from sobesednik.bot.history import ChatKey, sqlite_path


class ThrottledError(Exception):
    """A generation was refused by the throttle; `seconds` until the user may ask again (0: the chat is busy)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"throttled for {seconds:.0f} s")
        self.seconds = seconds


class Throttle(Protocol):
    def slot(self, user_id: int, chat_id: ChatKey) -> AsyncIterator[None]:
        """An async context manager holding a generation slot; raises `ThrottledError` when there is none."""

    async def close(self) -> None:
        """Release the connection, if any."""


class MemoryThrottle:
    """Per-user sliding-window rate limit and per-chat limit of generations in flight, in this process."""

    def __init__(self, *, messages: int, seconds: float, max_inflight: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.messages = messages
        self.seconds = seconds
        self.max_inflight = max_inflight
        self.clock = clock
        self._sent: defaultdict[int, deque[float]] = defaultdict(deque)
        self._inflight: defaultdict[ChatKey, int] = defaultdict(int)
        self._swept = clock()

    def _forget_idle_users(self, now: float) -> None:
        # A user whose newest request left the window has nothing to limit: drop them, or the map holds every
        # user ever seen. Once per window, so the sweep costs O(1) per request on average.
        if now - self._swept < self.seconds:
            return
        self._swept = now
        for user_id in [user for user, sent in self._sent.items() if now - sent[-1] >= self.seconds]:
            del self._sent[user_id]

    @property
    def tracked_users(self) -> int:
        """Users with a request in the window, or idle for less than one window more."""
        return len(self._sent)

    @asynccontextmanager
    async def slot(self, user_id: int, chat_id: ChatKey) -> AsyncIterator[None]:
        now = self.clock()
        self._forget_idle_users(now)
        sent = self._sent[user_id]
        while sent and now - sent[0] >= self.seconds:
            sent.popleft()
        if len(sent) >= self.messages:
            raise ThrottledError(self.seconds - (now - sent[0]))
        if self._inflight.get(chat_id, 0) >= self.max_inflight:
            if not sent:
                del self._sent[user_id]  # nothing recorded for this user: no entry to keep
            raise ThrottledError(0)
        sent.append(now)
        self._inflight[chat_id] += 1
        try:
            yield
        finally:
            self._inflight[chat_id] -= 1
            if not self._inflight[chat_id]:
                del self._inflight[chat_id]

    async def close(self) -> None:
        pass


# Check and take a slot in one step, so that two replicas cannot both take the last one. The window uses the
# Redis server's clock: replicas' clocks may disagree. Returns -1 (taken), 0 (chat busy) or the milliseconds
# until the user's oldest request leaves the window.
_ACQUIRE = """
local sent, inflight = KEYS[1], KEYS[2]
local window, max_messages, max_inflight, inflight_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
    tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - window)
if redis.call('ZCARD', sent) >= max_messages then
    local oldest = redis.call('ZRANGE', sent, 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + window - now)
end
if tonumber(redis.call('GET', inflight) or '0') >= max_inflight then
    return 0
end
redis.call('ZADD', sent, now, now .. ':' .. ARGV[5])
redis.call('PEXPIRE', sent, window)
redis.call('INCR', inflight)
redis.call('PEXPIRE', inflight, inflight_ttl)
return -1
"""

_RELEASE = """
if redis.call('DECR', KEYS[1]) <= 0 then
    redis.call('DEL', KEYS[1])
end
"""


class RedisThrottle:
    """The same limits kept in Redis, shared by every bot replica that uses the same server and prefix.

    A replica that dies mid-generation cannot release its slot; the chat's in-flight counter expires
    `inflight_ttl` seconds after the last slot was taken (set it above the longest a reply may take).
    """

    def __init__(self, url: str, *, messages: int, seconds: float, max_inflight: int, inflight_ttl: float,
                 prefix: str = "sobesednik:bot") -> None:
        import redis.asyncio  # only the Redis deployments need the client

        self.messages = messages
        self.seconds = seconds
        self.max_inflight = max_inflight
        self.inflight_ttl = inflight_ttl
        self.prefix = prefix
        self._redis = redis.asyncio.from_url(url, decode_responses=True)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    @asynccontextmanager
    async def slot(self, user_id: int, chat_id: ChatKey) -> AsyncIterator[None]:
        inflight = f"{self.prefix}:throttle:chat:{chat_id}:inflight"
        keys = [f"{self.prefix}:throttle:user:{user_id}:sent", inflight]
        args = [round(self.seconds * 1000), self.messages, self.max_inflight, round(self.inflight_ttl * 1000),
                uuid.uuid4().hex]
        wait_ms = int(await self._acquire(keys=keys, args=args))
        if wait_ms >= 0:
            raise ThrottledError(wait_ms / 1000)
        try:
            yield
        finally:
            await self._release(keys=[inflight])

    async def close(self) -> None:
        await self._redis.aclose()


def open_throttle(storage: str, *, messages: int, seconds: float, max_inflight: int,
                  inflight_ttl: float) -> Throttle:
    """Where the history is in Redis (replicas may share it), keep the limits there too; else in this process."""
    if sqlite_path(storage) is not None:
        return MemoryThrottle(messages=messages, seconds=seconds, max_inflight=max_inflight)
    return RedisThrottle(storage, messages=messages, seconds=seconds, max_inflight=max_inflight,
                         inflight_ttl=inflight_ttl)
