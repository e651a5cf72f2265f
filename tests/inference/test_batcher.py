"""Batcher: concurrent requests share a batch, the queue is bounded, a cancelled caller leaves its batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sobesednik.inference.batcher import Batcher, QueueFullError
from sobesednik.inference.generator import Completion, Request
from sobesednik.inference.sampling import SamplingParams


class FakeGenerator:
    """The Generator interface, recording batch sizes; `release` holds a batch until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.cancelled_seen: list[bool] = []

    def generate(self, requests: list[Request]) -> list[Completion]:
        self.batches.append(len(requests))
        self.release.wait(10)
        self.cancelled_seen.extend(request.cancelled.is_set() for request in requests)
        return [Completion(f"ответ {len(r.prompt)}", "stop", len(r.prompt), 1) for r in requests]


def request(length: int = 3) -> Request:
    return Request(list(range(length)), SamplingParams())


async def test_concurrent_requests_share_one_batch() -> None:
    fake = FakeGenerator()
    async with Batcher(fake, max_batch_size=8, max_wait_ms=200, max_queue=64) as batcher:  # type: ignore[arg-type]
        results = await asyncio.gather(*(batcher.submit([request(i + 1)]) for i in range(5)))
    assert fake.batches == [5]
    assert [r[0].text for r in results] == [f"ответ {i + 1}" for i in range(5)]  # each caller gets its own row


async def test_batches_never_exceed_max_batch_size_and_keep_groups_whole() -> None:
    fake = FakeGenerator()
    async with Batcher(fake, max_batch_size=4, max_wait_ms=100, max_queue=64) as batcher:  # type: ignore[arg-type]
        results = await asyncio.gather(*(batcher.submit([request(), request(), request()]) for _ in range(3)))
    assert sorted(fake.batches) == [3, 3, 3]  # two groups of 3 do not fit in 4 rows
    assert all(len(r) == 3 for r in results)


async def test_full_queue_is_refused_at_once() -> None:
    fake = FakeGenerator()
    fake.release.clear()
    async with Batcher(fake, max_batch_size=1, max_wait_ms=0, max_queue=2) as batcher:  # type: ignore[arg-type]
        running = asyncio.create_task(batcher.submit([request()]))
        while not fake.batches:  # the first request is being decoded, so it no longer counts as queued
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(batcher.submit([request(), request()]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match=r"queue is full \(2 of 2 waiting\)"):
            await batcher.submit([request()])
        fake.release.set()
        await asyncio.gather(running, waiting)


async def test_cancelled_caller_marks_its_rows_cancelled() -> None:
    fake = FakeGenerator()
    fake.release.clear()
    async with Batcher(fake, max_batch_size=4, max_wait_ms=0, max_queue=8) as batcher:  # type: ignore[arg-type]
        rows = [request()]
        task = asyncio.create_task(batcher.submit(rows))
        while not fake.batches:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rows[0].cancelled.is_set()  # the decoding loop drops it at its next token
        fake.release.set()
        assert (await batcher.submit([request()]))[0].finish_reason == "stop"  # the worker goes on
