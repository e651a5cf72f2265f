"""The app in process: request validation and limits (4xx with clear messages), API key, readiness, endpoints."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sobesednik.api.app import create_app
from sobesednik.api.settings import ApiSettings
from sobesednik.inference.generator import Generator

from .conftest import API_KEY, wait_ready

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "привет"}]


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_chat_completion_has_the_openai_shape(client: TestClient) -> None:
    response = client.post(CHAT, json={"messages": HELLO, "max_tokens": 5, "seed": 3, "n": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == Path(client.app.state.service.settings.model).name
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert all(choice["message"]["role"] == "assistant" for choice in body["choices"])
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] <= 10


def test_seeded_requests_repeat(client: TestClient) -> None:
    request = {"messages": HELLO, "max_tokens": 8, "seed": 11, "temperature": 1.0}
    first, second = (client.post(CHAT, json=request).json()["choices"][0]["message"] for _ in range(2))
    assert first == second


def test_completions_and_models(client: TestClient) -> None:
    response = client.post("/v1/completions", json={"prompt": "привет, как", "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "text_completion"
    models = client.get("/v1/models").json()
    assert [model["id"] for model in models["data"]] == [client.app.state.service.settings.served_name]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"messages": []}, 400, r"messages: List should have at least 1 item"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, r"messages\.0\.role: Input should be"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, r"messages\.0\.content: Input should be a valid string"),
    ({"messages": "привет"}, 400, r"messages: Input should be a valid list"),
    ({}, 400, r"messages: this field is required"),
    ({"messages": [{"role": "system", "content": "будь вежлив"}]}, 400, r"no user or assistant turn"),
    ({"messages": [{"role": "user", "content": "я" * 2001}]}, 400, r"2001 characters, more than .* \(2000\)"),
    ({"messages": HELLO * 21}, 400, r"21 messages are more than this server allows \(20\)"),
    ({"messages": HELLO, "n": 4}, 400, r"n=4 is more than this server allows: ask for at most 3"),
    ({"messages": HELLO, "max_tokens": 101}, 400, r"max_tokens=101 .* at most 100"),
    ({"messages": HELLO, "max_tokens": 0}, 400, r"max_tokens: Input should be greater than or equal to 1"),
    ({"messages": HELLO, "temperature": -1}, 400, r"temperature: Input should be greater than or equal to 0"),
    ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 400, r"at most 4 stop strings, given 5"),
    ({"messages": HELLO, "stream": "yes please"}, 400, r"stream: Input should be a valid boolean"),
])
def test_bad_requests_get_400_with_a_clear_message(client: TestClient, body: dict, status: int, message: str) -> None:
    response = client.post(CHAT, json=body)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert re.search(message, error["message"]), error["message"]


def test_a_body_that_is_not_json_gets_400(client: TestClient) -> None:
    response = client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in error_of(response)["message"]


def test_max_tokens_beyond_the_context_gets_400(generator: Generator, tiny_model_dir: Path) -> None:
    settings = ApiSettings(model=str(tiny_model_dir), max_tokens_limit=1000, _env_file=None)
    with TestClient(create_app(settings, generator=generator)) as client:
        wait_ready(client)
        response = client.post(CHAT, json={"messages": HELLO, "max_tokens": 400})
    assert response.status_code == 400
    assert "256-token context" in error_of(response)["message"]


def test_unknown_path_gets_404_in_the_envelope(client: TestClient) -> None:
    response = client.get("/v1/nothing")
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found_error"


def test_api_key_is_enforced_on_v1_and_health_stays_open(keyed_client: TestClient) -> None:
    assert keyed_client.post(CHAT, json={"messages": HELLO}).status_code == 401
    wrong = keyed_client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong API key" in error_of(wrong)["message"]
    assert API_KEY not in wrong.text
    ok = keyed_client.post(CHAT, json={"messages": HELLO, "max_tokens": 3},
                           headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert keyed_client.get(path).status_code == 200


def test_ready_only_after_the_model_is_loaded(generator: Generator, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = threading.Event()

    def slow_load(*args: object, **kwargs: object) -> Generator:
        assert loaded.wait(30)
        return generator

    monkeypatch.setattr(Generator, "load", slow_load)
    with TestClient(create_app(ApiSettings(model=str(tiny_model_dir), _env_file=None))) as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert (not_ready.status_code, not_ready.json()["status"]) == (503, "loading")
        busy = client.post(CHAT, json={"messages": HELLO})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "still loading" in error_of(busy)["message"]
        loaded.set()
        wait_ready(client)
        assert client.post(CHAT, json={"messages": HELLO, "max_tokens": 2}).status_code == 200


def test_metrics_count_requests_and_batches(client: TestClient) -> None:
    client.post(CHAT, json={"messages": HELLO, "max_tokens": 2})
    text = client.get("/metrics").text
    assert 'sobesednik_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert "sobesednik_batch_size_count" in text and "sobesednik_queue_depth 0.0" in text


def test_a_model_that_fails_to_load_shows_in_readyz(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")  # a directory, but no model in it
    with TestClient(create_app(ApiSettings(model=str(tmp_path), _env_file=None))) as client:
        for _ in range(500):
            ready = client.get("/readyz")
            if ready.json()["status"] != "loading":
                break
            time.sleep(0.02)
        assert (ready.status_code, ready.json()["status"]) == (503, "failed")
        assert ready.json()["detail"]
        busy = client.post(CHAT, json={"messages": HELLO})
        assert busy.status_code == 503 and "failed to load" in error_of(busy)["message"]


@pytest.mark.parametrize(("path", "body"), [
    (CHAT, b'{"messages": [{"role": "user", "content": "\\u043f\\ud800"}]}'),
    ("/v1/completions", b'{"prompt": "\\ud800"}'),
    (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\udfff"]}'),
])
def test_a_lone_surrogate_gets_400(client: TestClient, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "lone UTF-16 surrogate at character" in error_of(response)["message"]


def test_an_oversized_body_gets_413_before_it_is_read(client: TestClient) -> None:
    limit = client.app.state.service.settings.max_body_bytes
    response = client.post(CHAT, content=b"x" * (limit + 1), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert f"larger than this server allows ({limit} bytes)" in error_of(response)["message"]


def test_a_chunked_body_is_cut_off_at_the_limit(client: TestClient) -> None:
    limit = client.app.state.service.settings.max_body_bytes

    def chunks():  # no Content-Length: the size is only known by reading
        for _ in range(limit // 4096 + 2):
            yield b" " * 4096

    response = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_key_is_checked_before_the_body(keyed_client: TestClient) -> None:
    """Without the key, even a body over the limit gets 401: nothing of it is read or parsed."""
    limit = keyed_client.app.state.service.settings.max_body_bytes
    response = keyed_client.post(CHAT, content=b"{" * (limit + 1), headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
