"""Continuous batching: requests are decoded together, and new ones join the running batch between two tokens.

A request is a group of rows (its `n` choices), kept together. When nothing is decoding, the worker waits for
the first group, then up to `max_wait_ms` for more until `max_batch_size` rows are queued, and runs
`Generator.generate` in its one worker thread, so the event loop keeps serving health checks, streams and new
arrivals meanwhile. While that batch decodes, the generator asks before every token whether queued groups fit
in `max_batch_size` rows; while fewer than `join_fraction` of that many rows decode, they join at once, so a
request does not wait for a whole batch to finish, and each caller gets its reply as soon as its own rows are
done. A fuller batch is left to shrink first: on a CPU every joining row makes each step dearer for all, and a
join costs a prompt pass and a copy of the cache, so joining in groups gave more tokens/s and lower latency
(docs/benchmarks.md). The queue is bounded: past `max_queue` waiting rows
`submit` raises `QueueFullError` (the API answers 429). A caller that is cancelled (client gone, timeout)
marks its rows cancelled, and the decoding loop drops them at the next token.

    async with Batcher(generator, max_batch_size=16, max_wait_ms=10, max_queue=64) as batcher:
        completions = await batcher.submit([Row(prompt, params)])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sobesednik.errors import SobesednikError
from sobesednik.inference.generator import Generated, Generator, Row

logger = logging.getLogger(__name__)


class QueueFullError(SobesednikError):
    """Too many rows are waiting for generation; the caller should retry after a short pause."""


class _Group:
    """One caller's rows and the future that gets their completions once every row is done."""

    def __init__(self, requests: list[Row], future: asyncio.Future[list[Generated]]) -> None:
        self.requests = requests
        self.future = future
        self._completions: list[Generated | None] = [None] * len(requests)
        self._left = len(requests)
        for index, request in enumerate(requests):
            request.on_done = lambda completion, index=index: self._report(index, completion)

    def _report(self, index: int, completion: Generated) -> None:
        """Called in the decoding thread: hand over to the event loop, which owns the future."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: the service is shutting down
            self.future.get_loop().call_soon_threadsafe(self._done, index, completion)

    def _done(self, index: int, completion: Generated) -> None:
        self._completions[index] = completion
        self._left -= 1
        if not self._left and not self.future.done():
            self.future.set_result([c for c in self._completions if c is not None])

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Batcher:
    """Collects concurrent requests into one running batch of a `Generator`; use as an async context manager."""

    def __init__(self, generator: Generator, *, max_batch_size: int = 16, max_wait_ms: float = 10,
                 join_fraction: float = 0.5, max_queue: int = 64, on_batch: Callable[[int], None] | None = None,
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.generator = generator
        # Always the same thread: torch starts an OpenMP team per calling thread, and idle teams of other
        # threads spinning beside the working one slowed batch-1 decoding several times over.
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="sobesednik-generate")
        self._owns_executor = executor is None
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.join_below = round(max_batch_size * join_fraction)  # rows decoding below which requests join
        self.max_queue = max_queue
        self.on_batch = on_batch  # called with the row count of each set of rows that starts decoding (metrics)
        # Shared by the event loop (submit) and the decoding thread (admit): every use holds the lock.
        self._lock = threading.Lock()
        self._queue: deque[_Group] = deque()
        self._decoding: list[_Group] = []
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Rows waiting to join decoding."""
        with self._lock:
            return self._queued_rows()

    def _queued_rows(self) -> int:
        """Rows waiting to join decoding; the lock must be held."""
        return sum(len(group.requests) for group in self._queue)

    async def __aenter__(self) -> Batcher:
        self._worker = asyncio.create_task(self._run(), name="sobesednik-batcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        with self._lock:
            waiting, self._queue = list(self._queue), deque()
            decoding = list(self._decoding)
        for group in waiting + decoding:
            group.future.cancel()
            for request in group.requests:  # the decoding thread drops them at the next token and stops
                request.cancelled.set()
        if self._owns_executor:
            self.executor.shutdown(wait=False)

    async def submit(self, requests: Sequence[Row]) -> list[Generated]:
        """Generate `requests` in the running or the next batch; raises `QueueFullError` when the queue is full."""
        return await self.enqueue(requests)

    def enqueue(self, requests: Sequence[Row]) -> Coroutine[Any, Any, list[Generated]]:
        """Queue `requests` now (or raise `QueueFullError` now) and return what awaits their completions.

        A stream calls this before its response starts, so a full queue is a 429, not a cut-off stream.
        """
        future: asyncio.Future[list[Generated]] = asyncio.get_running_loop().create_future()
        group = _Group(list(requests), future)
        with self._lock:
            queued = self._queued_rows()
            if queued + len(requests) > self.max_queue:
                raise QueueFullError(f"the generation queue is full ({queued} of {self.max_queue} waiting): "
                                     "retry in a second")
            self._queue.append(group)
        self._arrived.set()
        return self._completions_of(group)

    @staticmethod
    async def _completions_of(group: _Group) -> list[Generated]:
        try:
            return await group.future
        except asyncio.CancelledError:
            for request in group.requests:
                request.cancelled.set()
            raise

    def _take(self, free_rows: int) -> list[_Group]:
        """Queued groups, oldest first, that fit in `free_rows` (a group stays whole); the lock must be held."""
        taken: list[_Group] = []
        while self._queue:
            if self._queue[0].future.done():  # a caller cancelled while waiting costs nothing
                self._queue.popleft()
                continue
            if len(self._queue[0].requests) > free_rows:
                break
            group = self._queue.popleft()
            taken.append(group)
            free_rows -= len(group.requests)
        if not taken and self._queue and free_rows == self.max_batch_size:
            taken.append(self._queue.popleft())  # a group larger than a batch still runs, alone
        self._decoding += taken
        return taken

    def _admit(self, decoding_rows: int) -> list[Row]:
        """The generator's hook between two tokens (decoding thread): the queued requests that may join now."""
        if decoding_rows and decoding_rows >= self.join_below:
            return []
        with self._lock:
            groups = self._take(self.max_batch_size - decoding_rows)
        rows = [request for group in groups for request in group.requests]
        if rows and self.on_batch is not None:
            self.on_batch(len(rows))
        return rows

    async def _gather(self) -> None:
        """Wait for a first request, then up to `max_wait` for the batch to fill."""
        while not self.queued:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self.queued < self.max_batch_size and (left := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather()
            try:
                await loop.run_in_executor(self.executor, self.generator.generate, [], self._admit)
            except Exception as error:  # one bad batch must not stop the service; its callers get the error
                logger.exception("generation failed for a batch")
                with self._lock:
                    failed, self._decoding = self._decoding, []
                for group in failed:
                    group.fail(error)
                continue
            # Every row reported before `generate` returned, and those reports ran on the loop before this line.
            with self._lock:
                self._decoding = []
