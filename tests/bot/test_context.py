"""Context building: reply chain first, else recent turns; roles merged; bounded by turns and characters."""

from __future__ import annotations

import pytest

from sobesednik.bot.context import bound_turns, build_context, merge_turns
from sobesednik.bot.history import SqliteHistoryStore, StoredMessage


@pytest.fixture
async def store(tmp_path):
    store = SqliteHistoryStore(tmp_path / "h.sqlite3", max_messages=100)
    yield store
    await store.close()


def test_merge_turns_joins_runs_of_one_role():
    history = [
        StoredMessage(1, "user", "привет"),
        StoredMessage(2, "user", "ты тут?"),
        StoredMessage(3, "assistant", "да"),
        StoredMessage(4, "user", "ок"),
    ]
    assert merge_turns(history) == [
        {"role": "user", "content": "привет\nты тут?"},
        {"role": "assistant", "content": "да"},
        {"role": "user", "content": "ок"},
    ]


def test_bound_turns_drops_oldest_and_leading_assistant():
    turns = [
        {"role": "user", "content": "a" * 10},
        {"role": "assistant", "content": "b" * 10},
        {"role": "user", "content": "c" * 10},
        {"role": "assistant", "content": "d" * 10},
        {"role": "user", "content": "e" * 10},
    ]
    assert [t["content"][0] for t in bound_turns(turns, max_turns=4, max_chars=1000)] == ["c", "d", "e"]
    assert [t["content"][0] for t in bound_turns(turns, max_turns=10, max_chars=35)] == ["c", "d", "e"]
    assert [t["content"][0] for t in bound_turns(turns, max_turns=10, max_chars=1000)] == list("abcde")


def test_bound_turns_cuts_a_long_last_turn_to_its_end():
    (turn,) = bound_turns([{"role": "user", "content": "x" * 90 + "конец"}], max_turns=3, max_chars=10)
    assert turn["content"] == "xxxxxконец"


async def test_recent_turns_without_reply(store):
    chat = [StoredMessage(1, "user", "раз"), StoredMessage(2, "assistant", "два"), StoredMessage(4, "user", "позже")]
    for message in chat:
        await store.add(5, message)
    current = StoredMessage(3, "user", "три")
    assert await build_context(store, 5, current, max_turns=10, max_chars=1000) == [
        {"role": "user", "content": "раз"},
        {"role": "assistant", "content": "два"},
        {"role": "user", "content": "три"},
    ]


async def test_reply_chain_comes_first_and_skips_unrelated_messages(store):
    chat = [
        StoredMessage(1, "user", "кто идёт в кино?"),
        StoredMessage(2, "user", "а что с погодой"),
        StoredMessage(3, "assistant", "я иду", reply_to=1),
        StoredMessage(4, "user", "дождь"),
    ]
    for message in chat:
        await store.add(5, message)
    current = StoredMessage(5, "user", "на какой фильм?", reply_to=3)
    assert await build_context(store, 5, current, max_turns=10, max_chars=1000) == [
        {"role": "user", "content": "кто идёт в кино?"},
        {"role": "assistant", "content": "я иду"},
        {"role": "user", "content": "на какой фильм?"},
    ]


async def test_reply_to_a_forgotten_message_uses_what_is_known(store):
    current = StoredMessage(9, "user", "ответ", reply_to=4)
    assert await build_context(store, 5, current, max_turns=10, max_chars=1000) == [
        {"role": "user", "content": "ответ"}
    ]
