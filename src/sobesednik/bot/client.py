"""An async client for the OpenAI-compatible generation service: timeouts, retries with backoff, typed errors.

The bot, `sobesednik chat` and `sobesednik demo` talk to the model only through this client, so they work with
sobesednik's own service and with any OpenAI-compatible server (vLLM, TGI) that serves an exported model.
It imports only httpx: no aiogram, no torch.

    async with ServiceClient("http://127.0.0.1:8000", api_key="...") as client:
        reply = await client.chat([{"role": "user", "content": "привет"}])

Failures that may pass (connection refused, timeouts, 429, 502/503/504) are retried with exponential backoff
and jitter until `deadline` seconds have passed since the call began; then `ServiceUnavailableError`.
Answers that will not change on retry (400, 401, 404, 422, a malformed body) raise `ServiceRejectedError` at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from sobesednik.errors import ServiceError

logger = logging.getLogger(__name__)

# Statuses worth another try: rate limited, or a proxy/server that is starting, restarting or overloaded.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ServiceUnavailableError(ServiceError):
    """The service could not be reached, or kept failing, until the deadline passed."""


class ServiceRejectedError(ServiceError):
    """The service answered with an error that a retry will not fix (bad request, wrong API key, ...)."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def normalize_base_url(url: str) -> str:
    """`http://h:8000`, `http://h:8000/` and `http://h:8000/v1` all mean the same service root."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    """The message and code from an OpenAI error envelope, FastAPI's `detail`, or the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code")
        return str(error.get("message") or error), (str(code) if code is not None else None)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"]), None
    return str(body)[:300], None


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header given in seconds (the HTTP-date form is not used by these servers)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class ServiceClient:
    """One connection pool to the service; use as `async with` or call `aclose()`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,  # seconds for one HTTP attempt; CPU generation of a long reply can take a while
        connect_timeout: float = 5.0,  # seconds; a service that does not accept within this is down
        deadline: float = 90.0,  # seconds for a whole call, retries included
        backoff: float = 0.5,  # seconds before the first retry; doubles each time
        max_backoff: float = 8.0,  # seconds; the cap between two attempts
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.deadline = deadline
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
        )

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _payload(self, messages: Sequence[Mapping[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"messages": [dict(message) for message in messages]}
        if self.model is not None:
            payload["model"] = self.model
        payload.update({key: value for key, value in params.items() if value is not None})
        return payload

    async def _request(
        self, method: str, path: str, *, json_body: dict[str, Any] | None = None, stream: bool = False
    ) -> httpx.Response:
        """Send with retries until the deadline; return a 2xx response or raise a typed error.

        With `stream`, the 2xx response's body is left unread (the caller reads and closes it): a stream is
        retried only until it opens, never once the reply has begun.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                request = self._http.build_request(method, path, json=json_body)
                response = await self._http.send(request, stream=stream)
            except (httpx.TransportError, httpx.TimeoutException) as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                if response.is_success:
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                message, code = _error_message(response)
                if response.status_code not in RETRY_STATUSES:
                    raise ServiceRejectedError(
                        f"the service at {self.base_url} rejected {method} {path} with HTTP {response.status_code}: "
                        f"{message}",
                        status=response.status_code,
                        code=code,
                    )
                problem = f"HTTP {response.status_code}: {message}"
                wait = _retry_after(response)
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            left = self.deadline - (time.monotonic() - started)
            if wait >= left:
                raise ServiceUnavailableError(
                    f"the service at {self.base_url} did not answer {method} {path} within {self.deadline:g} s "
                    f"({attempt} attempts; last: {problem}). Check that `sobesednik serve` is running and that "
                    "the service URL setting points at it."
                )
            logger.warning("service %s %s failed (%s); retry %d in %.1f s", method, path, problem, attempt, wait)
            await asyncio.sleep(wait)

    async def complete(self, messages: Sequence[Mapping[str, str]], **params: Any) -> dict[str, Any]:
        """POST /v1/chat/completions; the whole response body. `params`: max_tokens, temperature, top_k, ..."""
        response = await self._request("POST", "/v1/chat/completions", json_body=self._payload(messages, params))
        try:
            body = response.json()
        except ValueError:
            raise ServiceRejectedError(
                f"the service at {self.base_url} answered /v1/chat/completions with a body that is not JSON: "
                f"{response.text[:200]!r}",
                status=response.status_code,
            ) from None
        return body

    async def chat(self, messages: Sequence[Mapping[str, str]], **params: Any) -> str:
        """The reply text, `choices[0].message.content`, for `messages` (OpenAI format)."""
        body = await self.complete(messages, **params)
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ServiceRejectedError(
                f"the service at {self.base_url} answered without choices[0].message.content: {str(body)[:200]}",
                status=200,
            ) from None
        return content or ""

    async def stream_chat(self, messages: Sequence[Mapping[str, str]], **params: Any) -> AsyncIterator[str]:
        """Yield reply text pieces as they arrive (`stream: true`, server-sent events).

        Opening the stream is retried like `chat` (until the deadline); a stream that breaks after it began
        raises `ServiceUnavailableError` at once, since the reply so far cannot be resumed.
        """
        payload = self._payload(messages, {**params, "stream": True})
        response = await self._request("POST", "/v1/chat/completions", json_body=payload, stream=True)
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if "error" in event:  # the service failed after the stream began: it sends one error event
                    error = event["error"]
                    raise ServiceRejectedError(
                        f"the service at {self.base_url} failed during a streamed chat: {error.get('message')}",
                        status=response.status_code,
                        code=error.get("code"),
                    )
                delta = event["choices"][0].get("delta", {}).get("content")
                if delta:
                    yield delta
        except (httpx.TransportError, httpx.TimeoutException) as error:
            raise ServiceUnavailableError(
                f"the service at {self.base_url} failed during a streamed chat ({type(error).__name__}). "
                "Check that `sobesednik serve` is running and that the service URL setting points at it."
            ) from None
        finally:
            await response.aclose()

    async def models(self) -> list[str]:
        """The model ids from GET /v1/models: what `/persona` offers."""
        response = await self._request("GET", "/v1/models")
        return [str(model["id"]) for model in response.json().get("data", [])]
