"""Both throttles, one set of tests: per-user window, per-chat in-flight limit, slots released on errors; and
Redis replicas that share the limits."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sobesednik.bot.throttle import MemoryThrottle, RedisThrottle, ThrottledError, open_throttle


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
        async with throttle.slot(user_id=1, chat_id=1):
            pass
    with pytest.raises(ThrottledError) as error:
        async with throttle.slot(user_id=1, chat_id=1):
            pass
    assert 0 < error.value.seconds <= 60
    async with throttle.slot(user_id=2, chat_id=1):  # another user is not limited
        pass


async def test_the_window_slides(make_throttle):
    throttle = make_throttle(messages=1, seconds=0.3, max_inflight=5)
    async with throttle.slot(user_id=1, chat_id=1):
        pass
    with pytest.raises(ThrottledError):
        async with throttle.slot(user_id=1, chat_id=1):
            pass
    await asyncio.sleep(0.35)
    async with throttle.slot(user_id=1, chat_id=1):
        pass


async def test_one_inflight_per_chat_and_release_after_exception(make_throttle):
    throttle = make_throttle(messages=10, seconds=60, max_inflight=1)
    async with throttle.slot(user_id=1, chat_id=7):
        with pytest.raises(ThrottledError) as error:
            async with throttle.slot(user_id=2, chat_id=7):
                pass
        assert error.value.seconds == 0
        async with throttle.slot(user_id=2, chat_id=8):  # other chats are free
            pass
    with pytest.raises(RuntimeError):
        async with throttle.slot(user_id=1, chat_id=7):
            raise RuntimeError("service failed")
    async with throttle.slot(user_id=1, chat_id=7):
        pass


async def test_replicas_share_the_limits_through_redis(redis_server):
    prefix = f"test:{uuid.uuid4().hex}"
    first, second = (_redis_throttle(redis_server, prefix, messages=2, seconds=60, max_inflight=1) for _ in "ab")
    try:
        async with first.slot(user_id=1, chat_id=7):
            with pytest.raises(ThrottledError) as error:  # the chat is busy on the other replica
                async with second.slot(user_id=2, chat_id=7):
                    pass
            assert error.value.seconds == 0
        async with second.slot(user_id=1, chat_id=7):  # released there, taken here: the user's second request
            pass
        with pytest.raises(ThrottledError) as error:
            async with first.slot(user_id=1, chat_id=9):
                pass
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
            async with throttle.slot(user_id=2, chat_id=7):
                pass
        await asyncio.sleep(0.4)
        async with throttle.slot(user_id=2, chat_id=7):
            pass
    finally:
        await throttle.close()
