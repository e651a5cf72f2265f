"""The errors router: an exception raised by a handler becomes a friendly Russian reply, keyed by its type.

The service being down or slow (`ServiceUnavailableError`) is expected in production and logged as a warning;
anything unexpected is logged with its traceback. The user's message is already in the history by then, so
the next message carries it to the model once the service is back.
"""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from sobesednik.bot import texts
from sobesednik.bot.client import ServiceRejectedError, ServiceUnavailableError

logger = logging.getLogger(__name__)
async def _apologise(event: ErrorEvent, text: str) -> None:
    message = event.update.message
    if message is not None:
        await message.reply(text)


async def service_unavailable_handler(event: ErrorEvent) -> None:
    logger.warning("update %d: %s", event.update.update_id, event.exception)
    await _apologise(event, texts.SERVICE_DOWN)


async def service_rejected_handler(event: ErrorEvent) -> None:
    logger.error("update %d: %s", event.update.update_id, event.exception)
    await _apologise(event, texts.SERVICE_REJECTED)


async def unexpected_error_handler(event: ErrorEvent) -> None:
    logger.exception("update %d failed", event.update.update_id, exc_info=event.exception)
    await _apologise(event, texts.UNEXPECTED_ERROR)


def create_router() -> Router:
    """A fresh errors router; the catch-all handler is registered last so the typed ones match first."""
    router = Router(name=__name__)
    router.error.register(service_unavailable_handler, ExceptionTypeFilter(ServiceUnavailableError))
    router.error.register(service_rejected_handler, ExceptionTypeFilter(ServiceRejectedError))
    router.error.register(unexpected_error_handler)
    return router
