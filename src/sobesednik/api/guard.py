"""The front door of `/v1/*`: the API key and the body size are checked before a byte of the body is parsed.

FastAPI reads and parses a request's body before it resolves the route's dependencies, so a key check as a
dependency comes too late: an unauthenticated 48 MB body would already have cost half a gigabyte. This ASGI
middleware answers 401 from the headers alone, 413 from `Content-Length` alone, and otherwise reads the
body itself, at most `max_body_bytes` of it (a body sent without a length, chunked, is cut off there too)
within `body_timeout_s` (else 408), then hands it on to the app.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from fastapi.responses import JSONResponse

from sobesednik.api.errors import APIError, error_body
from sobesednik.api.settings import ApiSettings

_PROTECTED = "/v1/"


class RequestGuard:
    """ASGI middleware: API key, then body size, for every `/v1/*` request; other paths pass untouched."""

    def __init__(self, app: Any, settings: ApiSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_PROTECTED):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            self._check_key(headers.get("authorization"))
            body = await self._read_body(headers.get("content-length"), receive)
        except APIError as error:
            response = JSONResponse(error_body(error.status, error.message, param=error.param, code=error.code),
                                    status_code=error.status, headers=error.headers)
            await response(scope, receive, send)
            return
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:  # after the body, the app waits on the real channel for the client's disconnect
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _check_key(self, authorization: str | None) -> None:
        """With a key configured, require `Authorization: Bearer <key>` (compared in constant time)."""
        key = self.settings.key
        if key is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(401, "missing API key: send the header `Authorization: Bearer <SOBESEDNIK_API_KEY>`",
                           code="invalid_api_key")
        if not secrets.compare_digest(given.strip().encode(), key.get_secret_value().encode()):
            raise APIError(401, "wrong API key: use the value of SOBESEDNIK_API_KEY that the server was started with",
                           code="invalid_api_key")

    async def _read_body(self, content_length: str | None, receive: Any) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = APIError(413, f"the request body is larger than this server allows ({limit} bytes): "
                                  "send a shorter history", code="body_too_large")
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise too_large
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:  # a client that sends half a body must not hold a connection for good
                raise APIError(408, f"the request body did not arrive within {self.settings.body_timeout_s:g} s: "
                                    "send it whole", code="body_timeout") from None
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
