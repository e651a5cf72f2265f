"""Both history stores, one set of tests: order, lookup, edits, trimming, per-chat reset, persistence."""

from __future__ import annotations

import uuid

import pytest

from sobesednik.bot.history import RedisHistoryStore, SqliteHistoryStore, StoredMessage, open_store
from sobesednik.errors import ConfigError


@pytest.fixture(params=["sqlite", "redis"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path}/history.sqlite3", max_messages=5)
        assert isinstance(store, SqliteHistoryStore)
    else:
        store = open_store(request.getfixturevalue("redis_server"), max_messages=5)
        assert isinstance(store, RedisHistoryStore)
        store.prefix = f"test:{uuid.uuid4().hex}"  # isolate tests sharing one server
    yield store
    await store.close()


def _message(message_id: int, role: str = "user", reply_to: int | None = None) -> StoredMessage:
    return StoredMessage(message_id=message_id, role=role, text=f"сообщение {message_id}", reply_to=reply_to)


async def test_recent_returns_newest_oldest_first(store):
    for message_id in [3, 1, 2]:
        await store.add(10, _message(message_id, "assistant" if message_id == 2 else "user"))
    assert [m.message_id for m in await store.recent(10, limit=2)] == [2, 3]
    assert (await store.recent(10, limit=10))[1] == StoredMessage(2, "assistant", "сообщение 2")
    assert await store.recent(11, limit=10) == []


async def test_get_and_edit_replace(store):
    await store.add(10, _message(1))
    await store.add(10, _message(2, reply_to=1))
    assert (await store.get(10, 2)).reply_to == 1
    assert await store.get(10, 3) is None
    await store.add(10, StoredMessage(2, "user", "исправлено", reply_to=1))
    assert [m.text for m in await store.recent(10, limit=10)] == ["сообщение 1", "исправлено"]


async def test_trims_to_max_messages_per_chat(store):
    for message_id in range(1, 9):
        await store.add(10, _message(message_id))
    await store.add(20, _message(1))
    assert [m.message_id for m in await store.recent(10, limit=100)] == [4, 5, 6, 7, 8]
    assert await store.get(10, 3) is None
    assert [m.message_id for m in await store.recent(20, limit=100)] == [1]


async def test_clear_forgets_one_chat_only(store):
    await store.add(10, _message(1))
    await store.add(20, _message(1))
    await store.clear(10)
    assert await store.recent(10, limit=10) == []
    assert len(await store.recent(20, limit=10)) == 1


async def test_sqlite_survives_reopen_in_wal_mode(tmp_path):
    path = tmp_path / "nested" / "history.sqlite3"
    first = SqliteHistoryStore(path, max_messages=10)
    await first.add(1, _message(1))
    await first.close()
    second = SqliteHistoryStore(path, max_messages=10)
    assert await second.get(1, 1) == _message(1)
    assert (await second._run("PRAGMA journal_mode"))[0][0] == "wal"
    await second.close()


async def test_redis_survives_a_new_client(redis_server):
    prefix = f"test:{uuid.uuid4().hex}"
    first = RedisHistoryStore(redis_server, max_messages=10, prefix=prefix)
    await first.add(1, _message(1))
    await first.close()
    second = RedisHistoryStore(redis_server, max_messages=10, prefix=prefix)
    assert await second.recent(1, limit=5) == [_message(1)]
    await second.close()


def test_unwritable_sqlite_path_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot open the bot's history database .*SOBESEDNIK_BOT_STORAGE"):
        SqliteHistoryStore(blocker / "history.sqlite3", max_messages=10)


async def test_sqlite_files_are_private(tmp_path):
    store = SqliteHistoryStore(tmp_path / "history.sqlite3", max_messages=5)
    await store.add(1, _message(1))
    files = sorted(tmp_path.iterdir())
    modes = {path.name: path.stat().st_mode & 0o777 for path in files}
    await store.close()
    assert modes == {"history.sqlite3": 0o600, "history.sqlite3-shm": 0o600, "history.sqlite3-wal": 0o600}


async def test_a_database_deleted_while_running_is_recreated_with_its_messages(tmp_path, caplog):
    path = tmp_path / "history.sqlite3"
    store = SqliteHistoryStore(path, max_messages=5)
    await store.add(1, _message(1))
    for name in ["history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm"]:
        (tmp_path / name).unlink()
    await store.add(1, _message(2))
    await store.close()
    assert f"history database {path} was deleted while the bot ran" in caplog.text
    reopened = SqliteHistoryStore(path, max_messages=5)
    try:
        assert [m.message_id for m in await reopened.recent(1, 10)] == [1, 2]
    finally:
        await reopened.close()


async def test_an_unwritable_database_keeps_messages_in_memory_until_it_can_write(tmp_path, caplog):
    path = tmp_path / "history.sqlite3"
    store = SqliteHistoryStore(path, max_messages=5)
    await store.add(1, _message(1))
    # Tests run as root, whom file modes do not stop: SQLite's own read-only switch gives the same error.
    store._db.execute("PRAGMA query_only=ON")
    await store.add(1, _message(2))  # no error for the handler: the message is kept
    assert [m.message_id for m in await store.recent(1, 10)] == [1, 2]
    assert (await store.get(1, 2)) == _message(2)
    assert store.problem == f"cannot write the history database {path} (attempt to write a readonly database); " \
                            "1 message(s) kept in memory"
    assert caplog.text.count("cannot write the history database") == 1
    store._db.execute("PRAGMA query_only=OFF")
    await store.add(1, _message(3))
    assert store.problem is None
    await store.close()
    reopened = SqliteHistoryStore(path, max_messages=5)
    try:
        assert [m.message_id for m in await reopened.recent(1, 10)] == [1, 2, 3]
    finally:
        await reopened.close()


async def test_a_chats_persona_is_kept_apart_from_its_messages(store):
    assert await store.get_persona(1) is None
    await store.set_persona(1, "anna")
    await store.set_persona(2, "boris")
    await store.set_persona(1, "vera")
    await store.add(1, StoredMessage(1, "user", "привет"))
    await store.clear(1)  # /reset forgets the conversation, not whom the chat talks to
    assert (await store.get_persona(1), await store.get_persona(2)) == ("vera", "boris")
    assert await store.recent(1, 5) == []
