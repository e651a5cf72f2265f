"""The containers' wiring without a Docker engine: the api and bot entrypoints as real processes.

Each process gets the environment its container would: the Dockerfile's `ENV` lines, then compose's
`environment:` interpolated from a `.env`-like mapping. Only what needs a container's network or volumes is
replaced: the service name `api` by 127.0.0.1 and a free port, the volume paths by temp dirs, and the Bot API
URL by the fake Telegram server. The bot must then answer a Telegram message with the model's reply.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import dockerfile
import httpx
import pytest
import yaml

from fakes.telegram_api import FakeTelegramAPI
from sobesednik.supervisor import ServiceHandle, free_port, start_process, stop_process, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAEexampleexampleexampleexample_-12"
# What a user's .env would hold for `make run`.
DOT_ENV = {"SOBESEDNIK_BOT_TOKEN": TOKEN, "SOBESEDNIK_MODELS_DIR": "/unused"}
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")

pytestmark = pytest.mark.slow


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` substitution."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if variables.get(name):
            return variables[name]
        if kind == "?":
            raise AssertionError(f"compose would stop: {rest}")
        return rest if kind == "-" else ""

    return _INTERPOLATION.sub(substitute, str(value))


def container_env(service: str, dockerfile_path: Path) -> dict[str, str]:
    """The SOBESEDNIK_* environment of one container: Dockerfile ENV, overridden by compose's environment."""
    commands = list(dockerfile.parse_file(str(dockerfile_path)))
    last_from = max(i for i, command in enumerate(commands) if command.cmd == "FROM")
    env: dict[str, str] = {}
    for command in commands[last_from:]:
        if command.cmd == "ENV":
            pairs = command.value
            env.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name, value in compose["services"][service]["environment"].items():
        env[name] = interpolate(value, DOT_ENV)
    return {name: value for name, value in env.items() if name.startswith("SOBESEDNIK_")}


async def test_api_and_bot_entrypoints_talk_like_containers(tmp_path: Path, exported_model_dir: Path):
    api_env = container_env("api", REPO_ROOT / "docker" / "api.Dockerfile")
    bot_env = container_env("bot", REPO_ROOT / "docker" / "bot.Dockerfile")

    # The api container reads its model from the `models` volume mounted at /models.
    models_volume = tmp_path / "models"
    models_volume.mkdir()
    model_path = Path(api_env["SOBESEDNIK_API_MODEL"])
    assert model_path.parent == Path("/models")
    (models_volume / model_path.name).symlink_to(exported_model_dir)
    api_env["SOBESEDNIK_API_MODEL"] = str(models_volume / model_path.name)
    assert api_env["SOBESEDNIK_API_HOST"] == "0.0.0.0"  # reachable from the bot's container
    api_env["SOBESEDNIK_API_HOST"] = "127.0.0.1"
    port = free_port()
    api_env["SOBESEDNIK_API_PORT"] = str(port)

    # The bot reaches the api by its service name and keeps history on the `bot-data` volume at /data.
    assert bot_env["SOBESEDNIK_BOT_SERVICE_URL"] == "http://api:8000"
    bot_env["SOBESEDNIK_BOT_SERVICE_URL"] = f"http://127.0.0.1:{port}"
    assert bot_env["SOBESEDNIK_BOT_STORAGE"].startswith("sqlite:////data/")
    bot_env["SOBESEDNIK_BOT_STORAGE"] = f"sqlite:///{tmp_path / 'data' / 'history.sqlite3'}"
    (tmp_path / "data").mkdir()

    api = start_process([sys.executable, "-m", "sobesednik", "serve"], env=api_env, log_path=tmp_path / "api.log")
    try:
        await asyncio.to_thread(wait_ready, ServiceHandle(api, f"http://127.0.0.1:{port}", port, tmp_path / "api.log"),
                                180)
        async with FakeTelegramAPI(TOKEN) as telegram:
            bot_env["SOBESEDNIK_BOT_TELEGRAM_API"] = telegram.base_url
            bot = start_process([sys.executable, "-m", "sobesednik", "bot"], env=bot_env,
                                log_path=tmp_path / "bot.log")
            try:
                telegram.push_message(chat_id=42, text="Привет! Что делаешь?")
                (reply,) = await telegram.wait_for("sendMessage", chat_id=42, timeout=120)
                assert reply["text"].strip()
            finally:
                exit_code = await asyncio.to_thread(stop_process, bot)
            assert exit_code == 0, (tmp_path / "bot.log").read_text()
            assert TOKEN not in (tmp_path / "bot.log").read_text()
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert re.search(r'status="200"', metrics), metrics[:2000]
    finally:
        stop_process(api)
