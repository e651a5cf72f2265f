"""The container healthcheck: a heartbeat file in polling mode, GET /healthz in webhook mode, one line when down."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time

from sobesednik.bot.health import MAX_AGE, check
from sobesednik.bot.history import SqliteHistoryStore
from sobesednik.bot.settings import BotSettings

from .conftest import TOKEN, free_port, running_bot


def _with(settings: BotSettings, **changes) -> BotSettings:
    return BotSettings(**{**settings.model_dump(), **changes})


async def test_polling_bot_keeps_a_fresh_heartbeat(fake_api, scripted_settings, tmp_path):
    settings = _with(scripted_settings, heartbeat_file=tmp_path / "run" / "heartbeat")
    assert "no heartbeat" in check(settings)
    async with running_bot(settings, fake_api):
        # An edit only updates the history: it ends the long poll without a reply.
        fake_api.push_message(501, "правка", edit_of=1)
        await fake_api.wait_for("getUpdates", 2)
        healthy = check(settings)
        stale = check(settings, now=time.time() + MAX_AGE + 1)
    assert healthy is None
    assert "polling stopped" in stale


async def test_webhook_bot_answers_the_health_probe_while_it_runs(fake_api, scripted_settings):
    settings = _with(
        scripted_settings,
        webhook_url="https://bot.example.org/telegram/webhook",
        webhook_secret="s3cret-webhook",
        webhook_port=free_port(),
    )
    async with running_bot(settings, fake_api):
        healthy = await asyncio.to_thread(check, settings)  # the listener runs in this event loop
    assert healthy is None
    assert "does not answer" in check(settings)


async def test_webhook_health_probe_reports_history_that_cannot_be_written(fake_api, scripted_settings, tmp_path):
    directory = tmp_path / "state"
    port = free_port()
    settings = _with(scripted_settings, webhook_url="https://bot.example.org/telegram/webhook",
                     webhook_secret="s3cret-webhook", webhook_port=port,
                     storage=f"sqlite:///{directory}/history.sqlite3")
    async with running_bot(settings, fake_api):
        fake_api.webhook["url"] = f"http://127.0.0.1:{port}/telegram/webhook"
        shutil.rmtree(directory)
        directory.write_text("")  # a file where the database's directory was: nothing can be written
        fake_api.push_message(501, "раз")
        await fake_api.wait_for("sendMessage", 1, chat_id=501)
        unhealthy = await asyncio.to_thread(check, settings)
    assert unhealthy is not None and unhealthy.startswith(f"cannot write the history database {directory}")


def test_health_command_fails_with_one_line(tmp_path):
    env = {**os.environ, "SOBESEDNIK_BOT_TOKEN": TOKEN, "SOBESEDNIK_BOT_HEARTBEAT_FILE": str(tmp_path / "beat")}
    result = subprocess.run([sys.executable, "-m", "sobesednik.bot.health"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"unhealthy: no heartbeat at {tmp_path / 'beat'}: the bot has not polled Telegram yet"
    ]
    (tmp_path / "beat").touch()
    assert subprocess.run([sys.executable, "-m", "sobesednik.bot.health"], env=env, cwd=tmp_path,
                          timeout=60).returncode == 0


async def test_history_that_cannot_be_written_makes_the_bot_unhealthy_until_it_can(fake_api, scripted_settings,
                                                                                  tmp_path, caplog):
    directory = tmp_path / "state"
    settings = _with(scripted_settings, heartbeat_file=tmp_path / "heartbeat",
                     storage=f"sqlite:///{directory}/history.sqlite3")
    async with running_bot(settings, fake_api):
        fake_api.push_message(501, "раз")
        await fake_api.wait_for("sendMessage", 1, chat_id=501)
        # Someone removes the bot's state directory and leaves a file in its place: nothing can be written there.
        shutil.rmtree(directory)
        directory.write_text("")
        fake_api.push_message(501, "два")
        await fake_api.wait_for("sendMessage", 2, chat_id=501)
        fake_api.push_message(501, "правка", edit_of=1)  # ends one more long poll: the heartbeat is rewritten
        await fake_api.wait_for("getUpdates", len(fake_api.sent("getUpdates")) + 1)
        unhealthy = check(settings)
        directory.unlink()  # the way is free again: the next write recreates the database
        fake_api.push_message(501, "три")
        await fake_api.wait_for("sendMessage", 3, chat_id=501)
        fake_api.push_message(501, "правка 2", edit_of=3)  # "два" (2 is the first reply)
        await fake_api.wait_for("getUpdates", len(fake_api.sent("getUpdates")) + 1)
        healthy = check(settings)
    assert unhealthy is not None and unhealthy.startswith(f"cannot write the history database {directory}")
    assert healthy is None
    # Nothing was lost: the turns and replies from before and during the outage are in the recreated file.
    store = SqliteHistoryStore(directory / "history.sqlite3", max_messages=200)
    try:
        texts = [m.text for m in await store.recent(501, 50) if m.role == "user"]
    finally:
        await store.close()
    assert texts == ["правка", "правка 2", "три"]
