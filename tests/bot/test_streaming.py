"""Streamed replies end to end: the real bot over HTTP between the fake Bot API and the scripted chat service.

Private chats get growing `sendMessageDraft`s and one final `sendMessage`; groups a message edited as the text
grows. The pace comes from the scripted service (`delay` between pieces) and the bot's intervals; the checks
are on what was sent, and bounds on how often, never on how fast.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import pairwise

import pytest

from fakes.openai_service import FakeChatService
from fakes.telegram_api import BOT_USERNAME, FakeTelegramAPI
from sobesednik.bot import texts
from sobesednik.bot.history import StoredMessage, open_store
from sobesednik.bot.settings import BotSettings
from sobesednik.bot.streaming import TELEGRAM_MESSAGE_LIMIT, DraftGate, cut_part

from .conftest import running_bot

CHAT = 501
GROUP = -100777
SLOW = ["Привет", ", как", " у тебя", " дела", "? Я", " тут", "."]


async def say(api: FakeTelegramAPI, text: str, chat_id: int = CHAT, count: int = 1, **kwargs) -> list[dict]:
    """Push a message and wait for `count` more sendMessage calls in that chat; return those calls."""
    before = len(api.sent("sendMessage", chat_id))
    api.push_message(chat_id, text, **kwargs)
    return (await api.wait_for("sendMessage", before + count, chat_id=chat_id, timeout=20))[before:]


async def history(settings: BotSettings, chat_id: int = CHAT, replies: int = 1) -> list[StoredMessage]:
    """The chat's stored messages once `replies` of the bot's are there (the bot stores right after sending)."""
    store = open_store(settings.storage, max_messages=200)
    try:
        async with asyncio.timeout(20):
            while True:
                stored = await store.recent(chat_id, 50)
                if sum(m.role == "assistant" for m in stored) >= replies:
                    return stored
                await asyncio.sleep(0.05)
    finally:
        await store.close()


def _with(settings: BotSettings, **changes) -> BotSettings:
    return BotSettings(**{**settings.model_dump(), **changes})


@pytest.mark.parametrize("storage", ["sqlite", "redis"])
async def test_private_reply_grows_in_drafts_then_arrives_once(
    fake_api, chat_service: FakeChatService, scripted_settings, storage, request
):
    settings = scripted_settings
    chat = CHAT
    if storage == "redis":
        settings = _with(settings, storage=request.getfixturevalue("redis_server"))
        chat = 7000 + id(request) % 100000  # the session's redis-server is shared: a chat of this test alone
    chat_service.pieces, chat_service.delay = SLOW, 0.3
    async with running_bot(settings, fake_api):
        (sent,) = await say(fake_api, "привет", chat)
        stored = await history(settings, chat)
    drafts = fake_api.sent("sendMessageDraft", chat)
    reply = chat_service.reply
    assert sent["text"] == reply
    assert len(drafts) >= 2
    shown = [draft["text"] for draft in drafts]
    assert all(reply.startswith(text) for text in shown)
    assert all(len(a) < len(b) for a, b in pairwise(shown))  # growing, no repeats
    assert {draft["draft_id"] for draft in drafts} == {1}  # one draft id per reply: the message answered
    assert chat_service.requests[-1]["stream"] is True
    for call in [*drafts, sent]:
        assert "parse_mode" not in call  # plain text: model output cannot fail to parse
    assert [(m.role, m.text) for m in stored] == [("user", "привет"), ("assistant", reply)]


async def test_drafts_are_throttled_to_the_interval(fake_api, chat_service, scripted_settings):
    chat_service.pieces, chat_service.delay = ["слово "] * 150, 0.01
    async with running_bot(scripted_settings, fake_api):
        (sent,) = await say(fake_api, "расскажи длинно")
    drafts = [call for call in fake_api.calls if call.method == "sendMessageDraft"]
    final = next(call for call in fake_api.calls if call.method == "sendMessage")
    # Drafts start no closer than the interval apart; the final message comes after the last one.
    elapsed = final.at - drafts[0].at
    assert 1 <= len(drafts) <= elapsed / scripted_settings.stream_interval + 2
    assert len(drafts) < len(chat_service.pieces)
    assert sent["text"] == chat_service.reply.strip()


async def test_flood_control_on_drafts_skips_them_and_still_delivers(fake_api, chat_service, scripted_settings):
    chat_service.pieces, chat_service.delay = SLOW, 0.25
    fake_api.fail_next("sendMessageDraft", retry_after=60)  # sleeping on it would time the test out
    async with running_bot(scripted_settings, fake_api):
        (sent,) = await say(fake_api, "привет")
    draft_calls = [call.method for call in fake_api.calls if call.method.startswith("sendMessageDraft")]
    assert draft_calls == ["sendMessageDraft:429"]  # the pause covers the rest of this reply
    assert sent["text"] == chat_service.reply
    assert len(fake_api.sent("sendMessage", CHAT)) == 1


async def test_draft_error_falls_back_to_complete_replies_logged_once(
    fake_api, chat_service, scripted_settings, caplog
):
    caplog.set_level(logging.WARNING)
    chat_service.pieces, chat_service.delay = SLOW, 0.25
    fake_api.reject("sendMessageDraft", "Bad Request: TEXTDRAFT_PEER_INVALID")
    async with running_bot(scripted_settings, fake_api):
        (first,) = await say(fake_api, "привет")
        (second,) = await say(fake_api, "ещё")
    assert [call.method for call in fake_api.calls if "Draft" in call.method] == ["sendMessageDraft:400"]
    assert first["text"] == second["text"] == chat_service.reply
    assert [request.get("stream", False) for request in chat_service.requests] == [True, False]  # off drafts
    warnings = [record for record in caplog.records if "drafts off" in record.getMessage()]
    assert len(warnings) == 1 and "TEXTDRAFT_PEER_INVALID" in warnings[0].getMessage()


@pytest.mark.parametrize("json_body", [True, False], ids=["bot-api-404", "plain-404"])
async def test_server_without_send_message_draft_answers_once(
    fake_api, chat_service, scripted_settings, json_body
):
    chat_service.pieces, chat_service.delay = SLOW, 0.2
    fake_api.lack("sendMessageDraft", json_body=json_body)
    async with running_bot(scripted_settings, fake_api):
        (sent,) = await say(fake_api, "привет")
        await say(fake_api, "привет", 502)  # another chat: the server lacks the method for every chat
        stored = await history(scripted_settings)
    assert sent["text"] == chat_service.reply
    assert len(fake_api.sent("sendMessage", CHAT)) == 1
    assert [call.method for call in fake_api.calls if "Draft" in call.method] == ["sendMessageDraft:404"]
    assert [(m.role, m.text) for m in stored] == [("user", "привет"), ("assistant", chat_service.reply)]


async def test_long_streamed_reply_is_sent_in_parts_stored_once(fake_api, chat_service, scripted_settings):
    chat_service.pieces = ["слово " * 50] * 30  # 9000 characters
    async with running_bot(scripted_settings, fake_api):
        parts = await say(fake_api, "расскажи", count=3)
        stored = await history(scripted_settings, replies=3)
    texts_sent = [part["text"] for part in parts]
    assert all(len(text) <= TELEGRAM_MESSAGE_LIMIT for text in texts_sent)
    assert " ".join(texts_sent) == chat_service.reply.strip()
    assert all(len(draft["text"]) <= TELEGRAM_MESSAGE_LIMIT for draft in fake_api.sent("sendMessageDraft"))
    assert [m.text for m in stored if m.role == "assistant"] == texts_sent


async def test_service_dying_mid_stream_sends_the_partial_text_and_the_apology(
    fake_api, chat_service, scripted_settings
):
    chat_service.pieces, chat_service.delay, chat_service.die_after = SLOW, 0.2, 3
    async with running_bot(scripted_settings, fake_api):
        partial, apology = await say(fake_api, "привет", count=2)
        stored = await history(scripted_settings)
    assert partial["text"] == "".join(SLOW[:3])
    assert apology["text"] == texts.SERVICE_DOWN
    assert [(m.role, m.text) for m in stored] == [("user", "привет"), ("assistant", partial["text"])]


async def test_stream_off_sends_complete_replies(fake_api, chat_service, scripted_settings):
    async with running_bot(_with(scripted_settings, stream="off"), fake_api):
        (sent,) = await say(fake_api, "привет")
    assert sent["text"] == chat_service.reply
    assert fake_api.sent("sendMessageDraft") == []
    assert "stream" not in chat_service.requests[-1]


async def _mention_in_group(api: FakeTelegramAPI) -> list[dict]:
    text = f"@{BOT_USERNAME} как дела?"
    return await say(api, text, GROUP, chat_type="supergroup", entities=api.mention(text))


async def test_group_reply_is_one_message_edited_as_it_grows(fake_api, chat_service, scripted_settings):
    chat_service.pieces, chat_service.delay = SLOW, 0.25
    async with running_bot(scripted_settings, fake_api):
        (first,) = await _mention_in_group(fake_api)
        # The reply is stored after its final edit.
        stored = [m for m in await history(scripted_settings, GROUP) if m.role == "assistant"]
    edits = [call for call in fake_api.calls if call.method == "editMessageText"]
    reply = chat_service.reply
    (bot_message,) = fake_api.bot_messages(GROUP)
    assert first["reply_parameters"]["message_id"] == 1 and reply.startswith(first["text"])
    assert fake_api.sent("sendMessageDraft") == []  # drafts are for private chats only
    assert bot_message["text"] == reply == edits[-1].params["text"]
    shown = [first["text"], *(edit.params["text"] for edit in edits)]
    assert all(a != b for a, b in pairwise(shown))  # an unchanged edit is skipped
    elapsed = edits[-1].at - next(c.at for c in fake_api.calls if c.method == "sendMessage")
    assert len(edits) <= elapsed / scripted_settings.stream_group_interval + 2
    assert [(m.message_id, m.text) for m in stored] == [(bot_message["message_id"], reply)]


async def test_group_edit_flood_control_still_ends_with_the_reply(fake_api, chat_service, scripted_settings):
    chat_service.pieces, chat_service.delay = SLOW, 0.25
    fake_api.fail_next("editMessageText", retry_after=1)
    async with running_bot(scripted_settings, fake_api):
        await _mention_in_group(fake_api)
        stored = [m.text for m in await history(scripted_settings, GROUP) if m.role == "assistant"]
    assert next(call.method for call in fake_api.calls if call.method.startswith("edit")) == "editMessageText:429"
    assert [fake_api.bot_messages(GROUP)[0]["text"]] == [chat_service.reply] == stored


async def test_group_interval_zero_sends_once(fake_api, chat_service, scripted_settings):
    async with running_bot(_with(scripted_settings, stream_group_interval=0), fake_api):
        (sent,) = await _mention_in_group(fake_api)
    assert sent["text"] == chat_service.reply
    assert fake_api.sent("editMessageText") == []
    assert "stream" not in chat_service.requests[-1]


def test_cut_part_cuts_at_a_space_and_keeps_short_text_whole():
    assert cut_part("привет") == ("привет", "")
    head, rest = cut_part("ab cd ef", limit=6)
    assert (head, rest) == ("ab cd", "ef")
    assert cut_part("я" * 10, limit=4) == ("яяяя", "яяяяяя")  # no space near the limit: a hard cut


def test_draft_gate_switches_off_a_chat_or_for_a_missing_method_every_chat():
    from aiogram.exceptions import TelegramBadRequest, TelegramNotFound
    from aiogram.methods import SendMessageDraft

    method = SendMessageDraft(chat_id=1, draft_id=1, text="x")
    gate = DraftGate(cooldown=600)
    gate.switch_off(1, TelegramBadRequest(method=method, message="Bad Request: TEXTDRAFT_PEER_INVALID"))
    assert (gate.allowed(1), gate.allowed(2)) == (False, True)
    gate.switch_off(2, TelegramNotFound(method=method, message="Not Found: method not found"))
    assert (gate.allowed(2), gate.allowed(3)) == (False, False)
    expired = DraftGate(cooldown=0)  # the cooldown is over at once: drafts are tried again
    expired.switch_off(1, TelegramNotFound(method=method, message="Not Found"))
    assert expired.allowed(1)
