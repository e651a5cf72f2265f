"""In-process app fixtures: the real app (lifespan, batcher) around the tiny model, through Starlette's TestClient."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sobesednik.api.app import create_app
from sobesednik.api.settings import ApiSettings
from sobesednik.inference.generator import Generator

API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> Generator:
    return Generator.load(tiny_model_dir)


def wait_ready(client: TestClient) -> None:
    for _ in range(500):
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError("the app did not get ready")


@pytest.fixture(scope="module")
def client(generator: Generator, tiny_model_dir: Path) -> Iterator[TestClient]:
    """No API key; small limits so the size checks are cheap to reach."""
    settings = ApiSettings(model=str(tiny_model_dir), max_messages=20, max_chars=2000, max_n=3,
                           max_tokens_limit=100, _env_file=None)
    with TestClient(create_app(settings, generator=generator), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="module")
def keyed_client(generator: Generator, tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = ApiSettings(model=str(tiny_model_dir), key=API_KEY, _env_file=None)
    with TestClient(create_app(settings, generator=generator), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client
