"""Per-chat message history: SQLite (default, one file in WAL mode) or Redis (shared by several bot replicas).

Both stores keep, per chat, the last `max_messages` text messages keyed by Telegram's message id (which grows
within a chat, so it also orders them), with the author's role for the model and the id it replies to. The
bot reads them back to build the model's context (`bot/context.py`).

    store = open_store("sqlite:///bot-history.sqlite3", max_messages=200)
    await store.add(chat_id, StoredMessage(message_id=7, role="user", text="привет"))
    await store.recent(chat_id, limit=20)
    await store.close()
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

from sobesednik.errors import ConfigError

# A chat's key: Telegram's chat id, or a string for chats the bot sees through a business connection (the
# owner's chat with a contact has the contact's id, which is also the id of the bot's own chat with that contact).
ChatKey = int | str


@dataclass(frozen=True)
class StoredMessage:
    """One text message of a chat as the model will see it."""

    message_id: int
    role: Literal["user", "assistant"]  # assistant: the bot's own messages
    text: str
    reply_to: int | None = None  # message id this one replies to, when in the same chat


class HistoryStore(Protocol):
    """What the bot needs from a history store; `SqliteHistoryStore` and `RedisHistoryStore` implement it."""

    async def add(self, chat_id: ChatKey, message: StoredMessage) -> None:
        """Insert or replace (edited messages) one message, then trim the chat to the newest `max_messages`."""

    async def get(self, chat_id: ChatKey, message_id: int) -> StoredMessage | None:
        """One message by id, or None when it was never stored or was trimmed."""

    async def recent(self, chat_id: ChatKey, limit: int) -> list[StoredMessage]:
        """The newest `limit` messages of the chat, oldest first."""

    async def clear(self, chat_id: ChatKey) -> None:
        """Forget the chat (`/reset`)."""

    async def close(self) -> None:
        """Release the connection."""


class SqliteHistoryStore:
    """One SQLite file in WAL mode; calls run in a worker thread so the event loop never waits on disk."""

    def __init__(self, path: Path, *, max_messages: int) -> None:
        self.path = path
        self.max_messages = max_messages
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the bot
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS messages (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL,"
                " role TEXT NOT NULL, text TEXT NOT NULL, reply_to INTEGER, PRIMARY KEY (chat_id, message_id))"
            )
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(
                f"cannot open the bot's history database {path}: {error}. Set SOBESEDNIK_BOT_STORAGE to "
                "sqlite:///a/writable/file.sqlite3"
            ) from None
        # One connection shared by the worker threads: serialise its use.
        self._lock = asyncio.Lock()

    async def _run(self, sql: str, *params: object) -> list[tuple]:
        async with self._lock:
            return await asyncio.to_thread(lambda: self._db.execute(sql, params).fetchall())

    async def add(self, chat_id: ChatKey, message: StoredMessage) -> None:
        def write() -> None:
            with self._db:  # one transaction: insert and trim together
                self._db.execute(
                    "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?)",
                    (chat_id, message.message_id, message.role, message.text, message.reply_to),
                )
                self._db.execute(
                    "DELETE FROM messages WHERE chat_id = ? AND message_id NOT IN"
                    " (SELECT message_id FROM messages WHERE chat_id = ? ORDER BY message_id DESC LIMIT ?)",
                    (chat_id, chat_id, self.max_messages),
                )

        async with self._lock:
            await asyncio.to_thread(write)

    async def get(self, chat_id: ChatKey, message_id: int) -> StoredMessage | None:
        rows = await self._run(
            "SELECT message_id, role, text, reply_to FROM messages WHERE chat_id = ? AND message_id = ?",
            chat_id,
            message_id,
        )
        return StoredMessage(*rows[0]) if rows else None

    async def recent(self, chat_id: ChatKey, limit: int) -> list[StoredMessage]:
        rows = await self._run(
            "SELECT message_id, role, text, reply_to FROM messages WHERE chat_id = ?"
            " ORDER BY message_id DESC LIMIT ?",
            chat_id,
            limit,
        )
        return [StoredMessage(*row) for row in reversed(rows)]

    async def clear(self, chat_id: ChatKey) -> None:
        await self._run("DELETE FROM messages WHERE chat_id = ?", chat_id)

    async def close(self) -> None:
        async with self._lock:
            self._db.close()


class RedisHistoryStore:
    """Per chat: a hash `message_id → JSON` and a sorted set of ids; several bot replicas can share it."""

    def __init__(self, url: str, *, max_messages: int, prefix: str = "sobesednik:bot") -> None:
        import redis.asyncio  # only the Redis deployments need the client

        self.max_messages = max_messages
        self.prefix = prefix
        self._redis = redis.asyncio.from_url(url, decode_responses=True)

    def _keys(self, chat_id: ChatKey) -> tuple[str, str]:
        return f"{self.prefix}:{chat_id}:messages", f"{self.prefix}:{chat_id}:order"

    async def add(self, chat_id: ChatKey, message: StoredMessage) -> None:
        messages, order = self._keys(chat_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(messages, str(message.message_id), json.dumps(asdict(message), ensure_ascii=False))
            pipe.zadd(order, {str(message.message_id): message.message_id})
            # Everything but the newest max_messages ids; removed from both keys below.
            pipe.zrange(order, 0, -(self.max_messages + 1))
            *_, stale = await pipe.execute()
        if stale:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(messages, *stale)
                pipe.zrem(order, *stale)
                await pipe.execute()

    async def get(self, chat_id: ChatKey, message_id: int) -> StoredMessage | None:
        raw = await self._redis.hget(self._keys(chat_id)[0], str(message_id))
        return StoredMessage(**json.loads(raw)) if raw else None

    async def recent(self, chat_id: ChatKey, limit: int) -> list[StoredMessage]:
        messages, order = self._keys(chat_id)
        ids = await self._redis.zrange(order, -limit, -1)
        if not ids:
            return []
        raws = await self._redis.hmget(messages, ids)
        return [StoredMessage(**json.loads(raw)) for raw in raws if raw]

    async def clear(self, chat_id: ChatKey) -> None:
        await self._redis.delete(*self._keys(chat_id))

    async def close(self) -> None:
        await self._redis.aclose()


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///path` storage URL; None for Redis URLs (`redis://…`, `rediss://`, `unix://`)."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def open_store(url: str, *, max_messages: int) -> HistoryStore:
    """The store for a `SOBESEDNIK_BOT_STORAGE` URL: `sqlite:///path` or `redis://…` (`rediss://`, `unix://`)."""
    path = sqlite_path(url)
    if path is not None:
        return SqliteHistoryStore(path, max_messages=max_messages)
    return RedisHistoryStore(url, max_messages=max_messages)
