"""Cleaning rules for candidate samples; every rule that drops a sample names its reason.

    reason = reply_drop_reason("https://example.com", min_chars=2, max_chars=1000)   # "reply_only_link"
    context = trim_context(context, max_chars=1000)

The reasons are the keys of `stats.json["dropped"]`, so a user can see which rule cost how many samples and
which flag to change (docs/data.md lists them). The checks run once per sample on the hot path, so each uses
a C-level test (`len`, `in`, one regex search) before anything slower.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sobesednik.data.privacy import only_placeholders

# Reasons a message is skipped before it can be a turn (counted in stats.json["skipped"]).
MESSAGE_SKIP_REASONS = {
    "service": "service message (joins, pins, calls, topic creation)",
    "media_only": "photo, sticker, voice, file or poll without text",
    "empty_text": "no visible text",
    "forwarded": "forwarded from elsewhere (keep with --keep-forwarded)",
    "via_bot": "sent via an inline bot (keep with --keep-via-bot)",
    "message_without_id": "no integer id",
    "not_a_message_object": "an item of `messages` that is not an object",
    "chat_not_selected": "in a chat that --chat did not pick",
}

# Reasons a candidate sample is dropped (counted in stats.json["dropped"]).
SAMPLE_DROP_REASONS = {
    "no_context": "the first turn of a conversation: nothing to reply to",
    "follows_own_turn": "the turn right before it is the same author's (raise --merge-seconds to join them)",
    "reply_too_short": "reply under --min-chars characters",
    "reply_too_long": "reply over --max-chars characters",
    "reply_only_link": "reply is only a link",
    "reply_only_placeholder": "reply is only <PHONE>-like placeholders (--mask-pii)",
    "reply_no_words": "reply has no letters or digits (emoji, punctuation)",
    "context_too_long": "the turn before the reply is over --max-chars characters",
    "duplicate": "same context and reply as an earlier sample",
    "not_speaker": "reply by someone other than --speaker",
}

# A `drop_reason` not computed yet (`telegram_export.Message`, `threads.Candidate`): `reply_drop_reason` decides.
UNCHECKED = ""

_WORD = re.compile(r"\w")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def reply_drop_reason(reply: str, *, min_chars: int, max_chars: int) -> str | None:
    """Why `reply` cannot be a training target, or None when it can."""
    length = len(reply)
    if length < min_chars:
        return "reply_too_short"
    if length > max_chars:
        return "reply_too_long"
    if ("://" in reply or "www." in reply) and _WORD.search(_URL.sub("", reply)) is None:
        return "reply_only_link"
    if "<" in reply and only_placeholders(reply):
        return "reply_only_placeholder"
    if _WORD.search(reply) is None:
        return "reply_no_words"
    return None


def trim_context(context: Sequence[tuple[str, str, list[int]]], *, max_chars: int) -> list[tuple[str, str, list[int]]]:
    """The newest context turns up to (not including) the newest one longer than `max_chars` characters.

    A 10 MB paste would otherwise dominate the sample; what came before it is not context of the reply anyway.
    """
    for index in range(len(context) - 1, -1, -1):
        if len(context[index][1]) > max_chars:
            return list(context[index + 1 :])
    return list(context)


class Deduplicator:
    """Remembers a 64-bit hash of each sample's context and reply; a repeat is a duplicate.

    Hashes, not texts: 1M samples cost ~60 MB instead of their whole text; a collision (odds ~1e-8 at 1M
    samples) would drop one sample.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def is_duplicate(self, contents: tuple[str, ...]) -> bool:
        key = hash(contents)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False
