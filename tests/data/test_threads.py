"""Dialogue building: conversations, bursts, reply chains, roles, forum topics."""

from __future__ import annotations

from typing import Any

from sobesednik.data.settings import PrepareSettings
from sobesednik.data.split import Groups
from sobesednik.data.stats import Stats
from sobesednik.data.telegram_export import Message
from sobesednik.data.threads import Candidate, DialogueBuilder


def m(message_id: int, author: str, text: str, minute: float, reply_to: int = 0) -> Message:
    return Message(message_id, author, "", int(minute * 60), text, reply_to)


def build(messages: list[Any], **options: Any) -> tuple[list[Candidate], Stats, Groups]:
    candidates: list[Candidate] = []
    stats, groups = Stats(), Groups()
    builder = DialogueBuilder(PrepareSettings(**options), groups, stats, candidates.append)
    builder.start_chat(1)
    for message in messages:
        if isinstance(message, dict):
            builder.note_topic(message["id"])
        elif isinstance(message, tuple) and message[0] == "break":
            builder.break_conversation(message[1])
        else:
            builder.add(message)
    builder.finish()
    return candidates, stats, groups


def roles(candidate: Candidate) -> list[tuple[str, str]]:
    return [(role, text) for role, text, _ in candidate.context] + [("assistant", candidate.reply)]


def test_previous_turns_are_context_and_first_message_has_none():
    candidates, stats, _ = build([m(1, "a", "привет", 0), m(2, "b", "привет!", 1), m(3, "a", "как дела?", 2)])
    assert [roles(c) for c in candidates] == [
        [("user", "привет"), ("assistant", "привет!")],
        [("assistant", "привет"), ("user", "привет!"), ("assistant", "как дела?")],
    ]
    assert stats.dropped["no_context"] == 1
    assert candidates[1].reply_ids == [3] and candidates[1].thread == 1


def test_gap_starts_a_new_conversation():
    candidates, stats, groups = build([m(1, "a", "вечер", 0), m(2, "b", "да", 1), m(3, "a", "утро", 600),
                                       m(4, "b", "доброе", 601)], gap_minutes=60)
    assert [roles(c) for c in candidates] == [[("user", "вечер"), ("assistant", "да")],
                                              [("user", "утро"), ("assistant", "доброе")]]
    assert stats.dropped["no_context"] == 2
    assert len(groups) == 2 and candidates[0].group != candidates[1].group


def test_bursts_of_one_author_merge_into_one_turn():
    candidates, _, _ = build([m(1, "a", "слушай", 0), m(2, "a", "а ты едешь?", 0.5), m(3, "b", "да", 1),
                              m(4, "b", "в субботу", 1.2)], merge_seconds=120)
    [candidate] = candidates
    assert roles(candidate) == [("user", "слушай\nа ты едешь?"), ("assistant", "да\nв субботу")]
    assert candidate.reply_ids == [3, 4]
    assert candidate.context[0][2] == [1, 2]


def test_slow_second_message_of_same_author_is_dropped_as_follows_own_turn():
    candidates, stats, _ = build([m(1, "a", "раз", 0), m(2, "b", "два", 1), m(3, "b", "три", 10)],
                                 merge_seconds=60)
    assert [c.reply for c in candidates] == ["два"]
    assert stats.dropped["follows_own_turn"] == 1


def test_reply_chain_comes_before_the_preceding_messages():
    candidates, _, _ = build([m(1, "a", "кто везёт мангал?", 0), m(2, "b", "я", 1), m(3, "c", "а уголь?", 2),
                              m(4, "d", "куплю", 3), m(5, "c", "спасибо", 4, reply_to=2)])
    # The chain is the context: message 2 replied to nothing, so it ends there; 3 and 4 are left out.
    assert roles(candidates[-1]) == [("user", "я"), ("assistant", "спасибо")]
    assert candidates[-1].thread == 2


def test_reply_opens_a_new_turn_even_inside_a_burst():
    candidates, _, _ = build([m(1, "a", "раз", 0), m(2, "b", "два", 1), m(3, "b", "ответ на раз", 1.1, reply_to=1)])
    assert [c.reply for c in candidates] == ["два", "ответ на раз"]


def test_context_turns_limits_the_context():
    messages = [m(i, "ab"[i % 2], f"реплика {i}", i) for i in range(1, 8)]
    candidates, _, _ = build(messages, context_turns=2)
    assert len(candidates[-1].context) == 2
    assert [text for _, text, _ in candidates[-1].context] == ["реплика 5", "реплика 6"]


def test_reply_chain_is_capped_and_missing_targets_end_it():
    messages = [m(1, "a", "один", 0)] + [m(i, "ab"[i % 2], f"ответ {i}", i, reply_to=i - 1) for i in range(2, 9)]
    messages.append(m(9, "c", "ответ на пропавшее", 9, reply_to=100))
    candidates, stats, _ = build(messages, context_turns=3)
    assert [text for _, text, _ in candidates[-2].context] == ["ответ 5", "ответ 6", "ответ 7"]
    assert stats.quirks["reply_to_later_message"] == 1
    # The reply to a missing message falls back to the preceding turns of the conversation.
    assert roles(candidates[-1]) == [("user", "ответ 6\nответ 7\nответ 8"), ("assistant", "ответ на пропавшее")]


def test_reply_into_an_older_conversation_joins_the_groups():
    candidates, _, groups = build([m(1, "a", "вопрос", 0), m(2, "b", "ответ", 1), m(3, "a", "вспомнил", 500),
                                   m(4, "c", "про вопрос", 501, reply_to=1)])
    assert groups.find(candidates[0].group) == groups.find(candidates[-1].group)


def test_forum_topic_opening_message_marks_membership_not_a_reply():
    topic = {"id": 10, "type": "service", "action": "topic_created", "title": "Дача"}
    candidates, stats, _ = build([topic, m(11, "a", "в теме", 0, reply_to=10), m(12, "z", "вне темы", 0.5),
                                  m(13, "b", "тоже в теме", 1, reply_to=10)])
    assert roles(candidates[-1]) == [("user", "в теме"), ("assistant", "тоже в теме")]
    assert stats.quirks["topic_membership_reply"] == 2


def test_skipped_forward_breaks_the_conversation():
    candidates, stats, _ = build([m(1, "a", "смотри", 0), ("break", None), m(3, "b", "ого", 1)])
    assert candidates == []
    assert stats.dropped["no_context"] == 2


def test_repeated_ids_stay_messages_and_a_reply_answers_the_nearest_earlier_one():
    candidates, stats, _ = build([m(1, "a", "первый", 0), m(1, "b", "второй", 1), m(2, "c", "третий", 10),
                                  m(3, "a", "ответ", 11, reply_to=1)], context_turns=4)
    assert roles(candidates[0]) == [("user", "первый"), ("assistant", "второй")]
    assert roles(candidates[-1]) == [("user", "второй"), ("assistant", "ответ")]  # not "первый"
    assert candidates[-1].context[0][2] == [1]
    assert stats.quirks["duplicate_ids"] == 1


def test_a_chain_through_one_repeated_id_steps_back_instead_of_stopping():
    # Every message replies to "1", the id they all carry: each answers the one before it.
    messages = [m(1, "ab"[index % 2], f"реплика {index}", index, reply_to=1 if index else 0) for index in range(6)]
    candidates, stats, _ = build(messages, context_turns=3)
    assert [text for _, text, _ in candidates[-1].context] == ["реплика 2", "реплика 3", "реплика 4"]
    assert stats.quirks["duplicate_ids"] == 5
