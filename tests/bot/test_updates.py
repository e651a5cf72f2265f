"""Hostile and repeated updates, and shutdown mid-reply: the real bot over HTTP against the fake Bot API.

An update that does not parse is skipped (by id, no text in the log) and the ones after it are answered; a body
that is not JSON gets 400 from the webhook; an update delivered twice is answered once; a bot stopped while it
generates a reply sends it before it closes (and one past `shutdown_timeout` is cancelled before anything closes).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import aiohttp
import pytest

from fakes.telegram_api import FakeTelegramAPI
from sobesednik.bot.history import open_store
from sobesednik.bot.settings import BotSettings
from sobesednik.bot.updates import SEEN_TTL, RedisRecentUpdates

from .conftest import free_port, running_bot

CHAT = 501
SECRET_TEXT = "пароль от сейфа 1234"  # another user's message inside a malformed update: must never reach the log


def _with(settings: BotSettings, **changes) -> BotSettings:
    return BotSettings(**{**settings.model_dump(), **changes})


async def _until(predicate, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _webhook(settings: BotSettings) -> tuple[BotSettings, str]:
    port = free_port()
    settings = _with(settings, webhook_url="https://bot.example.org/telegram/webhook", webhook_secret="s3cret-hook",
                     webhook_port=port)
    return settings, f"http://127.0.0.1:{port}/telegram/webhook"


@pytest.mark.parametrize(
    "bad",
    [
        {"message": {"message_id": 1, "date": 1, "from": {"id": 9, "is_bot": False, "first_name": "Ю"},
                     "text": SECRET_TEXT}},  # no chat
        {"message": {"chat": {"id": 9, "type": "private"}, "text": SECRET_TEXT}},  # no date, no message_id
        {"message": SECRET_TEXT},  # a message given as a string
    ],
)
async def test_malformed_update_is_skipped_and_later_ones_answered(fake_api, scripted_settings, bad, caplog):
    caplog.set_level(logging.DEBUG)
    async with running_bot(scripted_settings, fake_api):
        fake_api.push_update(bad)
        bad_id = fake_api.last_update["update_id"]
        fake_api.push_message(CHAT, "привет")
        await fake_api.wait_for("sendMessage", 1, chat_id=CHAT)
        polls = len(fake_api.sent("getUpdates"))
    assert fake_api.sent("sendMessage", CHAT)[0]["text"] == "Привет, как дела?"
    # The offset moved past the bad update: no getUpdates was answered with it again.
    assert all(call["offset"] > bad_id for call in fake_api.sent("getUpdates")[1:])
    assert polls <= 4
    assert f"update {bad_id} skipped" in caplog.text
    assert SECRET_TEXT not in caplog.text
    assert "пароль" not in caplog.text


async def test_webhook_answers_400_to_a_body_that_is_not_json(fake_api, scripted_settings):
    settings, local = _webhook(scripted_settings)
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook", "Content-Type": "application/json"}
    async with running_bot(settings, fake_api), aiohttp.ClientSession() as session:
        async with session.post(local, data=b"{not json", headers=headers) as response:
            assert response.status == 400
        async with session.post(local, json={"update_id": 5, "message": SECRET_TEXT}, headers=headers) as response:
            assert response.status == 200  # parses as JSON but not as an update: skipped, not retried forever


async def test_webhook_redelivery_is_answered_once(fake_api, scripted_settings, chat_service):
    settings, local = _webhook(scripted_settings)
    headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-hook"}
    async with running_bot(settings, fake_api), aiohttp.ClientSession() as session:
        fake_api.webhook["url"] = local
        fake_api.push_message(CHAT, "привет")
        await fake_api.wait_for("sendMessage", 1, chat_id=CHAT)
        # Telegram did not see the first answer in time and delivers the update again.
        async with session.post(local, json=fake_api.last_update, headers=headers) as response:
            assert response.status == 200
        # An unrelated chat's reply takes a whole generation: by then a second answer would have been sent.
        fake_api.push_message(CHAT + 1, "и мне", user=fake_api.user(CHAT + 1))
        await fake_api.wait_for("sendMessage", 1, chat_id=CHAT + 1)
    assert len(fake_api.sent("sendMessage", CHAT)) == 1
    assert len(chat_service.requests) == 2


async def test_replicas_share_the_seen_update_ids_with_an_expiry(redis_server):
    prefix = f"test:{uuid.uuid4().hex}"
    one, two = RedisRecentUpdates(redis_server, prefix=prefix), RedisRecentUpdates(redis_server, prefix=prefix)
    try:
        assert await one.first(7, 42) is True
        assert await two.first(7, 42) is False
        assert 0 < await two._redis.ttl(f"{prefix}:update:7:42") <= SEEN_TTL
        assert await two.first(7, 43) is True
        assert await two.first(8, 42) is True  # another bot on the same Redis: its own ids
    finally:
        await one.close()
        await two.close()


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_shutdown_waits_for_the_reply_being_generated(fake_api, chat_service, scripted_settings, mode):
    settings, local = _webhook(scripted_settings) if mode == "webhook" else (scripted_settings, "")
    chat_service.pieces, chat_service.delay = ["Секунду", ", сейчас", " отвечу", "."], 0.3
    async with running_bot(settings, fake_api):
        if local:
            fake_api.webhook["url"] = local
        fake_api.push_message(CHAT, "ты тут?")
        await _until(lambda: chat_service.requests)
    # Stopped mid-generation: the reply still went out before the session closed, and was stored once.
    assert [call["text"] for call in fake_api.sent("sendMessage", CHAT)] == ["Секунду, сейчас отвечу."]
    store = open_store(scripted_settings.storage, max_messages=200)
    try:
        stored = await store.recent(CHAT, 50)
    finally:
        await store.close()
    assert [(m.role, m.text) for m in stored] == [("user", "ты тут?"), ("assistant", "Секунду, сейчас отвечу.")]


async def test_a_reply_past_the_shutdown_timeout_is_cancelled_before_anything_closes(
    fake_api: FakeTelegramAPI, chat_service, scripted_settings, caplog
):
    settings = _with(scripted_settings, shutdown_timeout=0.2)
    chat_service.pieces, chat_service.delay = ["Долгий", " ответ", "."], 2.0
    async with running_bot(settings, fake_api):
        fake_api.push_message(CHAT, "ты тут?")
        update_id = fake_api.last_update["update_id"]
        await _until(lambda: chat_service.requests)
    assert fake_api.sent("sendMessage", CHAT) == []
    assert f"updates [{update_id}] not answered within shutdown_timeout (0.2 s)" in caplog.text
    # Cancelled, not failing on a closed session or store.
    assert f"update {update_id} failed" not in caplog.text
