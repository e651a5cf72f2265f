"""The container healthcheck: a heartbeat file in polling mode, GET /healthz in webhook mode, one line when down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from sobesednik.bot.health import MAX_AGE, check
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
