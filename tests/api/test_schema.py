"""Schemathesis over the app's own OpenAPI schema: generated requests never get a 5xx or an off-schema response.

In process (the real app and lifespan through Starlette's TestClient), with a bounded number of examples per
operation so that it stays well under a minute on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks

from sobesednik.api.app import create_app
from sobesednik.api.settings import ApiSettings
from sobesednik.inference.generator import Generator

from .conftest import API_KEY, wait_ready

# The schema does not depend on the model, so it is read from an app that never loads one.
schema = schemathesis.openapi.from_dict(create_app(ApiSettings(model="unused", _env_file=None)).openapi())
RESPONSE_CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
                   checks.response_schema_conformance, checks.response_headers_conformance]


@pytest.fixture(scope="module")
def app_client(tiny_model_dir: Path) -> Iterator[TestClient]:
    # Short replies keep each example cheap; the key is set so that auth is part of what is exercised.
    settings = ApiSettings(model=str(tiny_model_dir), key=API_KEY, max_tokens_limit=8, max_n=2, _env_file=None)
    with TestClient(create_app(settings, generator=Generator.load(tiny_model_dir)),
                    raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, app_client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"} if case.path.startswith("/v1") else {}
    kwargs = case.as_transport_kwargs(base_url=str(app_client.base_url), headers=headers)
    response = app_client.request(**{k: v for k, v in kwargs.items() if k in ("method", "url", "headers", "params",
                                                                               "json", "content", "data")})
    case.validate_response(response, checks=RESPONSE_CHECKS)
