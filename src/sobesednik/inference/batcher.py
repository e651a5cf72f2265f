"""Dynamic micro-batching: requests that arrive together are decoded as one batch, off the event loop.

A request is a group of rows (its `n` choices), kept together. The worker waits for the first group, then up
to `max_wait_ms` for more until `max_batch_size` rows are queued, and runs `Generator.generate` in its one worker
thread, so the event loop keeps serving health checks, streams and new arrivals meanwhile. The queue is
bounded: past `max_queue` waiting rows `submit` raises `QueueFullError` (the API answers 429). A caller that is
cancelled (client gone, timeout) marks its rows cancelled, and the decoding loop drops them at the next token.

    async with Batcher(generator, max_batch_size=16, max_wait_ms=10, max_queue=64) as batcher:
        completions = await batcher.submit([Request(prompt, params)])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sobesednik.errors import SobesednikError
from sobesednik.inference.generator import Completion, Generator, Request

logger = logging.getLogger(__name__)


class QueueFullError(SobesednikError):
    """Too many rows are waiting for generation; the caller should retry after a short pause."""


class Batcher:
    """Collects concurrent requests into batches for one `Generator`; use as an async context manager."""

    def __init__(self, generator: Generator, *, max_batch_size: int = 16, max_wait_ms: float = 10,
                 max_queue: int = 64, on_batch: Callable[[int], None] | None = None,
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.generator = generator
        # Always the same thread: torch starts an OpenMP team per calling thread, and idle teams of other
        # threads spinning beside the working one slowed batch-1 decoding several times over.
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="sobesednik-generate")
        self._owns_executor = executor is None
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with each batch's row count (metrics)
        self._queue: deque[tuple[list[Request], asyncio.Future[list[Completion]]]] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Rows waiting for a batch (not counting the batch being decoded)."""
        return sum(len(requests) for requests, _ in self._queue)

    async def __aenter__(self) -> Batcher:
        self._worker = asyncio.create_task(self._run(), name="sobesednik-batcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for _, future in self._queue:
            future.cancel()
        if self._owns_executor:
            self.executor.shutdown(wait=False)

    async def submit(self, requests: Sequence[Request]) -> list[Completion]:
        """Generate `requests` in some upcoming batch; raises `QueueFullError` when the queue is full."""
        if self.queued + len(requests) > self.max_queue:
            raise QueueFullError(f"the generation queue is full ({self.queued} of {self.max_queue} waiting): "
                                 "retry in a second")
        future: asyncio.Future[list[Completion]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(requests), future))
        self._arrived.set()
        try:
            return await future
        except asyncio.CancelledError:
            for request in requests:
                request.cancelled.set()
            raise

    async def _next_batch(self) -> list[tuple[list[Request], asyncio.Future[list[Completion]]]]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self.queued < self.max_batch_size and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        batch, rows = [], 0
        while self._queue and (not batch or rows + len(self._queue[0][0]) <= self.max_batch_size):
            requests, future = self._queue.popleft()
            if not future.done():  # a caller cancelled while waiting costs nothing
                batch.append((requests, future))
                rows += len(requests)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            rows = [request for requests, _ in batch for request in requests]
            if self.on_batch is not None:
                self.on_batch(len(rows))
            try:
                completions = await asyncio.get_running_loop().run_in_executor(self.executor,
                                                                               self.generator.generate, rows)
            except Exception as error:  # one bad batch must not stop the service; its callers get the error
                logger.exception("generation failed for a batch of %d rows", len(rows))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for requests, future in batch:
                if not future.done():
                    future.set_result(completions[start:start + len(requests)])
                start += len(requests)
