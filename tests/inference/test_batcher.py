"""Batcher: concurrent requests share a batch, later ones join it while it decodes and return when their own
rows are done, the queue is bounded, a cancelled caller leaves its batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sobesednik.inference.batcher import Batcher, QueueFullError
from sobesednik.inference.generator import Generated, Row
from sobesednik.inference.sampling import SamplingParams


class FakeGenerator:
    """The Generator interface: a row takes as many steps as its prompt has tokens; each step takes a tick.

    Records the rows admitted together (`batches`), the largest number decoding at once and the calls.
    """

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.most_decoding = 0
        self.calls = 0
        self.ticks = threading.Semaphore(1000)

    def generate(self, requests: list[Row], admit=None) -> list[Generated]:
        self.calls += 1
        decoding: list[list] = [[request, 0] for request in requests]
        while True:
            joining = admit(len(decoding)) if admit is not None else []
            if joining:
                self.batches.append(len(joining))
                decoding += [[request, 0] for request in joining]
            if not decoding:
                return []
            self.most_decoding = max(self.most_decoding, len(decoding))
            assert self.ticks.acquire(timeout=10), "the test never released the next step"
            for row in decoding:
                row[1] += 1
            finished = [row for row in decoding if row[1] >= len(row[0].prompt) or row[0].cancelled.is_set()]
            decoding = [row for row in decoding if row not in finished]
            for request, _ in finished:
                reason = "cancelled" if request.cancelled.is_set() else "stop"
                request.on_done(Generated(f"ответ {len(request.prompt)}", reason, len(request.prompt), 1))


def request(length: int = 3) -> Row:
    return Row(list(range(length)), SamplingParams())


async def until(condition, timeout: float = 10) -> None:
    """Wait for the decoding thread to get somewhere."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_concurrent_requests_share_one_batch() -> None:
    fake = FakeGenerator()
    async with Batcher(fake, max_batch_size=8, max_wait_ms=200, max_queue=64) as batcher:  # type: ignore[arg-type]
        results = await asyncio.gather(*(batcher.submit([request(i + 1)]) for i in range(5)))
    assert fake.batches == [5]
    assert [r[0].text for r in results] == [f"ответ {i + 1}" for i in range(5)]  # each caller gets its own row


async def test_a_request_joins_the_running_batch_and_returns_when_its_rows_are_done() -> None:
    fake = FakeGenerator()
    fake.ticks = threading.Semaphore(0)
    async with Batcher(fake, max_batch_size=4, max_wait_ms=0, max_queue=8) as batcher:  # type: ignore[arg-type]
        long = asyncio.create_task(batcher.submit([request(6)]))
        await until(lambda: fake.batches == [1])
        short = asyncio.create_task(batcher.submit([request(2)]))
        await asyncio.sleep(0.01)
        fake.ticks.release()  # the long row's first token; then the short request joins
        await until(lambda: fake.batches == [1, 1])
        fake.ticks.release(2)
        assert (await short)[0].text == "ответ 2"
        assert not long.done()  # the short reply did not wait for the long one
        fake.ticks.release(3)
        assert (await long)[0].text == "ответ 6"
    assert fake.calls == 1  # one running batch, joined, not a new batch after the first


async def test_a_batch_at_the_join_fraction_shrinks_before_more_join() -> None:
    fake = FakeGenerator()
    fake.ticks = threading.Semaphore(0)
    async with Batcher(fake, max_batch_size=4, max_wait_ms=0, join_fraction=0.5,  # type: ignore[arg-type]
                       max_queue=8) as batcher:
        running = asyncio.create_task(batcher.submit([request(2), request(4)]))
        await until(lambda: fake.batches == [2])
        later = asyncio.create_task(batcher.submit([request(1)]))
        await asyncio.sleep(0.01)
        fake.ticks.release()
        await asyncio.sleep(0.05)
        assert fake.batches == [2]  # two of four rows decode: the batch is at half, so the request waits
        fake.ticks.release()  # the 2-token row finishes
        await until(lambda: fake.batches == [2, 1])
        fake.ticks.release(100)
        await asyncio.gather(running, later)


async def test_batches_never_exceed_max_batch_size_and_keep_groups_whole() -> None:
    fake = FakeGenerator()
    async with Batcher(fake, max_batch_size=4, max_wait_ms=100, max_queue=64) as batcher:  # type: ignore[arg-type]
        results = await asyncio.gather(*(batcher.submit([request(), request(), request()]) for _ in range(3)))
    assert fake.batches == [3, 3, 3]  # two groups of 3 do not fit in 4 rows
    assert fake.most_decoding == 3
    assert all(len(r) == 3 for r in results)


async def test_full_queue_is_refused_at_once() -> None:
    fake = FakeGenerator()
    fake.ticks = threading.Semaphore(0)
    async with Batcher(fake, max_batch_size=1, max_wait_ms=0, max_queue=2) as batcher:  # type: ignore[arg-type]
        running = asyncio.create_task(batcher.submit([request()]))
        await until(lambda: bool(fake.batches))  # being decoded, so it no longer counts as queued
        waiting = asyncio.create_task(batcher.submit([request(), request()]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match=r"queue is full \(2 of 2 waiting\)"):
            await batcher.submit([request()])
        fake.ticks.release(100)
        await asyncio.gather(running, waiting)  # a group larger than a batch still runs, alone


async def test_cancelled_caller_marks_its_rows_cancelled() -> None:
    fake = FakeGenerator()
    fake.ticks = threading.Semaphore(0)
    async with Batcher(fake, max_batch_size=4, max_wait_ms=0, max_queue=8) as batcher:  # type: ignore[arg-type]
        rows = [request()]
        task = asyncio.create_task(batcher.submit(rows))
        await until(lambda: bool(fake.batches))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rows[0].cancelled.is_set()  # the decoding loop drops it at its next token
        fake.ticks.release(100)
        assert (await batcher.submit([request()]))[0].finish_reason == "stop"  # the worker goes on


async def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    fake = FakeGenerator()
    real_generate = fake.generate
    failures = iter([RuntimeError("out of memory")])

    def generate(requests, admit=None):
        error = next(failures, None)
        if error is not None:
            admit(0)  # the rows were taken, then the model failed
            raise error
        return real_generate(requests, admit)

    fake.generate = generate  # type: ignore[method-assign]
    async with Batcher(fake, max_batch_size=4, max_wait_ms=0, max_queue=8) as batcher:  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="out of memory"):
            await batcher.submit([request()])
        assert (await batcher.submit([request()]))[0].text == "ответ 3"


async def test_closing_cancels_the_callers_and_stops_their_rows() -> None:
    fake = FakeGenerator()
    fake.ticks = threading.Semaphore(0)
    rows = [request(), request()]
    batcher = Batcher(fake, max_batch_size=4, max_wait_ms=0, max_queue=8)  # type: ignore[arg-type]
    async with batcher:
        decoding = asyncio.create_task(batcher.submit(rows[:1]))
        await until(lambda: fake.batches == [1])
        waiting = asyncio.create_task(batcher.submit(rows[1:]))
        await asyncio.sleep(0.01)
    for task in (decoding, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert all(row.cancelled.is_set() for row in rows)
    fake.ticks.release(100)  # let the decoding thread see it and end
