"""A scripted OpenAI-compatible chat service on 127.0.0.1 (aiohttp): replies whose pace and failures tests choose.

The real `sobesednik serve` with the tiny model answers in a few fast tokens; streaming tests need a reply that
grows over time, a long one, or a stream that dies half-way. This server answers POST /v1/chat/completions with
the scripted `pieces`: joined in one body, or with `stream: true` as SSE chunks `delay` seconds apart, in the
wire format of the real service (`data: {chat.completion.chunk}` … `data: [DONE]`). With `die_after=n` it drops
the connection after n pieces, as a killed service does. It records every request body; GET /v1/models lists `models`.

    async with FakeChatService() as service:
        service.pieces, service.delay = ["При", "вет"], 0.3
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class FakeChatService:
    def __init__(self) -> None:
        self.pieces: list[str] = ["Привет", ", как", " дела?"]
        self.delay = 0.0  # seconds before each streamed piece
        self.die_after: int | None = None  # pieces sent before the connection is dropped
        self.requests: list[dict[str, Any]] = []
        self.models = ["base"]  # the ids GET /v1/models lists
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeChatService:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def reply(self) -> str:
        return "".join(self.pieces)

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                                               "owned_by": "fake"} for name in self.models]})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if not body.get("stream"):
            message = {"role": "assistant", "content": self.reply}
            return web.json_response({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(self.pieces):
            if index == self.die_after:
                assert request.transport is not None
                request.transport.abort()  # no [DONE], no clean end of the chunked body: a dead service
                return response
            await asyncio.sleep(self.delay)
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
