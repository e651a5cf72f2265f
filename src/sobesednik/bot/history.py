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
import logging
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Protocol

from sobesednik.errors import ConfigError

logger = logging.getLogger(__name__)

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
        """Forget the chat's messages (`/reset`); its persona stays."""

    async def get_persona(self, chat_id: ChatKey) -> str | None:
        """The persona (a model id of the service) this chat chose with /persona, or None."""

    async def set_persona(self, chat_id: ChatKey, persona: str) -> None:
        """Remember this chat's persona."""

    async def close(self) -> None:
        """Release the connection."""

    # Why messages are not reaching the database right now (they are kept meanwhile), or None.
    problem: str | None


# Messages kept in memory while the database cannot be written; beyond that the oldest are dropped (and logged).
_PENDING_MAX = 10_000
_FileId = tuple[int, int]  # (st_dev, st_ino): which file the path names


def _file_id(path: Path) -> _FileId | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database file's mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the bot
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL,"
        " role TEXT NOT NULL, text TEXT NOT NULL, reply_to INTEGER, PRIMARY KEY (chat_id, message_id))"
    )
    db.execute("CREATE TABLE IF NOT EXISTS personas (chat_id PRIMARY KEY, persona TEXT NOT NULL)")
    return db


class SqliteHistoryStore:
    """One SQLite file in WAL mode; calls run in a worker thread so the event loop never waits on disk.

    A message that cannot be written (a read-only file, a full disk) stays in memory, in the context the model
    sees, and is written with the next message that can be; `problem` says why meanwhile (the log says it once,
    the healthcheck while it lasts). A database file deleted under the running bot is noticed on the next write
    and recreated from the open connection, which still holds every message.
    """

    problem: str | None = None

    def __init__(self, path: Path, *, max_messages: int) -> None:
        self.path = path
        self.max_messages = max_messages
        try:
            self._db = _connect(path)
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(
                f"cannot open the bot's history database {path}: {error}. Set SOBESEDNIK_BOT_STORAGE to "
                "sqlite:///a/writable/file.sqlite3"
            ) from None
        self._file = _file_id(path)
        self._pending: dict[tuple[ChatKey, int], tuple[ChatKey, StoredMessage]] = {}
        # One connection shared by the worker threads: serialise its use (and of `_pending`).
        self._lock = asyncio.Lock()

    async def _run(self, sql: str, *params: object) -> list[tuple]:
        async with self._lock:
            return await asyncio.to_thread(lambda: self._db.execute(sql, params).fetchall())

    def _follow_the_file(self) -> None:
        """Write to the file the path names now: a deleted one is recreated with the connection's content."""
        if _file_id(self.path) == self._file:
            return
        missing = _file_id(self.path) is None
        fresh = _connect(self.path)
        if missing:
            self._db.backup(fresh)  # the old connection still reads the unlinked file (and its WAL)
        self._db.close()
        self._db, self._file = fresh, _file_id(self.path)
        logger.error("history database %s was %s while the bot ran: %s", self.path,
                     "deleted" if missing else "replaced by another file",
                     "recreated it from the open connection" if missing else "writing to the new file from now on")

    def _write(self, chat_id: ChatKey, message: StoredMessage) -> None:
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

    def _flush(self) -> None:
        """Write the pending messages, oldest first; on failure keep the rest and say why in `problem`."""
        try:
            self._follow_the_file()
            for key, (chat_id, message) in list(self._pending.items()):
                self._write(chat_id, message)
                del self._pending[key]
        except (OSError, sqlite3.Error) as error:
            while len(self._pending) > _PENDING_MAX:
                del self._pending[next(iter(self._pending))]
                logger.error("history database %s: more than %d messages waiting; dropped the oldest", self.path,
                             _PENDING_MAX)
            if self.problem is None:  # once per outage; the healthcheck repeats it while it lasts
                logger.error("cannot write the history database %s (%s: %s); keeping messages in memory until it "
                             "can be written", self.path, type(error).__name__, error)
            self.problem = (f"cannot write the history database {self.path} ({error}); {len(self._pending)} "
                            "message(s) kept in memory")
            return
        if self.problem is not None:
            logger.warning("history database %s is writable again; the messages kept in memory are written",
                           self.path)
            self.problem = None

    async def add(self, chat_id: ChatKey, message: StoredMessage) -> None:
        async with self._lock:
            self._pending.pop((chat_id, message.message_id), None)  # an edit goes after what it replaces
            self._pending[chat_id, message.message_id] = (chat_id, message)
            await asyncio.to_thread(self._flush)

    def _pending_of(self, chat_id: ChatKey) -> dict[int, StoredMessage]:
        return {message.message_id: message for chat, message in self._pending.values() if chat == chat_id}

    async def get(self, chat_id: ChatKey, message_id: int) -> StoredMessage | None:
        rows = await self._run(
            "SELECT message_id, role, text, reply_to FROM messages WHERE chat_id = ? AND message_id = ?",
            chat_id,
            message_id,
        )
        pending = self._pending_of(chat_id).get(message_id)
        return pending or (StoredMessage(*rows[0]) if rows else None)

    async def recent(self, chat_id: ChatKey, limit: int) -> list[StoredMessage]:
        rows = await self._run(
            "SELECT message_id, role, text, reply_to FROM messages WHERE chat_id = ?"
            " ORDER BY message_id DESC LIMIT ?",
            chat_id,
            limit,
        )
        messages = {row[0]: StoredMessage(*row) for row in rows} | self._pending_of(chat_id)
        return [messages[message_id] for message_id in sorted(messages)[-limit:]]

    async def clear(self, chat_id: ChatKey) -> None:
        async with self._lock:
            for key in [key for key, (chat, _) in self._pending.items() if chat == chat_id]:
                del self._pending[key]
        await self._run("DELETE FROM messages WHERE chat_id = ?", chat_id)

    async def get_persona(self, chat_id: ChatKey) -> str | None:
        rows = await self._run("SELECT persona FROM personas WHERE chat_id = ?", chat_id)
        return rows[0][0] if rows else None

    async def set_persona(self, chat_id: ChatKey, persona: str) -> None:
        await self._run("INSERT OR REPLACE INTO personas VALUES (?, ?)", chat_id, persona)

    async def close(self) -> None:
        async with self._lock:
            if self._pending:
                await asyncio.to_thread(self._flush)
            if self._pending:
                logger.error("history database %s: %d message(s) could not be written and are lost", self.path,
                             len(self._pending))
            self._db.close()


class RedisHistoryStore:
    """Per chat: a hash `message_id → JSON` and a sorted set of ids; several bot replicas can share it."""

    problem: str | None = None  # a Redis that fails raises on the call; nothing is kept to report

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

    async def get_persona(self, chat_id: ChatKey) -> str | None:
        return await self._redis.get(f"{self.prefix}:{chat_id}:persona")

    async def set_persona(self, chat_id: ChatKey, persona: str) -> None:
        await self._redis.set(f"{self.prefix}:{chat_id}:persona", persona)

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
