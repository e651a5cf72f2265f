"""The request path under load and faults: a full queue is a 429 before a stream starts, a stream that cannot
finish ends with an error event and `[DONE]`, and timeouts are 504 in both forms."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sobesednik.api.app import create_app
from sobesednik.api.settings import ApiSettings
from sobesednik.inference.generator import Generator

from .conftest import wait_ready

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "привет"}]


class Hold:
    """Once `start()` is called, decoding waits until `release()`, so requests stay queued as a test needs."""

    def __init__(self) -> None:
        self.holding, self.released = threading.Event(), threading.Event()

    def start(self) -> None:
        self.holding.set()

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def hold(generator: Generator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hold]:
    state, real_generate = Hold(), generator.generate

    def held_generate(*args: object, **kwargs: object) -> object:
        if state.holding.is_set():
            state.released.wait(30)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(generator, "generate", held_generate)
    yield state
    state.release()


def _client(generator: Generator, tiny_model_dir: Path, **limits: object) -> TestClient:
    settings = ApiSettings(model=str(tiny_model_dir), _env_file=None, **limits)
    return TestClient(create_app(settings, generator=generator), raise_server_exceptions=False)


@contextlib.contextmanager
def _serving(app: FastAPI) -> Iterator[int]:
    """`app` under a real uvicorn server on a free loopback port, for what needs real sockets; yields the port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def _events(response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


def test_a_stream_over_a_full_queue_gets_429_before_it_starts(generator: Generator, tiny_model_dir: Path,
                                                             hold: Hold) -> None:
    with _client(generator, tiny_model_dir, max_queue=3) as client:
        wait_ready(client)
        hold.start()
        waiting = threading.Thread(target=client.post, args=(CHAT,),
                                   kwargs={"json": {"messages": HELLO, "n": 2, "max_tokens": 3}})
        waiting.start()
        batcher = client.app.state.service.serving.batcher
        for _ in range(500):
            if batcher.queued == 2:
                break
            time.sleep(0.01)
        response = client.post(CHAT, json={"messages": HELLO, "n": 2, "max_tokens": 3, "stream": True})
        plain = client.post(CHAT, json={"messages": HELLO, "n": 2, "max_tokens": 3})
        hold.release()
        waiting.join()
    for refused in (response, plain):
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/json"
        assert "queue is full (2 of 3 waiting)" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"


def test_a_stream_whose_batch_fails_ends_with_an_error_event_and_done(generator: Generator, tiny_model_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with _client(generator, tiny_model_dir) as client:
        wait_ready(client)

        def broken(requests: list, admit) -> object:
            admit(0)  # the rows join the batch, then decoding fails
            raise RuntimeError("the decoding thread died")

        monkeypatch.setattr(generator, "generate", broken)
        response = client.post(CHAT, json={"messages": HELLO, "max_tokens": 3, "stream": True})
    events = _events(response)
    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "server_error" and "server log has the details" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}  # the envelope of a plain response


def test_timeouts_are_504_streamed_or_not(generator: Generator, tiny_model_dir: Path,
                                          hold: Hold) -> None:
    with _client(generator, tiny_model_dir, request_timeout_s=0.3) as client:
        wait_ready(client)
        hold.start()
        plain = client.post(CHAT, json={"messages": HELLO, "max_tokens": 3})
        streamed = client.post(CHAT, json={"messages": HELLO, "max_tokens": 3, "stream": True})
        hold.release()
    assert plain.status_code == 504
    assert "longer than 0.3 s" in plain.json()["error"]["message"]
    events = _events(streamed)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["type"] == "timeout"


def test_a_client_that_leaves_is_a_499_in_the_metrics_not_a_500(generator: Generator, tiny_model_dir: Path,
                                                                hold: Hold, caplog: pytest.LogCaptureFixture) -> None:
    """A real uvicorn server on loopback: the client sends a request and hangs up while it is queued; its rows
    are cancelled (they never decode), and the next client is served."""
    import httpx

    app = create_app(ApiSettings(model=str(tiny_model_dir), _env_file=None), generator=generator)
    with _serving(app) as port:
        base = f"http://127.0.0.1:{port}"
        while httpx.get(f"{base}/readyz").status_code != 200:
            time.sleep(0.02)
        batcher, queued_rows = app.state.service.serving.batcher, []
        real_enqueue = batcher.enqueue

        def recording_enqueue(rows):
            queued_rows.extend(rows)
            return real_enqueue(rows)

        batcher.enqueue = recording_enqueue
        hold.start()
        body = json.dumps({"messages": HELLO, "max_tokens": 3}).encode()
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.3)
        for _ in range(100):  # the service notices within DISCONNECT_POLL_S
            metrics = httpx.get(f"{base}/metrics").text
            if 'status="499"' in metrics:
                break
            time.sleep(0.05)
        freed = [row.cancelled.is_set() for row in queued_rows]
        hold.release()
        after = httpx.post(f"{base}{CHAT}", json={"messages": HELLO, "max_tokens": 3}, timeout=60)
    assert freed == [True]
    assert after.status_code == 200
    assert 'sobesednik_requests_total{route="/v1/chat/completions",status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_a_half_sent_body_gets_408_and_frees_the_connection(generator: Generator, tiny_model_dir: Path) -> None:
    app = create_app(ApiSettings(model=str(tiny_model_dir), body_timeout_s=0.5, _env_file=None), generator=generator)
    with _serving(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 1000\r\n\r\n{\"messages\": [")
        reply = client.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 408")
    assert "did not arrive within 0.5 s" in reply
