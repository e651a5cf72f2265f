"""`sobesednik chat`: talk to the model from a terminal, keeping the dialogue history.

It talks to a running service (`--url`, through the bot's `ServiceClient`, streaming the reply as it is
generated) or loads a MODEL_DIR / RUN_DIR in-process (`--model`). Inside: `/reset` forgets the dialogue,
`/exit` (or Ctrl-D) leaves. Russian input and output work in any UTF-8 terminal.

    sobesednik chat                                   # the service on http://127.0.0.1:8000
    sobesednik chat --model models/my-chat            # no service needed
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sobesednik.errors import ServiceError

Reply = Callable[[list[dict[str, str]]], Iterator[str]]  # history → pieces of the reply as they come


class ChatSettings(BaseSettings):
    """Settings of the terminal chat; `--model` wins over `--url`."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_CHAT_", env_file=".env", extra="ignore")

    url: str = Field("http://127.0.0.1:8000", description="where `sobesednik serve` listens by default")
    model: str | None = Field(None, description="MODEL_DIR or RUN_DIR to load in-process instead of calling a service")
    api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SOBESEDNIK_CHAT_API_KEY",
                                                                          "SOBESEDNIK_API_KEY", "api_key"),
        description="The service's key; the server's own SOBESEDNIK_API_KEY works too, so one .env serves both.",
    )
    max_tokens: int | None = Field(None, ge=1, description="reply length; None takes the model's default")
    temperature: float | None = Field(None, ge=0, description="None takes the model's default; 0 is greedy")
    timeout_s: float = Field(30, gt=0, description="seconds for a reply from the service, retries included")


@contextlib.contextmanager
def _remote(settings: ChatSettings) -> Iterator[Reply]:
    from sobesednik.bot.client import ServiceClient

    params = {k: v for k, v in {"max_tokens": settings.max_tokens, "temperature": settings.temperature}.items()
              if v is not None}
    key = settings.api_key.get_secret_value() if settings.api_key else None
    with asyncio.Runner() as runner:
        client = ServiceClient(settings.url, api_key=key, deadline=settings.timeout_s, timeout=settings.timeout_s)

        def reply(history: list[dict[str, str]]) -> Iterator[str]:
            pieces = client.stream_chat(history, **params)
            while True:
                try:
                    yield runner.run(anext(pieces))
                except StopAsyncIteration:
                    return

        try:
            yield reply
        finally:
            runner.run(client.aclose())


@contextlib.contextmanager
def _local(settings: ChatSettings) -> Iterator[Reply]:
    from sobesednik.inference.generator import Generator, Row

    assert settings.model is not None
    generator = Generator.load(settings.model)
    params = generator.defaults.with_overrides(max_new_tokens=settings.max_tokens, temperature=settings.temperature)

    def reply(history: list[dict[str, str]]) -> Iterator[str]:
        pieces: list[str] = []
        prompt = generator.chat_prompt(history, params.max_new_tokens)
        generator.generate([Row(prompt, params, on_text=pieces.append)])
        yield from pieces

    yield reply


def chat(settings: ChatSettings, *, read: Callable[[str], str] = input, write: Any = None) -> None:
    """The chat loop; `read` and `write` (a `print`-like function) default to the terminal."""
    write = write or print
    if hasattr(sys.stdout, "reconfigure"):  # a terminal with a legacy locale still gets Russian, not a crash
        sys.stdout.reconfigure(errors="replace")
    backend = _local(settings) if settings.model else _remote(settings)
    where = settings.model or settings.url
    with backend as reply:
        write(f"sobesednik chat with {where}: /reset forgets the dialogue, /exit leaves")
        history: list[dict[str, str]] = []
        while True:
            try:
                text = read("вы> ").strip()
            except (EOFError, KeyboardInterrupt):
                write()
                return
            if text == "/exit":
                return
            if text == "/reset":
                history.clear()
                write("(история очищена)")
                continue
            if not text:
                continue
            history.append({"role": "user", "content": text})
            write("бот> ", end="", flush=True)
            answer = ""
            try:
                for piece in reply(history):
                    answer += piece
                    write(piece, end="", flush=True)
            except ServiceError as error:
                history.pop()  # the turn was not answered; the user may retry it
                write(f"\n(ошибка сервиса: {error})")
                continue
            write("" if answer else "…")
            history.append({"role": "assistant", "content": answer or "…"})
