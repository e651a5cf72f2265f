"""/persona against a scripted service: the list comes from /v1/models, the choice is kept per chat (SQLite and
Redis alike, across a restart), every request names it as `model`, and /start says it."""

from __future__ import annotations

import pytest

from fakes.telegram_api import BOT_USERNAME, FakeTelegramAPI
from sobesednik.bot import texts
from sobesednik.bot.settings import BotSettings

from ..conftest import running_bot

CHAT = 601


async def say(api: FakeTelegramAPI, text: str, chat_id: int = CHAT) -> str:
    """Push a message (a command when it starts with /) and return the text of the bot's next message."""
    before = len(api.sent("sendMessage", chat_id))
    command = text.split()[0] if text.startswith("/") else ""
    entities = [{"type": "bot_command", "offset": 0, "length": len(command)}] if command else None
    api.push_message(chat_id, text, **({"entities": entities} if entities else {}))
    return (await api.wait_for("sendMessage", before + 1, chat_id=chat_id))[-1]["text"]


@pytest.mark.parametrize("storage", ["sqlite", "redis"])
async def test_persona_is_listed_chosen_kept_and_sent_as_the_model(fake_api, scripted_settings, chat_service,
                                                                   storage, request):
    chat_service.models = ["base", "anna", "boris"]
    settings = BotSettings(**{**scripted_settings.model_dump(), "stream": "off"})
    chat = CHAT if storage == "sqlite" else CHAT + 1000 + len(fake_api.sent("sendMessage"))
    if storage == "redis":  # the session's redis-server is shared: a chat id no other test uses
        settings = BotSettings(**{**settings.model_dump(), "storage": request.getfixturevalue("redis_server")})
    async with running_bot(settings, fake_api):
        listing = await say(fake_api, "/persona", chat)
        unknown = await say(fake_api, "/persona nikto", chat)
        chosen = await say(fake_api, "/persona anna", chat)
        await say(fake_api, "привет", chat)
    assert listing == texts.PERSONA_LIST.format(current=texts.PERSONA_NONE, names="base, anna, boris",
                                                example="boris")
    assert unknown == texts.PERSONA_UNKNOWN.format(persona="nikto", names="base, anna, boris")
    assert chosen == texts.PERSONA_SET.format(persona="anna")
    assert chat_service.requests[-1]["model"] == "anna"
    async with running_bot(settings, fake_api):  # a restart keeps the chat's choice
        start = await say(fake_api, "/start", chat)
        await say(fake_api, "как дела?", chat)
    assert start.startswith(texts.START.format(username=BOT_USERNAME) + "\n\n"
                            + texts.START_PERSONA.format(persona="anna"))
    assert chat_service.requests[-1]["model"] == "anna"


async def test_a_chat_without_a_choice_gets_the_default_persona_or_none(fake_api, scripted_settings, chat_service):
    settings = BotSettings(**{**scripted_settings.model_dump(), "stream": "off"})
    async with running_bot(settings, fake_api):
        start = await say(fake_api, "/start")
        await say(fake_api, "привет")
    assert "model" not in chat_service.requests[-1]  # no persona anywhere: the service's default model
    assert texts.START_PERSONA.format(persona="") not in start
    settings = BotSettings(**{**settings.model_dump(), "persona": "boris"})
    async with running_bot(settings, fake_api):
        start = await say(fake_api, "/start")
        await say(fake_api, "привет")
    assert chat_service.requests[-1]["model"] == "boris"
    assert texts.START_PERSONA.format(persona="boris") in start
