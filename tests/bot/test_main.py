"""The real aiogram bot end to end over HTTP: fake Bot API on 127.0.0.1 ↔ bot ↔ proxy ↔ real `sobesednik serve`.

Each test starts the bot with `run_bot` (long polling, or webhook) in the test's event loop, pushes updates
through the fake Bot API server, and checks what the bot sent to Telegram and what the service received.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from asyncio.subprocess import PIPE, STDOUT

import aiohttp
import pytest

from fakes.telegram_api import BOT_USERNAME, FakeTelegramAPI
from sobesednik.bot import texts
from sobesednik.bot.settings import BotSettings

from .conftest import TOKEN, free_port, running_bot

pytestmark = pytest.mark.slow  # starts the service process (once per session) and a bot per test

CHAT = 501  # a private chat: its id is the user's id
GROUP = -100777


async def say(api: FakeTelegramAPI, text: str, chat_id: int = CHAT, **kwargs) -> dict:
    """Push a message and wait for the bot's next sendMessage in that chat; return what it sent."""
    before = len(api.sent("sendMessage", chat_id))
    api.push_message(chat_id, text, **kwargs)
    return (await api.wait_for("sendMessage", before + 1, chat_id=chat_id))[-1]


async def test_start_help_and_command_menu(fake_api, settings):
    async with running_bot(settings, fake_api):
        start = await say(fake_api, "/start", entities=[{"type": "bot_command", "offset": 0, "length": 6}])
        help_ = await say(fake_api, "/help", entities=[{"type": "bot_command", "offset": 0, "length": 5}])
    # Streaming is on by default, business mode off: only streaming is mentioned.
    assert start["text"] == f"{texts.START.format(username=BOT_USERNAME)}\n\n{texts.STREAMING_NOTE}"
    assert help_["text"] == f"{texts.HELP.format(username=BOT_USERNAME)}\n\n{texts.STREAMING_NOTE}"
    (menu,) = fake_api.sent("setMyCommands")
    assert [command["command"] for command in menu["commands"]] == ["start", "help", "reset", "persona"]
    assert fake_api.sent("deleteWebhook")


async def test_three_turn_dialogue_reaches_the_service_with_history(fake_api, settings, proxy):
    async with running_bot(settings, fake_api):
        replies = [(await say(fake_api, text))["text"] for text in ["привет", "как дела?", "что делаешь?"]]
    assert len(proxy.requests) == 3
    assert proxy.last_messages == [
        {"role": "user", "content": "привет"},
        {"role": "assistant", "content": replies[0]},
        {"role": "user", "content": "как дела?"},
        {"role": "assistant", "content": replies[1]},
        {"role": "user", "content": "что делаешь?"},
    ]
    assert proxy.requests[-1]["max_tokens"] == 8
    assert fake_api.sent("sendChatAction", CHAT)[0]["action"] == "typing"


async def test_reset_forgets_the_chat(fake_api, settings, proxy):
    async with running_bot(settings, fake_api):
        await say(fake_api, "запомни: синий")
        done = await say(fake_api, "/reset", entities=[{"type": "bot_command", "offset": 0, "length": 6}])
        await say(fake_api, "что я просил запомнить?")
    assert done["text"] == texts.RESET_DONE
    assert proxy.last_messages == [{"role": "user", "content": "что я просил запомнить?"}]


async def test_reply_chain_is_the_context(fake_api, settings, proxy):
    async with running_bot(settings, fake_api):
        await say(fake_api, "первая тема")
        first_reply = fake_api.bot_messages(CHAT)[-1]
        await say(fake_api, "вторая тема")
        await say(fake_api, "вернёмся к первой", reply_to=first_reply["message_id"])
    assert proxy.last_messages == [
        {"role": "user", "content": "первая тема"},
        {"role": "assistant", "content": first_reply["text"]},
        {"role": "user", "content": "вернёмся к первой"},
    ]


async def test_group_answers_mentions_and_keeps_the_rest_as_context(fake_api, settings, proxy):
    alice, bob = fake_api.user(11, "Алиса"), fake_api.user(12, "Боб")
    async with running_bot(settings, fake_api):
        fake_api.push_message(GROUP, "кто-нибудь видел кота?", user=alice, chat_type="supergroup")
        mention = f"@{BOT_USERNAME} а ты видел?"
        sent = await say(fake_api, mention, GROUP, user=bob, chat_type="supergroup", entities=fake_api.mention(mention))
    assert len(fake_api.sent("sendMessage", GROUP)) == 1  # the unaddressed message got no answer
    # Answers the mention as a Telegram reply, sent even if the user deletes the message meanwhile.
    reply = sent["reply_parameters"]
    assert (reply["message_id"], reply["allow_sending_without_reply"]) == (2, True)
    assert proxy.last_messages == [{"role": "user", "content": "кто-нибудь видел кота?\nа ты видел?"}]


async def test_group_reply_to_the_bot_is_answered_and_other_types_ignored(fake_api, settings, proxy):
    # Sent once, complete: the reply to the bot's message comes as soon as that message exists.
    settings = BotSettings(**{**settings.model_dump(), "stream_group_interval": 0})
    async with running_bot(settings, fake_api):
        mention = f"@{BOT_USERNAME} привет"
        await say(fake_api, mention, GROUP, chat_type="group", entities=fake_api.mention(mention))
        (bot_message,) = fake_api.bot_messages(GROUP)
        fake_api.push_message(GROUP, None, chat_type="group", extra={"sticker": _STICKER})
        fake_api.push_message(GROUP, "просто болтаем", chat_type="group")
        await say(fake_api, "ответ боту", GROUP, chat_type="group", reply_to=bot_message["message_id"])
    assert bot_message["reply_to_message"]["message_id"] == 1
    assert len(fake_api.sent("sendMessage", GROUP)) == 2  # mention and reply; not the sticker or the chatter
    assert proxy.last_messages[-1] == {"role": "user", "content": "ответ боту"}
    assert proxy.last_messages[-2]["role"] == "assistant"


async def test_group_reply_probability_one_answers_everything(fake_api, settings, proxy):
    settings = BotSettings(**{**settings.model_dump(), "group_reply_probability": 1.0})
    async with running_bot(settings, fake_api):
        await say(fake_api, "всем привет", GROUP, chat_type="group")
    assert proxy.last_messages == [{"role": "user", "content": "всем привет"}]


async def test_rate_limit_asks_the_user_to_wait(fake_api, settings, proxy):
    settings = BotSettings(**{**settings.model_dump(), "rate_limit_messages": 1, "rate_limit_seconds": 600})
    async with running_bot(settings, fake_api):
        await say(fake_api, "раз")
        note = await say(fake_api, "два")
    # The window runs from the first request: the first reply's generation time has passed off it.
    assert note["text"] in {texts.RATE_LIMITED.format(seconds=seconds) for seconds in range(540, 601)}
    assert len(proxy.requests) == 1


async def test_private_non_text_gets_a_note_and_edits_no_reply(fake_api, settings, proxy):
    async with running_bot(settings, fake_api):
        note = await say(fake_api, None, extra={"sticker": _STICKER})
        first = fake_api.push_message(CHAT, "опечатка")
        await fake_api.wait_for("sendMessage", 2, chat_id=CHAT)
        fake_api.push_message(CHAT, "исправлено", edit_of=first["message_id"])
        await say(fake_api, "дальше")
    assert note["text"] == texts.NON_TEXT
    assert len(fake_api.sent("sendMessage", CHAT)) == 3  # the edit did not trigger a reply
    assert proxy.last_messages[0] == {"role": "user", "content": "исправлено"}


async def test_service_down_apologises_then_recovers_with_the_turn_kept(fake_api, settings, proxy):
    async with running_bot(settings, fake_api):
        await proxy.down()
        apology = await say(fake_api, "ты тут?")
        await proxy.up()
        await say(fake_api, "а теперь?")
    assert apology["text"] == texts.SERVICE_DOWN
    assert proxy.last_messages == [{"role": "user", "content": "ты тут?\nа теперь?"}]


@pytest.mark.parametrize("storage", ["sqlite", "redis"])
async def test_restart_keeps_history(fake_api, settings, proxy, storage, request):
    if storage == "redis":
        settings = BotSettings(**{**settings.model_dump(), "storage": request.getfixturevalue("redis_server")})
        chat = 900 + len(proxy.requests)  # the session's redis-server is shared; use a fresh chat
    else:
        chat = CHAT
    async with running_bot(settings, fake_api):
        reply = (await say(fake_api, "меня зовут Оля", chat))["text"]
    async with running_bot(settings, fake_api):
        await say(fake_api, "как меня зовут?", chat)
    assert proxy.last_messages == [
        {"role": "user", "content": "меня зовут Оля"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "как меня зовут?"},
    ]


async def test_flood_control_retry_after_is_honoured(fake_api, settings):
    fake_api.fail_next("sendMessage", retry_after=1)
    async with running_bot(settings, fake_api):
        sent = await say(fake_api, "привет")
    methods = [call.method for call in fake_api.calls if call.method.split(":")[0] == "sendMessage"]
    assert methods == ["sendMessage:429", "sendMessage"]
    assert sent["chat_id"] == CHAT


async def test_allowlist_ignores_strangers(fake_api, settings, proxy):
    settings = BotSettings(**{**settings.model_dump(), "allowed_ids": [CHAT]})
    async with running_bot(settings, fake_api):
        fake_api.push_message(666, "чужой", user=fake_api.user(666))
        await say(fake_api, "свой")
    assert fake_api.sent("sendMessage", 666) == []
    assert len(proxy.requests) == 1


async def test_webhook_mode_checks_the_secret(fake_api, settings, proxy):
    port = free_port()
    settings = BotSettings(
        **{
            **settings.model_dump(),
            "webhook_url": "https://bot.example.org/telegram/webhook",
            "webhook_secret": "s3cret-webhook",
            "webhook_port": port,
        }
    )
    # A reverse proxy maps the public https URL to the bot's listener; in the test the fake calls it directly.
    local = f"http://127.0.0.1:{port}/telegram/webhook"
    async with running_bot(settings, fake_api):
        assert fake_api.webhook == {"url": settings.webhook_url, "secret_token": "s3cret-webhook"}
        fake_api.webhook["url"] = local
        sent = await say(fake_api, "привет через вебхук")
        async with aiohttp.ClientSession() as session, session.post(
            local, json={"update_id": 99}, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
        ) as response:
            assert response.status == 401
    assert fake_api.webhook_responses == [200]
    assert fake_api.sent("getUpdates") == []
    assert proxy.last_messages == [{"role": "user", "content": "привет через вебхук"}]
    assert sent["text"]


_STICKER = {
    "file_id": "CAAC",
    "file_unique_id": "AgAD",
    "type": "regular",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
}


async def test_secrets_stay_out_of_logs_and_the_key_reaches_the_service(fake_api, settings, proxy, caplog):
    settings = BotSettings(**{**settings.model_dump(), "service_api_key": "sk-bot-secret-key"})
    caplog.set_level(logging.DEBUG)
    async with running_bot(settings, fake_api):
        await say(fake_api, "привет")
        await proxy.down()
        await say(fake_api, "а сейчас?")  # the apology path logs the service error
        await proxy.up()
    assert proxy.headers[0]["Authorization"] == "Bearer sk-bot-secret-key"
    assert "did not answer" in caplog.text
    for secret in [TOKEN, TOKEN.split(":")[1], "sk-bot-secret-key"]:
        assert secret not in caplog.text


async def test_command_stops_cleanly_on_sigterm(fake_api, tmp_path):
    env = {
        **os.environ,
        "SOBESEDNIK_BOT_TOKEN": TOKEN,
        "SOBESEDNIK_BOT_TELEGRAM_API": fake_api.base_url,
        "SOBESEDNIK_BOT_STORAGE": f"sqlite:///{tmp_path}/history.sqlite3",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sobesednik", "bot", env=env, stdout=PIPE, stderr=STDOUT
    )
    try:
        await fake_api.wait_for("getUpdates", timeout=60)
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), timeout=30))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output
    assert "bot stopped" in output
    assert TOKEN.split(":")[1] not in output


def test_missing_token_fails_with_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "sobesednik", "bot"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: SOBESEDNIK_BOT_TOKEN is not set: create a bot with @BotFather in Telegram and put its token into "
        "SOBESEDNIK_BOT_TOKEN (environment or .env)"
    ]


def test_bot_imports_no_torch():
    code = (
        "import sys, sobesednik.bot.main, sobesednik.bot.client, sobesednik.cli\n"
        "heavy = sorted({'torch', 'transformers', 'peft'} & set(sys.modules))\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
