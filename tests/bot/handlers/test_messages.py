"""Pieces of the message handler that need no server: splitting long replies, deciding whom the bot answers."""

from __future__ import annotations

import datetime

from aiogram.types import Chat, Message, MessageEntity, User

from sobesednik.bot import texts
from sobesednik.bot.handlers.messages import is_addressed
from sobesednik.bot.streaming import TELEGRAM_MESSAGE_LIMIT, split_text

ME = User(id=1, is_bot=True, first_name="Бот", username="my_bot")
ALICE = User(id=2, is_bot=False, first_name="Алиса")


def _message(text: str, chat_type: str = "group", **kwargs) -> Message:
    return Message(
        message_id=10,
        date=datetime.datetime.now(datetime.UTC),
        chat=Chat(id=-5 if chat_type != "private" else 2, type=chat_type),
        from_user=ALICE,
        text=text,
        **kwargs,
    )


def test_split_text_keeps_short_text_whole_and_cuts_long_text_at_spaces():
    assert split_text("привет") == ["привет"]
    words = ("слово " * 2000).strip()
    pieces = split_text(words)
    assert all(len(piece) <= TELEGRAM_MESSAGE_LIMIT for piece in pieces)
    assert " ".join(pieces) == words
    assert all(not piece.endswith(" ") and "слово" in piece.split()[-1] for piece in pieces)


def test_split_text_without_spaces_and_empty_reply():
    assert [len(piece) for piece in split_text("я" * 9000)] == [4096, 4096, 808]
    assert split_text("") == [texts.EMPTY_REPLY]


def test_private_chat_is_always_addressed():
    assert is_addressed(_message("что угодно", "private"), ME)


def test_group_needs_a_mention_or_a_reply_to_the_bot():
    assert not is_addressed(_message("просто текст"), ME)
    mention = _message("@My_Bot привет", entities=[MessageEntity(type="mention", offset=0, length=7)])
    assert is_addressed(mention, ME)
    other = _message("@other_bot привет", entities=[MessageEntity(type="mention", offset=0, length=10)])
    assert not is_addressed(other, ME)
    text_mention = _message("Бот, привет", entities=[MessageEntity(type="text_mention", offset=0, length=3, user=ME)])
    assert is_addressed(text_mention, ME)
    bot_message = _message("я бот").model_copy(update={"from_user": ME})
    assert is_addressed(_message("ответ", reply_to_message=bot_message), ME)
    assert not is_addressed(_message("ответ", reply_to_message=_message("чужое")), ME)
