"""Cleaning rules: each drop reason, context trimming, deduplication."""

from __future__ import annotations

import pytest

from sobesednik.data.filters import Deduplicator, reply_drop_reason, trim_context


@pytest.mark.parametrize(("reply", "reason"), [
    ("+", "reply_too_short"),
    ("а" * 1001, "reply_too_long"),
    ("https://t.me/joinchat/abc", "reply_only_link"),
    ("www.dacha.ru  https://ya.ru", "reply_only_link"),
    ("😂😂😂", "reply_no_words"),
    ("?!", "reply_no_words"),
    ("<PHONE>, <EMAIL>", "reply_only_placeholder"),
    ("ок", None),
    ("вот ссылка https://ya.ru", None),
    ("звони <PHONE>", None),
    ("42", None),
])
def test_reply_drop_reasons(reply: str, reason: str | None):
    assert reply_drop_reason(reply, min_chars=2, max_chars=1000) == reason


def test_trim_context_cuts_at_the_newest_too_long_turn():
    context = [("user", "a", [1]), ("assistant", "x" * 50, [2]), ("user", "b", [3])]
    assert trim_context(context, max_chars=10) == [("user", "b", [3])]
    assert trim_context(context, max_chars=100) == context
    assert trim_context([("user", "x" * 50, [1])], max_chars=10) == []


def test_deduplicator_sees_exact_repeats_only():
    dedup = Deduplicator()
    assert not dedup.is_duplicate(("привет", "привет!"))
    assert dedup.is_duplicate(("привет", "привет!"))
    assert not dedup.is_duplicate(("привет", "привет"))
    assert not dedup.is_duplicate(("привет\nпривет!",))  # the boundary between turns counts
