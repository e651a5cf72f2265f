"""Both throttles, one set of tests: per-user window, per-chat in-flight limit, slots released on errors; and
Redis replicas that share the limits."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sobesednik.bot.throttle import MemoryThrottle, RedisThrottle, ThrottledError, open_throttle


async def _take(throttle, user_id: int, chat_id: int) -> None:
    """Take a slot and give it back at once."""
    async with throttle.slot(user_id=user_id, chat_id=chat_id):
        pass


def _redis_throttle(url: str, prefix: str, **limits) -> RedisThrottle:
    throttle = open_throttle(url, **limits, inflight_ttl=60)
    assert isinstance(throttle, RedisThrottle)
    throttle.prefix = prefix  # isolate tests sharing one server
    return throttle


@pytest.fixture(params=["memory", "redis"])
async def make_throttle(request):
    """A factory of throttles of one kind; the Redis ones of a test share a fresh prefix."""
    made = []
    prefix = f"test:{uuid.uuid4().hex}"

    def make(**limits):
        if request.param == "memory":
            throttle = open_throttle("sqlite:///history.sqlite3", **limits, inflight_ttl=60)
            assert isinstance(throttle, MemoryThrottle)
        else:
            throttle = _redis_throttle(request.getfixturevalue("redis_server"), prefix, **limits)
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        await throttle.close()


async def test_rate_limit_per_user_within_the_window(make_throttle):
    throttle = make_throttle(messages=2, seconds=60, max_inflight=5)
    for _ in range(2):
        await _take(throttle, 1, 1)
    with pytest.raises(ThrottledError) as error:
        await _take(throttle, 1, 1)
    assert 0 < error.value.seconds <= 60
    await _take(throttle, 2, 1)  # another user is not limited


async def test_the_window_slides(make_throttle):
    throttle = make_throttle(messages=1, seconds=0.3, max_inflight=5)
    await _take(throttle, 1, 1)
    with pytest.raises(ThrottledError):
        await _take(throttle, 1, 1)
    await asyncio.sleep(0.35)
    await _take(throttle, 1, 1)


async def test_one_inflight_per_chat_and_release_after_exception(make_throttle):
    throttle = make_throttle(messages=10, seconds=60, max_inflight=1)
    async with throttle.slot(user_id=1, chat_id=7):
        with pytest.raises(ThrottledError) as error:
            await _take(throttle, 2, 7)
        assert error.value.seconds == 0
        await _take(throttle, 2, 8)  # other chats are free
    with pytest.raises(RuntimeError):
        async with throttle.slot(user_id=1, chat_id=7):
            raise RuntimeError("service failed")
    await _take(throttle, 1, 7)


async def test_replicas_share_the_limits_through_redis(redis_server):
    prefix = f"test:{uuid.uuid4().hex}"
    first, second = (_redis_throttle(redis_server, prefix, messages=2, seconds=60, max_inflight=1) for _ in "ab")
    try:
        async with first.slot(user_id=1, chat_id=7):
            with pytest.raises(ThrottledError) as error:  # the chat is busy on the other replica
                await _take(second, 2, 7)
            assert error.value.seconds == 0
        await _take(second, 1, 7)  # released there, taken here: the user's second request
        with pytest.raises(ThrottledError) as error:
            await _take(first, 1, 9)
        assert 59 < error.value.seconds <= 60
    finally:
        await first.close()
        await second.close()


async def test_a_slot_of_a_dead_replica_expires(redis_server):
    throttle = _redis_throttle(redis_server, f"test:{uuid.uuid4().hex}", messages=10, seconds=60, max_inflight=1)
    throttle.inflight_ttl = 0.3
    try:
        dead = throttle.slot(user_id=1, chat_id=7)
        await dead.__aenter__()  # taken and never released, as by a replica killed mid-reply
        with pytest.raises(ThrottledError):
            await _take(throttle, 2, 7)
        await asyncio.sleep(0.4)
        await _take(throttle, 2, 7)
    finally:
        await throttle.close()


async def test_idle_users_are_forgotten_so_the_map_stays_bounded():
    now = [0.0]
    throttle = MemoryThrottle(messages=2, seconds=30, max_inflight=1, clock=lambda: now[0])
    for user_id in range(1000):
        await _take(throttle, user_id, chat_id=user_id)
    assert throttle.tracked_users == 1000
    now[0] = 31.0  # every one of them idle for longer than the window
    await _take(throttle, 5000, chat_id=5000)
    assert throttle.tracked_users == 1
    # Forgetting loses no limit: a user inside the window keeps their count.
    await _take(throttle, 5000, chat_id=5000)
    with pytest.raises(ThrottledError):
        await _take(throttle, 5000, chat_id=5000)
    # A request refused because the chat is busy leaves no entry behind.
    async with throttle.slot(user_id=1, chat_id=7):
        with pytest.raises(ThrottledError):
            await _take(throttle, 2, chat_id=7)
    assert throttle.tracked_users == 2
