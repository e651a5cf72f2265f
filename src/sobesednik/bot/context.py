"""The messages the bot sends to the model, built the way `prepare` builds training contexts.

The message being answered is the last `user` turn. When it replies to another message, the context is that
reply chain (followed back through the history store); otherwise it is the chat's recent messages. The bot's
own messages are `assistant`, everybody else's are `user`, adjacent turns of one role are merged (as in the
training data), and the result is bounded by a number of turns and a number of characters, oldest dropped first.

    messages = await build_context(store, chat_id, message, max_turns=10, max_chars=1500)
"""

from __future__ import annotations

from collections.abc import Sequence

from sobesednik.bot.history import ChatKey, HistoryStore, StoredMessage


def merge_turns(history: Sequence[StoredMessage]) -> list[dict[str, str]]:
    """OpenAI-style messages; consecutive messages of one role become one turn joined by newlines."""
    turns: list[dict[str, str]] = []
    for message in history:
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n" + message.text
        else:
            turns.append({"role": message.role, "content": message.text})
    return turns


def bound_turns(turns: list[dict[str, str]], *, max_turns: int, max_chars: int) -> list[dict[str, str]]:
    """The newest turns within both limits; the last turn is always kept, cut to `max_chars` from its end."""
    kept = turns[-max_turns:]
    total = 0
    start = len(kept)
    for index in range(len(kept) - 1, -1, -1):
        total += len(kept[index]["content"])
        if total > max_chars and index < len(kept) - 1:
            break
        start = index
    kept = [dict(turn) for turn in kept[start:]]
    kept[-1]["content"] = kept[-1]["content"][-max_chars:]
    # A context that opens with the bot's own words has no prompt for them; training samples open with a user.
    while len(kept) > 1 and kept[0]["role"] == "assistant":
        kept.pop(0)
    return kept


async def reply_chain(store: HistoryStore, chat_id: ChatKey, message: StoredMessage, limit: int) -> list[StoredMessage]:
    """`message` and the stored messages it replies to, transitively, oldest first; at most `limit`."""
    chain = [message]
    seen = {message.message_id}
    while len(chain) < limit and chain[-1].reply_to is not None and chain[-1].reply_to not in seen:
        parent = await store.get(chat_id, chain[-1].reply_to)
        if parent is None:
            break
        chain.append(parent)
        seen.add(parent.message_id)
    return chain[::-1]


async def build_context(
    store: HistoryStore, chat_id: ChatKey, message: StoredMessage, *, max_turns: int, max_chars: int
) -> list[dict[str, str]]:
    """The model's messages for a reply to `message` (already in the store or not)."""
    # Merged turns can hold several messages each; read enough raw messages to fill max_turns in most chats.
    raw_limit = max_turns * 4
    if message.reply_to is not None:
        history = await reply_chain(store, chat_id, message, raw_limit)
    else:
        history = [m for m in await store.recent(chat_id, raw_limit) if m.message_id < message.message_id]
        history.append(message)
    return bound_turns(merge_turns(history), max_turns=max_turns, max_chars=max_chars)
