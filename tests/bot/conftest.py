"""Fixtures of the bot tests: a bot token, the fake Bot API server, a real redis-server, settings pointing at them.

`settings` talks to the real `sobesednik serve` (tiny model) through a recording proxy; `scripted_settings` to
the scripted chat service (`fakes/openai_service.py`), for replies whose pace and failures a test chooses.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fakes.openai_service import FakeChatService
from fakes.telegram_api import FakeTelegramAPI
from sobesednik.bot.main import run_bot
from sobesednik.bot.settings import BotSettings

from .proxy import RecordingProxy

TOKEN = "123456789:AAEexampleexampleexampleexample_-12"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI(TOKEN) as api:
        yield api


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, no persistence; its URL. Skipped only without the binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server); CI installs it")
    directory: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise RuntimeError(f"redis-server did not start on port {port}:\n{output}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def service_url(tiny_model_dir: Path) -> Iterator[str]:
    """The real `sobesednik serve` process with the tiny model, shared by the bot tests of the session."""
    from sobesednik.supervisor import run_service

    with run_service(tiny_model_dir) as service:
        yield service.url


@pytest.fixture
async def proxy(service_url: str) -> AsyncIterator[RecordingProxy]:
    async with RecordingProxy(service_url, free_port()) as proxy:
        yield proxy


@pytest.fixture
def settings(fake_api: FakeTelegramAPI, proxy: RecordingProxy, tmp_path: Path) -> BotSettings:
    """Settings of a bot that talks to the fake Bot API and, through the recording proxy, to the real service."""
    return BotSettings(
        token=TOKEN,
        telegram_api=fake_api.base_url,
        service_url=proxy.url,
        service_deadline=2,  # seconds: the service-down test waits this long before the apology
        storage=f"sqlite:///{tmp_path}/history.sqlite3",
        max_tokens=8,  # the tiny model talks nonsense anyway; short replies keep the tests fast
    )


@pytest.fixture
async def chat_service() -> AsyncIterator[FakeChatService]:
    async with FakeChatService() as service:
        yield service


@pytest.fixture
def scripted_settings(fake_api: FakeTelegramAPI, chat_service: FakeChatService, tmp_path: Path) -> BotSettings:
    """Settings of a bot that talks to the fake Bot API and the scripted chat service."""
    return BotSettings(
        token=TOKEN,
        telegram_api=fake_api.base_url,
        service_url=chat_service.url,
        service_deadline=2,
        storage=f"sqlite:///{tmp_path}/history.sqlite3",
        stream_interval=0.2,
        stream_group_interval=1.0,
    )


@asynccontextmanager
async def running_bot(settings: BotSettings, fake_api: FakeTelegramAPI) -> AsyncIterator[None]:
    """Run the real bot (`run_bot`) in this event loop until the block ends; ready once it polls or listens."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(settings, stop))
    ready = "setWebhook" if settings.webhook_url else "getUpdates"
    waiting = asyncio.create_task(fake_api.wait_for(ready, len(fake_api.sent(ready)) + 1))
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiting.cancel()
        task.result()  # raises what stopped the bot
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
