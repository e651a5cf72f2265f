"""Commands: /start (who the bot is, as whom it talks), /help (how to talk to it), /reset (forget the context).

/start and /help mention streaming and business mode only when they are on.

In groups aiogram's `Command` filter also accepts `/reset@this_bot` and ignores commands meant for other bots.
"""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from sobesednik.bot import texts
from sobesednik.bot.handlers.persona import persona_of
from sobesednik.bot.history import HistoryStore
from sobesednik.bot.settings import BotSettings

logger = logging.getLogger(__name__)


def _features(settings: BotSettings) -> str:
    """The paragraphs about streaming and business mode, each only when it is on."""
    notes = []
    if settings.stream != "off":
        notes.append(texts.STREAMING_NOTE)
    if settings.business != "off":
        mode = texts.BUSINESS_MODE_SUGGEST if settings.business == "suggest" else texts.BUSINESS_MODE_AUTO
        notes.append(texts.BUSINESS_NOTE.format(mode=mode))
    return "".join(f"\n\n{note}" for note in notes)


async def command_start_handler(message: Message, bot: Bot, settings: BotSettings, store: HistoryStore) -> None:
    me = await bot.me()
    persona = await persona_of(store, message.chat.id, settings)
    named = f"\n\n{texts.START_PERSONA.format(persona=persona)}" if persona else ""
    await message.answer(texts.START.format(username=me.username) + named + _features(settings))


async def command_help_handler(message: Message, bot: Bot, settings: BotSettings) -> None:
    me = await bot.me()
    await message.answer(texts.HELP.format(username=me.username) + _features(settings))


async def command_reset_handler(message: Message, store: HistoryStore) -> None:
    await store.clear(message.chat.id)
    logger.info("chat %d: history cleared", message.chat.id)
    await message.answer(texts.RESET_DONE)


def create_router() -> Router:
    """A fresh router per Dispatcher (a router can be attached once; tests and restarts build several)."""
    router = Router(name=__name__)
    router.message.register(command_start_handler, CommandStart())
    router.message.register(command_help_handler, Command("help"))
    router.message.register(command_reset_handler, Command("reset"))
    return router
