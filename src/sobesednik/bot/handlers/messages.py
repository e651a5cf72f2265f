"""Text messages → the model's reply; the rest of the message types in one place.

Every text message is stored (so unaddressed group chatter is context). Private chats get a reply to each;
groups only when the bot is mentioned by @username, replied to, or by chance (`group_reply_probability`).
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
from sobesednik.bot.history import HistoryStore, StoredMessage
from sobesednik.bot.settings import BotSettings
from sobesednik.bot.throttle import Throttle, ThrottledError

logger = logging.getLogger(__name__)
TELEGRAM_MESSAGE_LIMIT = 4096  # characters per message, Bot API sendMessage


def split_text(text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at the last newline or space before the limit when there is one."""
    pieces = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit + 1), text.rfind(" ", 0, limit + 1))
        cut = cut if cut > limit // 2 else limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    pieces.append(text)
    return [piece for piece in pieces if piece] or [texts.EMPTY_REPLY]


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


async def message_handler(
    message: Message,
    bot: Bot,
    store: HistoryStore,
    client: ServiceClient,
    settings: BotSettings,
    throttle: Throttle,
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
            async with ChatActionSender.typing(bot=bot, chat_id=chat_id):
                reply = await client.chat(messages, max_tokens=settings.max_tokens)
    except ThrottledError as error:
        logger.info("chat %d, user %d: throttled (%s)", chat_id, user_id, error)
        if addressed:
            note = texts.RATE_LIMITED.format(seconds=round(error.seconds)) if error.seconds else texts.BUSY
            await message.reply(note)
        return
    reply_to = message.message_id
    for piece in split_text(reply.strip()):
        # In groups a Telegram reply shows whom the bot answers; in private chats it would be noise.
        sent = await (message.answer(piece) if message.chat.type == ChatType.PRIVATE else message.reply(piece))
        await store.add(chat_id, StoredMessage(sent.message_id, "assistant", piece, reply_to=reply_to))
        reply_to = sent.message_id


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
