"""The service state the app's lifespan owns: the Generator, its Batcher, metrics, and the request plumbing.

Routes stay thin: they turn a request body into rows with `rows_for`, then await `complete` (timeout, client
disconnect) or iterate `stream` (text pieces as they are decoded). Loading happens in the background so that
`/healthz` answers at once and `/readyz` turns ready only after the model produced its first token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from fastapi import Request as HTTPRequest

from sobesednik.api.errors import CLIENT_CLOSED, APIError
from sobesednik.api.metrics import Metrics
from sobesednik.api.schemas import GenerationRequest
from sobesednik.api.settings import ApiSettings
from sobesednik.errors import SobesednikError
from sobesednik.inference.batcher import Batcher
from sobesednik.inference.generator import Completion, Generator, Request
from sobesednik.inference.sampling import SamplingParams

logger = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.25  # how often a waiting non-streaming request checks that its client is still there


class Service:
    def __init__(self, settings: ApiSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.generator: Generator | None = None
        self.batcher: Batcher | None = None
        self.load_error: str | None = None
        self.created = int(time.time())

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    async def start(self, stack: contextlib.AsyncExitStack, generator: Generator | None) -> None:
        """Load the model (unless given), generate one token to warm it up, then start batching."""
        # Loading, warm-up and every batch run on this one thread (see Batcher).
        executor = ThreadPoolExecutor(1, thread_name_prefix="sobesednik-generate")
        stack.callback(executor.shutdown, wait=False)
        loop = asyncio.get_running_loop()
        try:
            if generator is None:
                generator = await loop.run_in_executor(executor, self._load)
            warmup = generator.defaults.with_overrides(max_new_tokens=1, temperature=0.0)
            prompt = generator.chat_prompt([{"role": "user", "content": "привет"}], 1)
            # One row per persona and the base, in one mixed batch: what every later batch does.
            rows = [Request(prompt, warmup, adapter=adapter) for adapter in (None, *generator.adapters)]
            await loop.run_in_executor(executor, generator.generate, rows)
        except Exception as error:  # any failure must show in /readyz, not leave it "loading" forever
            self.load_error = str(error) if isinstance(error, SobesednikError) else f"{type(error).__name__}: {error}"
            logger.error("cannot load the model: %s", self.load_error, exc_info=not isinstance(error, SobesednikError))
            return
        self.generator = generator
        self.batcher = await stack.enter_async_context(Batcher(
            generator, max_batch_size=self.settings.max_batch_size, max_wait_ms=self.settings.max_wait_ms,
            join_fraction=self.settings.join_fraction, max_queue=self.settings.max_queue,
            on_batch=self.metrics.batch_size.observe, executor=executor))
        self.metrics.watch_queue(lambda: self.batcher.queued if self.batcher else 0)
        logger.info("model %s ready", ", ".join(self.model_names))

    def _load(self) -> Generator:
        settings = self.settings
        if settings.adapters:
            return Generator.load_personas(settings.model, settings.personas, dtype=settings.dtype,
                                           quantize=settings.quantize)
        return Generator.load(settings.model, dtype=settings.dtype, quantize=settings.quantize)

    @property
    def model_names(self) -> list[str]:
        """What /v1/models lists: the base (or the one model), then every persona."""
        return [self.settings.served_name, *self.settings.personas]

    def adapter_for(self, model: str | None) -> tuple[str, str | None]:
        """The served name and adapter of a request's `model`: a persona by name, the base by its name or when
        none is given; 404 for any other name. A service without personas answers to every name, as before."""
        if not self.settings.adapters or model is None or model == self.settings.served_name:
            return self.settings.served_name, None
        if model not in self.settings.personas:
            known = ", ".join(self.model_names)
            raise APIError(404, f"model {model!r} is not served here: use one of {known} (GET /v1/models)",
                           param="model", code="model_not_found")
        return model, model

    # ---- requests ------------------------------------------------------------------------------------------

    def params_for(self, body: GenerationRequest) -> SamplingParams:
        """Sampling settings of a request: its fields over the model's defaults, limits checked."""
        limits = self.settings
        if body.n > limits.max_n:
            raise APIError(400, f"n={body.n} is more than this server allows: ask for at most {limits.max_n}",
                           param="n")
        if body.max_tokens is not None and body.max_tokens > limits.max_tokens_limit:
            raise APIError(400, f"max_tokens={body.max_tokens} is more than this server allows: "
                                f"ask for at most {limits.max_tokens_limit}", param="max_tokens")
        assert self.generator is not None
        return self.generator.defaults.with_overrides(
            max_new_tokens=body.max_tokens, min_new_tokens=body.min_tokens, temperature=body.temperature,
            top_p=body.top_p, top_k=body.top_k,
            repetition_penalty=body.repetition_penalty, no_repeat_ngram_size=body.no_repeat_ngram_size,
            stop=tuple(body.stop or ()), seed=body.seed)

    def check_size(self, texts: Sequence[str], what: str) -> None:
        chars = sum(len(text) for text in texts)
        if chars > self.settings.max_chars:
            raise APIError(400, f"{what} hold {chars} characters, more than this server allows "
                                f"({self.settings.max_chars}): send a shorter history", param=what)

    def rows_for(self, prompt: list[int], params: SamplingParams, n: int, adapter: str | None = None
                 ) -> list[Request]:
        """`n` rows of one prompt for `adapter`; with a seed, choice i samples with seed + i so the choices differ."""
        seeds = [None if params.seed is None else params.seed + i for i in range(n)]
        return [Request(prompt, params.with_overrides(seed=seed), adapter=adapter) for seed in seeds]

    def _batcher(self) -> Batcher:
        assert self.batcher is not None  # routes reach the service through ReadyServiceDep
        return self.batcher

    async def complete(self, rows: list[Request], http_request: HTTPRequest) -> list[Completion]:
        """Generate `rows`; 429 when the queue is full, 504 after the request timeout; a client that
        disconnects frees its rows."""
        task = asyncio.create_task(self._batcher().enqueue(rows))
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

    def stream(self, rows: list[Request]) -> AsyncIterator[tuple[int, str] | list[Completion]]:
        """Queue `rows` now (a full queue raises here, before any response byte), and return what yields
        `(row index, text piece)` as decoded, then the list of completions; closing it cancels the rows."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        for index, row in enumerate(rows):
            # Called from the decoding thread: hand the piece over to the event loop.
            row.on_text = lambda text, index=index: loop.call_soon_threadsafe(pieces.put_nowait, (index, text))
        task = asyncio.create_task(self._batcher().enqueue(rows))
        task.add_done_callback(lambda _: pieces.put_nowait(None))
        return self._pieces(task, pieces, loop.time() + self.settings.request_timeout_s)

    async def _pieces(self, task: asyncio.Task[list[Completion]], pieces: asyncio.Queue[tuple[int, str] | None],
                      deadline: float) -> AsyncIterator[tuple[int, str] | list[Completion]]:
        loop = asyncio.get_running_loop()
        try:
            while (item := await asyncio.wait_for(pieces.get(), max(0.0, deadline - loop.time()))) is not None:
                yield item
            completions = await task
            self.metrics.tokens.inc(sum(c.completion_tokens for c in completions))
            yield completions
        finally:
            task.cancel()


async def _cancel_on_disconnect(http_request: HTTPRequest, task: asyncio.Task[list[Completion]]) -> bool:
    """Cancel `task` when the client disconnects; True if it did."""
    while not task.done():
        if await http_request.is_disconnected():
            logger.info("client disconnected; its rows leave the batch")
            task.cancel()
            return True
        await asyncio.sleep(DISCONNECT_POLL_S)
    return False


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
