"""A recording reverse proxy on 127.0.0.1 in front of the real service: what did the service receive?

The bot points at the proxy; the proxy forwards every request to the upstream service unchanged, streaming the
answer through as it comes (so SSE replies still arrive piece by piece), and records the JSON bodies of chat
completions. `down()` closes the listening socket (the bot then sees connection
refused, as with a stopped service) and `up()` reopens it on the same port.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from aiohttp import web


class RecordingProxy:
    def __init__(self, upstream: str, port: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.requests: list[dict[str, Any]] = []  # bodies of POST /v1/chat/completions, in order
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(base_url=self.upstream, timeout=120)

    async def __aenter__(self) -> RecordingProxy:
        await self.up()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.down()
        await self._http.aclose()

    @property
    def last_messages(self) -> list[dict[str, str]]:
        return self.requests[-1]["messages"]

    async def up(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/v1/chat/completions":
            self.requests.append(json.loads(body))
            self.headers.append(dict(request.headers))
        headers = {k: v for k, v in request.headers.items() if k.lower() in {"content-type", "authorization"}}
        upstream = await self._http.send(
            self._http.build_request(request.method, request.path_qs, content=body, headers=headers), stream=True
        )
        try:
            response = web.StreamResponse(
                status=upstream.status_code,
                headers={"Content-Type": upstream.headers.get("content-type", "application/json")},
            )
            await response.prepare(request)
            async for chunk in upstream.aiter_raw():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            await upstream.aclose()
