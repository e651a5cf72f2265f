"""From a chat's messages, in order, to dialogue samples: conversations, turns, reply chains, roles.

    builder = DialogueBuilder(settings, groups, stats, sink=candidates.append)
    builder.start_chat(chat_id)
    for message in messages:
        builder.add(message)
    builder.finish()

Rules (docs/data.md has the reasons):
- a conversation is a run of messages of one chat (one forum topic) without a silence over `gap_minutes`;
  a skipped forward or via-bot message also ends it;
- one author's messages within `merge_seconds` of each other form one turn, unless a message replies to
  something: a reply always opens a new turn;
- when a turn closes it becomes a `Candidate`: its context is the reply chain of its first message when it
  has one (followed up through `reply_to_message_id`; a missing target ends the chain), otherwise the
  preceding turns of the conversation;
- ids may repeat (re-saved or merged exports): every message stays a message, and a reply to a repeated id
  answers the nearest earlier message with it, which is resolved when the reply is read, so a chain only ever
  steps back in time and cannot loop;
- at most `context_turns` turns (messages, in a reply chain) before the reply are its context; then the
  target's author is `assistant`, everyone else `user`, and adjacent turns of one role merge (so a group
  chat's three other speakers become one `user` turn); the turn right before the reply must be a `user` turn;
- in forum supergroups a reply to a topic's opening service message only marks the topic, so it is not a reply.

Every conversation is a node of `split.Groups`; a reply chain that reaches into an older conversation joins
the two, so that no sample shares text with a sample of another split.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from sobesednik.data.filters import UNCHECKED
from sobesednik.data.settings import PrepareSettings
from sobesednik.data.split import Groups
from sobesednik.data.stats import Stats
from sobesednik.data.telegram_export import Message


# The per-turn and per-message records below are msgspec Structs: one is built for every message, and a
# NamedTuple's Python-level `__new__` cost five times what a Struct's constructor does.
class Candidate(msgspec.Struct, gc=False):  # gc=False: these records never form reference cycles
    """A target turn with its context, before the cleaning filters."""

    context: list[tuple[str, str, list[int]]]  # (role, text, message ids), oldest first, roles alternate
    reply: str
    reply_ids: list[int]
    reply_drop_reason: str | None  # of a one-message reply, its message's `drop_reason`; else `filters.UNCHECKED`
    author: str
    chat_id: int | str
    thread: int  # id of the first message of the reply chain or conversation
    group: int  # conversation node in `Groups`
    date: int  # unix time of the reply's last message


# A kept message's key in the store: its id, or (id, n) for the n-th repeat of an id seen before in the chat.
Key = int | tuple[int, int]


class _Stored(msgspec.Struct, gc=False):
    """What a later reply chain needs of a kept message."""

    id: int
    author: str
    text: str
    conversation: int
    reply_to: Key  # the key of the message it answers, 0 when none
    topic: int


class _Turn(msgspec.Struct, gc=False):
    """One author's run of messages, open while more may join it."""

    author: str
    texts: list[str]
    ids: list[int]
    date: int  # of the turn's last message
    reply_to: Key
    drop_reason: str | None  # the first message's; `filters.UNCHECKED` once a second one joins


class _Conversation:
    __slots__ = ("first_id", "group", "last_date", "open", "turns")

    def __init__(self, group: int, first_id: int, date: int, context_turns: int) -> None:
        self.group = group
        self.first_id = first_id
        self.last_date = date
        self.open: _Turn | None = None
        self.turns: deque[tuple[str, str, list[int]]] = deque(maxlen=context_turns)


class DialogueBuilder:
    """Turns a chat's messages, fed in order, into `Candidate`s passed to `sink`."""

    def __init__(self, settings: PrepareSettings, groups: Groups, stats: Stats,
                 sink: Callable[[Candidate], None]) -> None:
        self._gap = settings.gap_minutes * 60
        self._merge = settings.merge_seconds
        self._context_turns = settings.context_turns
        self._groups = groups
        self._stats = stats
        self._sink = sink
        self.names: dict[str, set[str]] = {}  # author → display names seen
        self._interned: dict[str, str] = {}
        self._chat_id: int | str = 0
        self._store: dict[Key, _Stored] = {}
        self._newest: dict[int, Key] = {}  # a repeated id → the key of its latest message (repeats only)
        self._topics: set[int] = set()
        self._conversations: dict[int, _Conversation] = {}  # topic (0 outside forums) → current conversation

    def start_chat(self, chat_id: int | str) -> None:
        """Close the previous chat's conversations and start an empty state for `chat_id`."""
        self.finish()
        self._chat_id = chat_id
        self._store = {}
        self._newest = {}
        self._topics = set()

    def note_topic(self, topic_id: Any) -> None:
        """Remember a forum topic: its opening service message is what the topic's messages "reply" to."""
        if type(topic_id) is int:
            self._topics.add(topic_id)

    def break_conversation(self, reply_to: Any) -> None:
        """A skipped forward or via-bot message: the talk around it is cut in two."""
        topic = reply_to if reply_to in self._topics else 0
        if type(reply_to) is int and topic == 0:
            stored = self._store.get(self._newest.get(reply_to, reply_to))
            topic = 0 if stored is None else stored.topic
        conversation = self._conversations.pop(topic, None)
        if conversation is not None:
            self._end(conversation)

    def add(self, message: Message) -> None:
        """Feed the next kept message of the current chat."""
        # One stored copy of each author string: 1M messages must not hold 1M copies of "user123".
        author = self._interned.get(message.author)
        if author is None:
            author = self._interned[message.author] = message.author
            self.names[author] = set()
        if message.name:
            self.names[author].add(message.name)
        key: Key = message.id
        if key in self._store:
            self._stats.quirks["duplicate_ids"] += 1
            key = self._newest[message.id] = (message.id, len(self._store))  # unique: the store only grows
        reply_to, topic = self._resolve_reply(message) if message.reply_to else (0, 0)

        conversation = self._conversations.get(topic)
        if conversation is None or message.date - conversation.last_date > self._gap:
            if conversation is not None:
                self._end(conversation)
            conversation = _Conversation(self._groups.add(message.date), message.id, message.date,
                                         self._context_turns)
            self._conversations[topic] = conversation
        elif message.date > conversation.last_date:
            conversation.last_date = message.date

        turn = conversation.open
        if (turn is not None and not reply_to and turn.author is author
                and message.date - turn.date <= self._merge):
            turn.texts.append(message.text)
            turn.ids.append(message.id)
            turn.date = message.date
            turn.drop_reason = UNCHECKED
        else:
            self._close(conversation)
            conversation.open = _Turn(author, [message.text], [message.id], message.date, reply_to,
                                      message.drop_reason)
        self._store[key] = _Stored(message.id, author, message.text, conversation.group, reply_to, topic)

    def finish(self) -> None:
        """Close every open turn of the current chat."""
        for conversation in self._conversations.values():
            self._end(conversation)
        self._conversations = {}

    def _end(self, conversation: _Conversation) -> None:
        self._close(conversation)
        self._groups.touch(conversation.group, conversation.last_date)

    def _resolve_reply(self, message: Message) -> tuple[Key, int]:
        """(key of the reply's target or 0, topic) of a message that has a `reply_to`."""
        target = message.reply_to
        if target in self._topics:
            self._stats.quirks["topic_membership_reply"] += 1
            return 0, target
        key = self._newest.get(target, target) if self._newest else target
        stored = self._store.get(key)
        if stored is None:
            later = target >= message.id
            self._stats.quirks["reply_to_later_message" if later else "reply_to_missing_message"] += 1
            return 0, 0
        return key, stored.topic

    def _close(self, conversation: _Conversation) -> None:
        """Close the open turn: a `Candidate` with its context when it has one, then context of the next turns."""
        turn = conversation.open
        if turn is None:
            return
        conversation.open = None
        text = turn.texts[0] if len(turn.texts) == 1 else "\n".join(turn.texts)
        if turn.reply_to:
            raw, thread = self._reply_chain(turn.reply_to, conversation.group)
        else:
            raw, thread = conversation.turns, conversation.first_id
        if not raw:
            self._stats.dropped["no_context"] += 1
        elif raw[-1][0] == turn.author:
            self._stats.dropped["follows_own_turn"] += 1
        else:
            self._sink(Candidate(_context(raw, turn.author), text, turn.ids, turn.drop_reason, turn.author,
                                 self._chat_id, thread, conversation.group, turn.date))
        conversation.turns.append((turn.author, text, turn.ids))

    def _reply_chain(self, target: Key, group: int) -> tuple[list[tuple[str, str, list[int]]], int]:
        """The messages a reply answers, oldest first, and the id of the oldest; joins their conversations."""
        chain: list[tuple[str, str, list[int]]] = []
        while target and len(chain) < self._context_turns:
            stored = self._store.get(target)
            if stored is None:
                break
            chain.append((stored.author, stored.text, [stored.id]))
            if stored.conversation != group:
                self._groups.union(stored.conversation, group)
            target = stored.reply_to
        chain.reverse()
        return chain, chain[0][2][0]


def _context(raw: Sequence[tuple[str, str, list[int]]], assistant: str) -> list[tuple[str, str, list[int]]]:
    """(author, text, ids) turns → (role, text, ids) turns, adjacent same-role turns merged."""
    merged: list[tuple[str, str, list[int]]] = []
    for author, text, ids in raw:
        role = "assistant" if author == assistant else "user"
        if merged and merged[-1][0] == role:
            _, previous_text, previous_ids = merged[-1]
            merged[-1] = (role, f"{previous_text}\n{text}", previous_ids + ids)
        else:
            merged.append((role, text, ids))
    return merged
