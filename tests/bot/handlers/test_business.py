"""Answering as the owner (Telegram Business), end to end: fake Bot API ↔ real bot ↔ scripted chat service."""

from __future__ import annotations

import asyncio

from fakes.telegram_api import BOT_USERNAME, FakeTelegramAPI
from sobesednik.bot import texts
from sobesednik.bot.handlers.business import business_key
from sobesednik.bot.history import StoredMessage, open_store
from sobesednik.bot.settings import BotSettings

from ..conftest import running_bot

CONNECTION = "biz-connection-1"
OWNER = {"id": 300, "is_bot": False, "first_name": "Ольга"}
CONTACT = {"id": 400, "is_bot": False, "first_name": "Пётр"}
OTHER = {"id": 401, "is_bot": False, "first_name": "Иван"}


def _with(settings: BotSettings, **changes) -> BotSettings:
    return BotSettings(**{**settings.model_dump(), **changes})


async def _stored(settings: BotSettings, chat_id: int, replies: int = 1) -> list[StoredMessage]:
    """The business chat's history once it holds `replies` of the persona's turns."""
    store = open_store(settings.storage, max_messages=200)
    try:
        async with asyncio.timeout(20):
            while True:
                stored = await store.recent(business_key(CONNECTION, chat_id), 50)
                if sum(m.role == "assistant" for m in stored) >= replies:
                    return stored
                await asyncio.sleep(0.05)
    finally:
        await store.close()


def _business_sends(api: FakeTelegramAPI, chat_id: int = CONTACT["id"]) -> list[dict]:
    return [call for call in api.sent("sendMessage", chat_id) if call.get("business_connection_id") == CONNECTION]


async def _suggestion(api: FakeTelegramAPI, count: int = 1) -> dict:
    """The bot's latest message to the owner in its own chat, with the buttons."""
    await api.wait_for("sendMessage", count, chat_id=OWNER["id"], timeout=20)
    return dict(api.bot_messages(OWNER["id"])[-1])  # a copy: the fake edits its own


async def test_suggest_sends_the_owner_a_proposal_and_send_delivers_it(fake_api, chat_service, scripted_settings):
    settings = _with(scripted_settings, business="suggest")
    async with running_bot(settings, fake_api):
        fake_api.push_business_connection(CONNECTION, OWNER)
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "привет, как ты?", user=CONTACT)
        proposal = await _suggestion(fake_api)
        send, skip = proposal["reply_markup"]["inline_keyboard"][0]
        fake_api.push_callback(OWNER, proposal, send["callback_data"])
        (sent,) = await fake_api.wait_for("sendMessage", 1, chat_id=CONTACT["id"])
        stored = await _stored(settings, CONTACT["id"])
        await fake_api.wait_for("editMessageText", 1, chat_id=OWNER["id"])
    reply = chat_service.reply
    assert proposal["text"] == texts.BUSINESS_SUGGESTION.format(name="Пётр", incoming="привет, как ты?", reply=reply)
    assert (send["text"], skip["text"]) == (texts.BUSINESS_SEND_BUTTON, texts.BUSINESS_SKIP_BUTTON)
    assert (sent["text"], sent["business_connection_id"]) == (reply, CONNECTION)
    assert chat_service.requests[-1]["messages"] == [{"role": "user", "content": "привет, как ты?"}]
    # Telegram echoed the sent reply as a business message: still stored once.
    assert [(m.role, m.text) for m in stored] == [("user", "привет, как ты?"), ("assistant", reply)]
    (edit,) = fake_api.sent("editMessageText", OWNER["id"])
    assert edit["text"] == f"{proposal['text']}\n\n{texts.BUSINESS_SENT}"
    allowed = fake_api.sent("getUpdates")[-1]["allowed_updates"]
    assert {"business_connection", "business_message", "callback_query"} <= set(allowed)


async def test_suggest_skip_sends_nothing_to_the_contact(fake_api, chat_service, scripted_settings):
    settings = _with(scripted_settings, business="suggest")
    async with running_bot(settings, fake_api):
        fake_api.push_business_connection(CONNECTION, OWNER)
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "ты где?", user=CONTACT)
        proposal = await _suggestion(fake_api)
        _, skip = proposal["reply_markup"]["inline_keyboard"][0]
        fake_api.push_callback(OWNER, proposal, skip["callback_data"])
        (edit,) = await fake_api.wait_for("editMessageText", 1, chat_id=OWNER["id"])
        fake_api.push_callback(OWNER, proposal, skip["callback_data"])  # pressed twice: already decided
        answers = await fake_api.wait_for("answerCallbackQuery", 2)
    assert edit["text"].endswith(texts.BUSINESS_SKIPPED)
    assert _business_sends(fake_api) == []
    assert [answer["text"] for answer in answers] == [texts.BUSINESS_SKIPPED, texts.BUSINESS_EXPIRED]


async def test_auto_types_then_answers_with_the_owner_turns_as_the_persona(fake_api, chat_service, scripted_settings):
    settings = _with(scripted_settings, business="auto", business_delay=0.3, business_quiet_minutes=0)
    async with running_bot(settings, fake_api):
        # Connected before the bot started: the bot asks Telegram about the connection.
        fake_api.push_business_connection(CONNECTION, OWNER, announce=False)
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "привет", user=CONTACT)
        (first,) = await fake_api.wait_for("sendMessage", 1, chat_id=CONTACT["id"])
        await _stored(settings, CONTACT["id"])
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "я тоже тут", user=OWNER)
        await _stored(settings, CONTACT["id"], replies=2)
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "ну как?", user=CONTACT)
        await fake_api.wait_for("sendMessage", 2, chat_id=CONTACT["id"])
    typing = fake_api.sent("sendChatAction", CONTACT["id"])
    assert typing and all(a["business_connection_id"] == CONNECTION and a["action"] == "typing" for a in typing)
    assert len(_business_sends(fake_api)) == 2
    assert fake_api.sent("getBusinessConnection") == [{"business_connection_id": CONNECTION}]
    assert chat_service.requests[-1]["messages"] == [
        {"role": "user", "content": "привет"},
        {"role": "assistant", "content": f"{first['text']}\nя тоже тут"},
        {"role": "user", "content": "ну как?"},
    ]


async def test_silent_where_the_owner_wrote_recently_and_for_opted_out_contacts(
    fake_api, chat_service, scripted_settings
):
    settings = _with(scripted_settings, business="auto", business_delay=0, business_opt_out=[OTHER["id"] + 1])
    opted_out = {**OTHER, "id": OTHER["id"] + 1}
    async with running_bot(settings, fake_api):
        fake_api.push_business_connection(CONNECTION, OWNER)
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "сейчас отвечу сама", user=OWNER)
        fake_api.push_business_message(CONNECTION, CONTACT["id"], "жду", user=CONTACT)
        fake_api.push_business_message(CONNECTION, opted_out["id"], "не отвечай мне", user=opted_out)
        fake_api.push_business_message(CONNECTION, OTHER["id"], "а мне?", user=OTHER)  # answered: a fresh chat
        await fake_api.wait_for("sendMessage", 1, chat_id=OTHER["id"])
        store = open_store(settings.storage, max_messages=200)
        try:
            quiet_chat = await store.recent(business_key(CONNECTION, CONTACT["id"]), 50)
            opted_out_chat = await store.recent(business_key(CONNECTION, opted_out["id"]), 50)
        finally:
            await store.close()
    assert _business_sends(fake_api) == [] and _business_sends(fake_api, opted_out["id"]) == []
    assert [request["messages"] for request in chat_service.requests] == [[{"role": "user", "content": "а мне?"}]]
    assert [(m.role, m.text) for m in quiet_chat] == [("assistant", "сейчас отвечу сама"), ("user", "жду")]
    assert opted_out_chat == []


async def test_help_mentions_business_mode_only_when_on(fake_api, scripted_settings):
    command = [{"type": "bot_command", "offset": 0, "length": 5}]
    async with running_bot(_with(scripted_settings, business="suggest", stream="off"), fake_api):
        fake_api.push_message(501, "/help", entities=command)
        (on,) = await fake_api.wait_for("sendMessage", 1, chat_id=501)
    async with running_bot(_with(scripted_settings, stream="off"), fake_api):
        fake_api.push_message(501, "/help", entities=command)
        off = (await fake_api.wait_for("sendMessage", 2, chat_id=501))[-1]
    help_text = texts.HELP.format(username=BOT_USERNAME)
    business = texts.BUSINESS_NOTE.format(mode=texts.BUSINESS_MODE_SUGGEST)
    assert on["text"] == f"{help_text}\n\n{business}"
    assert off["text"] == help_text
    assert "business_message" not in fake_api.sent("getUpdates")[-1]["allowed_updates"]
