"""Text messages → the model's reply; the rest of the message types in one place.

Every text message is stored (so unaddressed group chatter is context). Private chats get a reply to each;
groups only when the bot is mentioned by @username, replied to, or by chance (`group_reply_probability`).
Replies are streamed while the model writes them (`bot/streaming.py`): a growing draft in private chats, an
edited message in groups; with `stream=off` (or `stream_group_interval=0` in groups) they are sent once, complete.
Edited messages update the stored text and get no new reply. Non-text messages get a short note in private
chats and are ignored in groups. Service errors propagate to the errors router (`handlers/errors.py`).
"""

from __future__ import annotations

import logging
import random

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.types import Message, User
from aiogram.utils.chat_action import ChatActionSender

from sobesednik.bot import texts
from sobesednik.bot.client import ServiceClient
from sobesednik.bot.context import build_context
from sobesednik.bot.handlers.persona import persona_of
from sobesednik.bot.history import HistoryStore, StoredMessage
from sobesednik.bot.settings import BotSettings
from sobesednik.bot.streaming import (
    DraftGate,
    DraftSurface,
    EditSurface,
    PlainSurface,
    Surface,
    split_text,
    stream_reply,
)
from sobesednik.bot.throttle import Throttle, ThrottledError

logger = logging.getLogger(__name__)


def _mentions(message: Message, me: User) -> bool:
    """True when an entity of the message is @me or a text mention of me."""
    for entity in message.entities or []:
        if entity.type == "mention":
            if entity.extract_from(message.text or "").lower() == f"@{me.username}".lower():
                return True
        elif entity.type == "text_mention" and entity.user is not None and entity.user.id == me.id:
            return True
    return False


def is_addressed(message: Message, me: User) -> bool:
    """Whether the bot is expected to answer: a private chat, a mention, or a reply to the bot."""
    if message.chat.type == ChatType.PRIVATE:
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True
    return _mentions(message, me)


def _user_turn(message: Message, me: User) -> StoredMessage:
    """The message as history: the bot's @username is cut out (the model never saw it in training)."""
    text = message.text or ""
    stripped = " ".join(text.replace(f"@{me.username}", " ").split())
    replied = message.reply_to_message
    return StoredMessage(
        message_id=message.message_id,
        role="user",
        text=stripped or text,
        reply_to=replied.message_id if replied is not None else None,
    )


def _surface(message: Message, bot: Bot, store: HistoryStore, settings: BotSettings, drafts: DraftGate) -> Surface:
    """Where this reply appears: streamed into drafts or edits, or (`live` False) sent once, complete."""
    if settings.stream == "off":
        return PlainSurface(message, store)
    if message.chat.type == ChatType.PRIVATE:
        drafted = DraftSurface(bot, message, store, drafts, interval=settings.stream_interval)
        return drafted if drafted.live else PlainSurface(message, store)
    if settings.stream_group_interval == 0:
        return PlainSurface(message, store)
    return EditSurface(bot, message, store, interval=settings.stream_group_interval)


async def message_handler(
    message: Message,
    bot: Bot,
    store: HistoryStore,
    client: ServiceClient,
    settings: BotSettings,
    throttle: Throttle,
    drafts: DraftGate,
) -> None:
    me = await bot.me()
    chat_id = message.chat.id
    turn = _user_turn(message, me)
    await store.add(chat_id, turn)
    addressed = is_addressed(message, me)
    if not addressed and random.random() >= settings.group_reply_probability:
        return
    user_id = message.from_user.id if message.from_user is not None else chat_id
    try:
        async with throttle.slot(user_id, chat_id):
            messages = await build_context(
                store, chat_id, turn, max_turns=settings.context_turns, max_chars=settings.context_chars
            )
            surface = _surface(message, bot, store, settings, drafts)
            params = {"max_tokens": settings.max_tokens, "model": await persona_of(store, chat_id, settings)}
            async with ChatActionSender.typing(bot=bot, chat_id=chat_id):
                if surface.live:
                    parts = [await stream_reply(client.stream_chat(messages, **params), surface)]
                else:
                    parts = split_text((await client.chat(messages, **params)).strip())
    except ThrottledError as error:
        logger.info("chat %d, user %d: throttled (%s)", chat_id, user_id, error)
        if addressed:
            note = texts.RATE_LIMITED.format(seconds=round(error.seconds)) if error.seconds else texts.BUSY
            await message.reply(note)
        return
    # Sent after the slot is free: the chat may take its next message the moment this reply shows up.
    for part in parts:
        await surface.finish(part)


async def edited_message_handler(message: Message, bot: Bot, store: HistoryStore) -> None:
    await store.add(message.chat.id, _user_turn(message, await bot.me()))


async def non_text_handler(message: Message) -> None:
    await message.answer(texts.NON_TEXT)


def create_router() -> Router:
    """A fresh router: text → reply, edits → history, other private messages → a note (in this order)."""
    router = Router(name=__name__)
    router.message.register(message_handler, F.text)
    router.edited_message.register(edited_message_handler, F.text)
    router.message.register(non_text_handler, F.chat.type == ChatType.PRIVATE)
    return router
