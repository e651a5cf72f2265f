"""`sobesednik chat`: the loop with /reset and /exit, in-process (--model) and against the real service (--url)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service_process import run_service
from sobesednik.chat import ChatSettings, chat


def scripted(lines: list[str]) -> tuple[list[str], object, object]:
    """A `read` that returns `lines` then raises EOFError, a `write` that records, and what was written."""
    written: list[str] = []
    script: Iterator[str] = iter(lines)

    def read(prompt: str) -> str:
        written.append(prompt)
        try:
            return next(script)
        except StopIteration:
            raise EOFError from None

    def write(*parts: object, end: str = "\n", flush: bool = False) -> None:
        written.append(" ".join(str(p) for p in parts) + end)

    return written, read, write


def test_local_chat_keeps_history_until_reset(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sobesednik.inference.generator import Generator

    prompts: list[int] = []
    real_chat_prompt = Generator.chat_prompt

    def spy(self: Generator, messages: list, max_new_tokens: int) -> list[int]:
        prompts.append(len(messages))
        return real_chat_prompt(self, messages, max_new_tokens)

    monkeypatch.setattr(Generator, "chat_prompt", spy)
    written, read, write = scripted(["привет", "как дела?", "/reset", "ты кто?", "/exit", "не дойдёт"])
    chat(ChatSettings(model=str(tiny_model_dir), max_tokens=5, _env_file=None), read=read, write=write)
    assert prompts == [1, 3, 1]  # the second turn sees the first exchange; /reset starts over
    assert "(история очищена)\n" in written
    assert written.count("бот> ") == 3


@pytest.mark.slow
def test_chat_talks_to_the_service(tiny_model_dir: Path) -> None:
    with run_service(tiny_model_dir, env={"SOBESEDNIK_API_KEY": "chat-key"}) as service:
        written, read, write = scripted(["привет"])
        settings = ChatSettings(url=service.url, api_key="chat-key", max_tokens=6, temperature=0.9, _env_file=None)
        chat(settings, read=read, write=write)
        assert written.count("бот> ") == 1
        assert not any("ошибка" in line for line in written)

        written, read, write = scripted(["привет"])
        chat(ChatSettings(url=service.url, api_key="wrong", _env_file=None), read=read, write=write)
        assert any("ошибка сервиса" in line and "API key" in line for line in written)
