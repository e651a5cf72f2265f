"""The throttle: per-user window, per-chat in-flight limit, slots released on errors."""

from __future__ import annotations

import pytest

from sobesednik.bot.middlewares import Throttle, ThrottledError


def test_rate_limit_per_user_within_the_window():
    throttle = Throttle(messages=2, seconds=60, max_inflight=5)
    for _ in range(2):
        with throttle.slot(user_id=1, chat_id=1):
            pass
    with pytest.raises(ThrottledError) as error, throttle.slot(user_id=1, chat_id=1):
        pass
    assert 0 < error.value.seconds <= 60
    with throttle.slot(user_id=2, chat_id=1):  # another user is not limited
        pass


def test_one_inflight_per_chat_and_release_after_exception():
    throttle = Throttle(messages=10, seconds=60, max_inflight=1)
    with throttle.slot(user_id=1, chat_id=7):
        with pytest.raises(ThrottledError) as error, throttle.slot(user_id=2, chat_id=7):
            pass
        assert error.value.seconds == 0
        with throttle.slot(user_id=2, chat_id=8):  # other chats are free
            pass
    with pytest.raises(RuntimeError), throttle.slot(user_id=1, chat_id=7):
        raise RuntimeError("service failed")
    with throttle.slot(user_id=1, chat_id=7):
        pass
