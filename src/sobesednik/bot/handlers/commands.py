"""Commands: /start (who the bot is), /help (how to talk to it), /reset (forget this chat's context).

In groups aiogram's `Command` filter also accepts `/reset@this_bot` and ignores commands meant for other bots.
"""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from sobesednik.bot import texts
from sobesednik.bot.history import HistoryStore

logger = logging.getLogger(__name__)
async def command_start_handler(message: Message, bot: Bot) -> None:
    me = await bot.me()
    await message.answer(texts.START.format(username=me.username))


async def command_help_handler(message: Message, bot: Bot) -> None:
    me = await bot.me()
    await message.answer(texts.HELP.format(username=me.username))


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
