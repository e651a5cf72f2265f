"""ServiceClient: the reply, retries within the deadline, typed errors, and the API key kept out of messages."""

from __future__ import annotations

import json

import httpx
import pytest

from sobesednik.bot.client import (
    ServiceClient,
    ServiceRejectedError,
    ServiceUnavailableError,
    normalize_base_url,
)

SECRET = "sk-very-secret-key"


def _completion(content: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def _client(handler, **kwargs) -> ServiceClient:
    kwargs.setdefault("backoff", 0.01)
    return ServiceClient("http://service.test/v1/", api_key=SECRET, transport=httpx.MockTransport(handler), **kwargs)


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"])
def test_normalize_base_url_strips_v1_and_slash(url):
    assert normalize_base_url(url) == "http://h:8000"


async def test_chat_sends_messages_and_key_and_returns_content():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_completion("привет!"))

    async with _client(handler, model="m") as client:
        reply = await client.chat([{"role": "user", "content": "привет"}], max_tokens=16, temperature=None)
    assert reply == "привет!"
    (request,) = seen
    assert request.url == "http://service.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(request.content) == {
        "messages": [{"role": "user", "content": "привет"}],
        "model": "m",
        "max_tokens": 16,
    }


async def test_retries_transient_failures_then_succeeds():
    answers = iter(
        [
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.Response(503, json={"error": {"message": "loading"}}),
            None,
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer or httpx.Response(200, json=_completion("ok"))

    async with _client(handler) as client:
        assert await client.chat([{"role": "user", "content": "x"}]) == "ok"


async def test_gives_up_after_deadline_with_clear_error_without_key():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused")

    expected = r"did not answer POST /v1/chat/completions within 0.2 s"
    async with _client(handler, deadline=0.2) as client:
        with pytest.raises(ServiceUnavailableError, match=expected) as e:
            await client.chat([{"role": "user", "content": "x"}])
    assert calls > 1
    assert SECRET not in str(e.value)


async def test_rejection_is_not_retried_and_carries_the_envelope_message():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        body = {"error": {"message": "invalid API key", "type": "authentication_error", "code": "invalid_api_key"}}
        return httpx.Response(401, json=body)

    async with _client(handler) as client:
        with pytest.raises(ServiceRejectedError, match="HTTP 401: invalid API key") as e:
            await client.chat([{"role": "user", "content": "x"}])
    assert calls == 1
    assert e.value.status == 401 and e.value.code == "invalid_api_key"


async def test_retry_after_header_beyond_deadline_gives_up_at_once():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "30"}, json={"error": {"message": "slow down"}})

    async with _client(handler, deadline=1.0) as client:
        with pytest.raises(ServiceUnavailableError, match="1 attempts; last: HTTP 429: slow down"):
            await client.chat([{"role": "user", "content": "x"}])


async def test_answer_without_choices_is_rejected():
    async with _client(lambda request: httpx.Response(200, json={"choices": []})) as client:
        with pytest.raises(ServiceRejectedError, match=r"without choices\[0\].message.content"):
            await client.chat([{"role": "user", "content": "x"}])


async def test_stream_chat_yields_deltas():
    chunks = [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in ["при", "вет"]]
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    async with _client(handler) as client:
        pieces = [piece async for piece in client.stream_chat([{"role": "user", "content": "x"}])]
    assert pieces == ["при", "вет"]


async def test_stream_error_event_after_the_start_is_raised():
    chunk = {"choices": [{"index": 0, "delta": {"content": "при"}}]}
    error = {"error": {"message": "generation failed", "type": "server_error", "code": "internal_error"}}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\ndata: [DONE]\n\n"

    async with _client(lambda request: httpx.Response(200, text=body)) as client:
        pieces = []
        with pytest.raises(ServiceRejectedError, match="failed during a streamed chat: generation failed") as e:
            async for piece in client.stream_chat([{"role": "user", "content": "x"}]):
                pieces.append(piece)
    assert pieces == ["при"]
    assert e.value.code == "internal_error"
