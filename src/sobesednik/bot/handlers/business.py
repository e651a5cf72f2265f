"""Answering as the owner (Telegram Business): the bot replies to the owner's contacts in the owner's persona.

    SOBESEDNIK_BOT_BUSINESS=suggest sobesednik bot   # or auto; the owner connects the bot in Telegram Business

Telegram sends `business_connection` when the owner connects the bot, and `business_message` for every message
in the owner's private chats, both sides. The owner's own messages are the persona's turns (`assistant`), the
contact's are `user`, so the context is built as in training. History is kept per connection and contact, apart
from the bot's own chats. A contact on `business_opt_out` is neither answered nor remembered, and the bot stays
silent in a chat for `business_quiet_minutes` after the owner wrote there. `suggest` sends the owner, in the
bot's chat with them, the proposed reply with "send"/"skip" buttons; `auto` shows "typing…" for a human-like
while and sends it with `business_connection_id`. What the owner did last and the pending suggestions live in
this process (a restart forgets them: the owner's next message, or the next contact message, starts afresh).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BusinessConnection, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from sobesednik.bot import texts
from sobesednik.bot.client import ServiceClient
from sobesednik.bot.context import build_context
from sobesednik.bot.handlers.persona import persona_of
from sobesednik.bot.history import HistoryStore, StoredMessage
from sobesednik.bot.settings import BotSettings
from sobesednik.bot.streaming import split_text
from sobesednik.bot.throttle import Throttle, ThrottledError

logger = logging.getLogger(__name__)
TYPING_SECONDS_PER_CHAR = 0.05  # ~ 20 characters a second, a quick typist on a phone
TYPING_ACTION_EVERY = 4.0  # seconds; Telegram shows a chat action for about 5 s
MAX_PENDING = 200  # suggestions kept for the owner to decide on; the oldest are dropped first


def business_key(connection_id: str, chat_id: int) -> str:
    """The history key of the owner's chat with a contact: apart from the bot's own chat with that contact."""
    return f"business:{connection_id}:{chat_id}"


@dataclass(frozen=True)
class Suggestion:
    connection_id: str
    owner_id: int
    chat_id: int
    reply_to: int  # the contact's message being answered
    text: str


class BusinessState:
    """Connections seen, when the owner last wrote in each chat, and suggestions waiting for the owner."""

    def __init__(self) -> None:
        self.connections: dict[str, BusinessConnection] = {}
        self._owner_wrote: dict[str, float] = {}  # history key → time.monotonic()
        self._pending: OrderedDict[int, Suggestion] = OrderedDict()
        self._ids = itertools.count(1)

    async def connection(self, bot: Bot, connection_id: str) -> BusinessConnection:
        if connection_id not in self.connections:  # connected before this process started
            self.connections[connection_id] = await bot.get_business_connection(connection_id)
        return self.connections[connection_id]

    def owner_wrote(self, key: str) -> None:
        self._owner_wrote[key] = time.monotonic()

    def owner_active(self, key: str, minutes: float) -> bool:
        wrote = self._owner_wrote.get(key)
        return wrote is not None and time.monotonic() - wrote < minutes * 60

    def propose(self, suggestion: Suggestion) -> int:
        number = next(self._ids)
        self._pending[number] = suggestion
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return number

    def take(self, number: int) -> Suggestion | None:
        return self._pending.pop(number, None)


def _author_role(message: Message, connection: BusinessConnection) -> str:
    author = message.from_user
    return "assistant" if author is not None and author.id == connection.user.id else "user"


async def business_connection_handler(connection: BusinessConnection, business: BusinessState) -> None:
    business.connections[connection.id] = connection
    logger.info("business connection %s of user %d: %s", connection.id, connection.user.id,
                "enabled" if connection.is_enabled else "disabled")


async def _may_answer(connection: BusinessConnection, settings: BotSettings) -> bool:
    if not connection.is_enabled or connection.rights is None or not connection.rights.can_reply:
        logger.info("business connection %s: not allowed to reply; staying silent", connection.id)
        return False
    if settings.allowed_ids and connection.user.id not in settings.allowed_ids:
        logger.info("business connection %s: owner %d not in the allowlist", connection.id, connection.user.id)
        return False
    return True


async def business_message_handler(
    message: Message,
    bot: Bot,
    store: HistoryStore,
    client: ServiceClient,
    settings: BotSettings,
    throttle: Throttle,
    business: BusinessState,
) -> None:
    assert message.business_connection_id is not None  # a business_message always has it
    connection = await business.connection(bot, message.business_connection_id)
    chat_id = message.chat.id
    if chat_id in settings.business_opt_out:
        return
    key = business_key(connection.id, chat_id)
    role = _author_role(message, connection)
    replied = message.reply_to_message
    turn = StoredMessage(message.message_id, role, message.text or "", replied.message_id if replied else None)
    await store.add(key, turn)
    if role == "assistant":
        if message.sender_business_bot is None:  # the owner typed it, not this bot on the owner's behalf
            business.owner_wrote(key)
        return
    if business.owner_active(key, settings.business_quiet_minutes):
        logger.info("business chat %s: the owner wrote recently; staying silent", key)
        return
    if not await _may_answer(connection, settings):
        return
    try:
        async with throttle.slot(chat_id, key):
            messages = await build_context(
                store, key, turn, max_turns=settings.context_turns, max_chars=settings.context_chars
            )
            persona = await persona_of(store, key, settings)
            reply = split_text((await client.chat(messages, max_tokens=settings.max_tokens, model=persona)).strip())[0]
    except ThrottledError as error:
        logger.info("business chat %s: throttled (%s); no answer", key, error)
        return
    suggestion = Suggestion(connection.id, connection.user.id, chat_id, message.message_id, reply)
    if settings.business == "suggest":
        await _suggest(bot, business, connection, message, suggestion)
        return
    await _type_for_a_while(bot, suggestion, settings.business_delay)
    if business.owner_active(key, settings.business_quiet_minutes):  # the owner took over while "typing"
        logger.info("business chat %s: the owner wrote meanwhile; the reply is dropped", key)
        return
    await _send(bot, store, suggestion)


async def _suggest(bot: Bot, business: BusinessState, connection: BusinessConnection, message: Message,
                   suggestion: Suggestion) -> None:
    number = business.propose(suggestion)
    name = message.from_user.full_name if message.from_user is not None else str(message.chat.id)
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=texts.BUSINESS_SEND_BUTTON, callback_data=f"business:send:{number}"),
        InlineKeyboardButton(text=texts.BUSINESS_SKIP_BUTTON, callback_data=f"business:skip:{number}"),
    ]])
    text = texts.BUSINESS_SUGGESTION.format(name=name, incoming=message.text, reply=suggestion.text)
    await bot.send_message(connection.user_chat_id, split_text(text)[0], reply_markup=keyboard)


async def _type_for_a_while(bot: Bot, suggestion: Suggestion, delay: float) -> None:
    """Show "typing…" in the contact's chat for a time that grows with the reply, as a person would."""
    seconds = min(3 * delay, delay + TYPING_SECONDS_PER_CHAR * len(suggestion.text))
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await bot.send_chat_action(suggestion.chat_id, "typing", business_connection_id=suggestion.connection_id)
        await asyncio.sleep(min(left, TYPING_ACTION_EVERY))


async def _send(bot: Bot, store: HistoryStore, suggestion: Suggestion) -> None:
    sent = await bot.send_message(suggestion.chat_id, suggestion.text,
                                  business_connection_id=suggestion.connection_id)
    # Telegram echoes it as a business_message too; the same message id makes that store a no-op.
    await store.add(business_key(suggestion.connection_id, suggestion.chat_id),
                    StoredMessage(sent.message_id, "assistant", suggestion.text, reply_to=suggestion.reply_to))


async def edited_business_message_handler(message: Message, bot: Bot, store: HistoryStore, settings: BotSettings,
                                          business: BusinessState) -> None:
    assert message.business_connection_id is not None
    connection = await business.connection(bot, message.business_connection_id)
    if message.chat.id in settings.business_opt_out:
        return
    replied = message.reply_to_message
    await store.add(
        business_key(connection.id, message.chat.id),
        StoredMessage(message.message_id, _author_role(message, connection), message.text or "",
                      replied.message_id if replied else None),
    )


async def suggestion_callback_handler(callback: CallbackQuery, bot: Bot, store: HistoryStore,
                                      business: BusinessState) -> None:
    assert callback.data is not None  # the filter matched it
    _, action, number = callback.data.split(":")
    suggestion = business.take(int(number))
    if suggestion is None or suggestion.owner_id != callback.from_user.id:
        await callback.answer(texts.BUSINESS_EXPIRED)
        return
    status = texts.BUSINESS_SKIPPED
    if action == "send":
        try:
            await _send(bot, store, suggestion)
            status = texts.BUSINESS_SENT
        except TelegramAPIError:  # e.g. the chat is older than 24 h or the rights were taken back
            logger.exception("business chat %d: sending the suggested reply failed", suggestion.chat_id)
            status = texts.BUSINESS_SEND_FAILED
    await callback.answer(status)
    shown = callback.message
    if isinstance(shown, Message) and shown.text is not None:
        await shown.edit_text(split_text(f"{shown.text}\n\n{status}")[0], reply_markup=None)


def create_router() -> Router:
    """A fresh router; included only when `business` is not off, so Telegram sends business updates only then."""
    router = Router(name=__name__)
    router.business_connection.register(business_connection_handler)
    router.business_message.register(business_message_handler, F.text)
    router.edited_business_message.register(edited_business_message_handler, F.text)
    router.callback_query.register(suggestion_callback_handler, F.data.startswith("business:"))
    return router
