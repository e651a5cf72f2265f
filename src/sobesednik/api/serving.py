"""`Serving`: one request's whole way through a loaded model, from a validated body to a response or a stream.

It exists only once the model is ready (`Service.start` builds it), so nothing in it is optional: it checks
the request against the server's limits, builds the prompt, queues the rows (a full queue raises 429 here,
before any response byte), waits for them (504 after the request timeout; a client that disconnects frees its
rows) or streams their pieces as OpenAI chunks, and counts the generated tokens. Every error, streamed or
not, goes through `errors.as_api_error`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse

from sobesednik.api.errors import CLIENT_CLOSED, APIError, as_api_error, error_body
from sobesednik.api.metrics import Metrics
from sobesednik.api.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    GenerationRequest,
    Usage,
)
from sobesednik.api.settings import ApiSettings
from sobesednik.inference.batcher import Batcher
from sobesednik.inference.generator import Generated, Generator, Row
from sobesednik.inference.sampling import SamplingParams

logger = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.25  # how often a waiting non-streaming request checks that its client is still there


@dataclass
class Serving:
    settings: ApiSettings
    metrics: Metrics
    generator: Generator
    batcher: Batcher
    created: int  # the time the service started: the model's `created` in responses

    async def chat_completion(self, body: ChatCompletionRequest,
                              http_request: Request) -> ChatCompletion | StreamingResponse:
        """The assistant's next turn of `body.messages` in the dialogue format, as one body or an SSE stream."""
        if len(body.messages) > self.settings.max_messages:
            raise APIError(400, f"{len(body.messages)} messages are more than this server allows "
                                f"({self.settings.max_messages}): send only the recent part", param="messages")
        turns = [message.model_dump() for message in body.messages if message.role in ("user", "assistant")]
        if not turns:
            raise APIError(400, "messages hold no user or assistant turn: add at least one user message",
                           param="messages")
        self._check_size([turn["content"] for turn in turns], "messages")
        name, adapter = self._persona(body.model)
        params = self._params(body)
        prompt = self.generator.chat_prompt(turns, params.max_new_tokens)
        rows = _rows(prompt, params, body.n, adapter)
        if body.stream:
            pieces = self._stream(rows)  # queued now: a full queue is a 429 before the stream starts
            return StreamingResponse(self._chunks(name, len(rows), pieces), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        completions = await self._complete(rows, http_request)
        return ChatCompletion(
            id=_completion_id("chatcmpl"), created=self.created, model=name,
            choices=[ChatChoice(index=i, message=AssistantMessage(content=c.text), finish_reason=c.finish_reason)
                     for i, c in enumerate(completions)],
            usage=_usage(len(prompt), completions))

    async def text_completion(self, body: CompletionRequest, http_request: Request) -> Completion:
        """`body.prompt` continued as plain text; the role strings and `stop` still end the continuation."""
        if body.stream:
            raise APIError(400, "stream=true is supported on /v1/chat/completions only: drop it here",
                           param="stream")
        self._check_size([body.prompt], "prompt")
        name, adapter = self._persona(body.model)
        params = self._params(body)
        prompt = self.generator.text_prompt(body.prompt, params.max_new_tokens)
        completions = await self._complete(_rows(prompt, params, body.n, adapter), http_request)
        return Completion(
            id=_completion_id("cmpl"), created=self.created, model=name,
            choices=[CompletionChoice(index=i, text=c.text, finish_reason=c.finish_reason)
                     for i, c in enumerate(completions)],
            usage=_usage(len(prompt), completions))

    # ---- the steps ------------------------------------------------------------------------------------------

    def _persona(self, model: str | None) -> tuple[str, str | None]:
        """The served name and adapter of a request's `model`: a persona by name, the base by its name or when
        none is given; 404 for any other name. A service without personas answers to every name, as before."""
        personas = self.settings.personas
        if not personas or model is None or model == self.settings.served_name:
            return self.settings.served_name, None
        if model not in personas:
            known = ", ".join([self.settings.served_name, *personas])
            raise APIError(404, f"model {model!r} is not served here: use one of {known} (GET /v1/models)",
                           param="model", code="model_not_found")
        return model, model

    def _params(self, body: GenerationRequest) -> SamplingParams:
        """Sampling settings of a request: its fields over the model's defaults, limits checked."""
        limits = self.settings
        if body.n > limits.max_n:
            raise APIError(400, f"n={body.n} is more than this server allows: ask for at most {limits.max_n}",
                           param="n")
        if body.max_tokens is not None and body.max_tokens > limits.max_tokens_limit:
            raise APIError(400, f"max_tokens={body.max_tokens} is more than this server allows: "
                                f"ask for at most {limits.max_tokens_limit}", param="max_tokens")
        return self.generator.defaults.with_overrides(
            max_new_tokens=body.max_tokens, min_new_tokens=body.min_tokens, temperature=body.temperature,
            top_p=body.top_p, top_k=body.top_k,
            repetition_penalty=body.repetition_penalty, no_repeat_ngram_size=body.no_repeat_ngram_size,
            stop=tuple(body.stop or ()), seed=body.seed)

    def _check_size(self, texts: Sequence[str], what: str) -> None:
        chars = sum(len(text) for text in texts)
        if chars > self.settings.max_chars:
            raise APIError(400, f"{what} hold {chars} characters, more than this server allows "
                                f"({self.settings.max_chars}): send a shorter history", param=what)

    async def _complete(self, rows: list[Row], http_request: Request) -> list[Generated]:
        """Generate `rows`; 429 when the queue is full, 504 after the request timeout; a client that
        disconnects frees its rows."""
        task = asyncio.create_task(self.batcher.enqueue(rows))
        watcher = asyncio.create_task(_cancel_on_disconnect(http_request, task))
        try:
            completions = await asyncio.wait_for(asyncio.shield(task), self.settings.request_timeout_s)
        except TimeoutError:
            task.cancel()
            raise APIError(504, f"generation took longer than {self.settings.request_timeout_s:g} s: try a "
                                "smaller max_tokens or n, or retry when the server is less busy") from None
        except asyncio.CancelledError:
            if watcher.done() and watcher.result():  # the client went away: nginx's 499, not a server error
                raise APIError(CLIENT_CLOSED, "the client closed the request before the reply was ready") from None
            raise
        finally:
            watcher.cancel()
        self.metrics.tokens.inc(sum(c.completion_tokens for c in completions))
        return completions

    def _stream(self, rows: list[Row]) -> AsyncIterator[tuple[int, str] | list[Generated]]:
        """Queue `rows` now (a full queue raises here, before any response byte), and return what yields
        `(row index, text piece)` as decoded, then the list of completions; closing it cancels the rows."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        for index, row in enumerate(rows):
            # Called from the decoding thread: hand the piece over to the event loop.
            row.on_text = lambda text, index=index: loop.call_soon_threadsafe(pieces.put_nowait, (index, text))
        task = asyncio.create_task(self.batcher.enqueue(rows))
        task.add_done_callback(lambda _: pieces.put_nowait(None))
        return self._pieces(task, pieces, loop.time() + self.settings.request_timeout_s)

    async def _pieces(self, task: asyncio.Task[list[Generated]], pieces: asyncio.Queue[tuple[int, str] | None],
                      deadline: float) -> AsyncIterator[tuple[int, str] | list[Generated]]:
        loop = asyncio.get_running_loop()
        try:
            while (item := await asyncio.wait_for(pieces.get(), max(0.0, deadline - loop.time()))) is not None:
                yield item
            completions = await task
            self.metrics.tokens.inc(sum(c.completion_tokens for c in completions))
            yield completions
        finally:
            task.cancel()

    async def _chunks(self, name: str, choices: int, pieces: AsyncIterator[tuple[int, str] | list[Generated]],
                      ) -> AsyncIterator[str]:
        """OpenAI's chunk sequence: the role, content deltas, a finish_reason per choice, then `[DONE]`; a failure
        on the way ends it with an error event (the same envelope as a plain response) and `[DONE]` all the same."""
        chunk_id = _completion_id("chatcmpl")

        def chunk(index: int, delta: Delta, finish_reason: str | None = None) -> str:
            choice = ChunkChoice(index=index, delta=delta, finish_reason=finish_reason)
            return _sse(ChatCompletionChunk(id=chunk_id, created=self.created, model=name,
                                            choices=[choice]).model_dump_json(exclude_none=True))

        for index in range(choices):
            yield chunk(index, Delta(role="assistant", content=""))
        try:
            async for item in pieces:
                if isinstance(item, tuple):
                    row, text = item
                    yield chunk(row, Delta(content=text))
                else:
                    for index, completion in enumerate(item):
                        yield chunk(index, Delta(), completion.finish_reason)
        except Exception as failure:  # every failure becomes the client's error event
            error = as_api_error(failure)
            yield _sse(json.dumps(error_body(error.status, error.message, param=error.param, code=error.code),
                                  ensure_ascii=False))
        yield _sse("[DONE]")


def _rows(prompt: list[int], params: SamplingParams, n: int, adapter: str | None = None) -> list[Row]:
    """`n` rows of one prompt for `adapter`; with a seed, choice i samples with seed + i so the choices differ."""
    seeds = [None if params.seed is None else params.seed + i for i in range(n)]
    return [Row(prompt, params.with_overrides(seed=seed), adapter=adapter) for seed in seeds]


def _usage(prompt_tokens: int, completions: list[Generated]) -> Usage:
    generated = sum(c.completion_tokens for c in completions)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=generated, total_tokens=prompt_tokens + generated)


async def _cancel_on_disconnect(http_request: Request, task: asyncio.Task[list[Generated]]) -> bool:
    """Cancel `task` when the client disconnects; True if it did."""
    while not task.done():
        if await http_request.is_disconnected():
            logger.info("client disconnected; its rows leave the batch")
            task.cancel()
            return True
        await asyncio.sleep(DISCONNECT_POLL_S)
    return False


def _sse(data: str) -> str:
    return f"data: {data}\n\n"


def _completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
