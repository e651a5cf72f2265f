"""The real `sobesednik serve` process on a free port: the official openai client, streaming, batching, 429-free load.

One server per module (starting it costs a few seconds on 2 cores).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from service_process import ServiceHandle, run_service

pytestmark = pytest.mark.slow
KEY = "server-test-key"
HELLO = [{"role": "user", "content": "привет, как дела?"}]


@pytest.fixture(scope="module")
def service(tiny_model_dir: Path) -> Iterator[ServiceHandle]:
    # A long batching window makes "concurrent requests share a batch" certain rather than likely.
    with run_service(tiny_model_dir, env={"SOBESEDNIK_API_KEY": KEY}, args=("--max-wait-ms", "300")) as handle:
        yield handle


@pytest.fixture
def client(service: ServiceHandle) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_openai_client_gets_a_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=6, seed=1,
                                                extra_body={"top_k": 5, "repetition_penalty": 1.1})
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length", "empty")
    assert completion.usage is not None and completion.usage.completion_tokens <= 6


def test_openai_client_streams_the_same_reply(client: openai.OpenAI) -> None:
    request = {"model": "tiny", "messages": HELLO, "max_tokens": 12, "temperature": 0.9, "seed": 5}
    whole = client.chat.completions.create(**request).choices[0]
    chunks = list(client.chat.completions.create(**request, stream=True))
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert streamed == whole.message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason


def test_openai_client_gets_a_text_completion_and_the_model_list(client: openai.OpenAI, tiny_model_dir: Path) -> None:
    assert client.completions.create(model="tiny", prompt="привет", max_tokens=3).object == "text_completion"
    assert [model.id for model in client.models.list()] == [tiny_model_dir.name]


def test_wrong_key_is_an_authentication_error(service: ServiceHandle) -> None:
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="wrong API key"):
        client.chat.completions.create(model="tiny", messages=HELLO)


def test_concurrent_requests_end_up_in_one_batch(service: ServiceHandle, client: openai.OpenAI) -> None:
    def batches() -> tuple[float, float]:
        text = httpx.get(f"{service.url}/metrics").text
        count = float(re.search(r"^sobesednik_batch_size_count (\S+)", text, re.M).group(1))
        total = float(re.search(r"^sobesednik_batch_size_sum (\S+)", text, re.M).group(1))
        return count, total

    count_before, rows_before = batches()
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"вопрос {i}"}], max_tokens=4), range(8)))
    count, rows = batches()
    assert len(replies) == 8 and rows - rows_before == 8
    assert count - count_before < 8  # fewer batches than requests: some were decoded together


def test_a_run_dir_is_served_as_its_base_with_the_adapter(trained_run_dir: Path) -> None:
    with run_service(trained_run_dir) as handle:
        reply = httpx.post(f"{handle.url}/v1/chat/completions",
                           json={"messages": HELLO, "max_tokens": 8, "min_tokens": 4}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == trained_run_dir.name
    assert reply.json()["usage"]["completion_tokens"] >= 4  # decoded, whatever a barely trained run writes
