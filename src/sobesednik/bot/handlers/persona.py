"""/persona: list the personas the service offers (its /v1/models) and set this chat's; kept in the history store.

    /persona          → the current persona and the ones on offer
    /persona anna     → this chat talks to `anna` from now on (every request sends `model: anna`)

A chat that never chose one gets `BotSettings.persona`, or none at all (the service's default model). The list
comes from the service each time, so a persona added there (a restart of `serve --adapter`, or vLLM's
`--lora-modules`) is on offer at once.
"""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from sobesednik.bot import texts
from sobesednik.bot.client import ServiceClient
from sobesednik.bot.history import ChatKey, HistoryStore
from sobesednik.bot.settings import BotSettings

logger = logging.getLogger(__name__)


async def persona_of(store: HistoryStore, chat_id: ChatKey, settings: BotSettings) -> str | None:
    """The model id this chat's requests name: its own choice, the bot's default, or None (the service's)."""
    return await store.get_persona(chat_id) or settings.persona or None


async def command_persona_handler(message: Message, command: CommandObject, store: HistoryStore,
                                  client: ServiceClient, settings: BotSettings) -> None:
    offered = await client.models()
    names = ", ".join(offered)
    wanted = (command.args or "").strip()
    if not wanted:
        current = await persona_of(store, message.chat.id, settings) or texts.PERSONA_NONE
        example = offered[-1] if offered else "anna"
        await message.answer(texts.PERSONA_LIST.format(current=current, names=names, example=example))
        return
    if wanted not in offered:
        await message.answer(texts.PERSONA_UNKNOWN.format(persona=wanted, names=names))
        return
    await store.set_persona(message.chat.id, wanted)
    logger.info("chat %d: persona %s", message.chat.id, wanted)
    await message.answer(texts.PERSONA_SET.format(persona=wanted))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(command_persona_handler, Command("persona"))
    return router
