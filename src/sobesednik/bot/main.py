"""The bot stage: build Bot + Dispatcher with their dependencies, then run long polling or a webhook listener.

    sobesednik bot                     # long polling; settings from SOBESEDNIK_BOT_* and .env
    SOBESEDNIK_BOT_WEBHOOK_URL=https://bot.example.org/telegram SOBESEDNIK_BOT_WEBHOOK_SECRET=... sobesednik bot

`run_bot(settings)` owns every resource (Bot API session, history store, throttle, service client) and closes them when
`stop` is set: on SIGTERM or SIGINT under `bot(settings)`, or by a test. Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
from aiogram.types import BotCommand
from aiohttp import web

from sobesednik.bot import texts
from sobesednik.bot.client import ServiceClient
from sobesednik.bot.handlers import business, commands, errors, messages, persona
from sobesednik.bot.handlers.business import BusinessState
from sobesednik.bot.health import HEALTH_PATH
from sobesednik.bot.history import HistoryStore, open_store
from sobesednik.bot.middlewares import AccessMiddleware, HeartbeatMiddleware, RetryAfterMiddleware
from sobesednik.bot.settings import BotSettings
from sobesednik.bot.streaming import DraftGate
from sobesednik.bot.throttle import Throttle, open_throttle
from sobesednik.bot.updates import UpdateRunner, open_recent_updates, poll, webhook_handler
from sobesednik.errors import ConfigError, ServiceError

logger = logging.getLogger(__name__)


def build_bot(settings: BotSettings, store: HistoryStore) -> Bot:
    """aiogram's Bot on the configured Bot API server, with flood-control retries on every call."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api))
    session.middleware(RetryAfterMiddleware(settings.flood_retries))
    if settings.heartbeat_file is not None:
        session.middleware(HeartbeatMiddleware(settings.heartbeat_file, store))
    # A user may delete the message the bot is answering; the answer is still worth sending.
    return Bot(settings.token_value, session=session, default=DefaultBotProperties(allow_sending_without_reply=True))


def build_throttle(settings: BotSettings) -> Throttle:
    """The limits of generations, kept beside the history: in Redis when replicas share one."""
    return open_throttle(
        settings.storage,
        messages=settings.rate_limit_messages,
        seconds=settings.rate_limit_seconds,
        max_inflight=settings.max_inflight_per_chat,
        # A replica that died mid-reply frees its chat once every retry of that reply would have given up.
        inflight_ttl=settings.service_deadline + settings.service_timeout,
    )


def build_dispatcher(settings: BotSettings, store: HistoryStore, client: ServiceClient,
                     throttle: Throttle) -> Dispatcher:
    """The Dispatcher with routers joined and dependencies that handlers receive by name."""
    drafts = DraftGate(settings.stream_fallback_seconds)
    dispatcher = Dispatcher(settings=settings, store=store, client=client, throttle=throttle, drafts=drafts,
                            business=BusinessState())
    dispatcher.update.outer_middleware(AccessMiddleware(settings.allowed_ids))
    dispatcher.include_routers(commands.create_router(), persona.create_router(), messages.create_router())
    if settings.business != "off":  # only then does the bot ask Telegram for business updates
        dispatcher.include_router(business.create_router())
    dispatcher.include_router(errors.create_router())
    return dispatcher


async def _prepare(bot: Bot, dispatcher: Dispatcher, settings: BotSettings) -> None:
    """Check the token and set the command menu; in polling mode, drop a webhook left by a webhook deployment."""
    try:
        me = await bot.get_me()
    except TelegramUnauthorizedError:
        raise ConfigError(
            f"the Bot API server {settings.telegram_api} rejected SOBESEDNIK_BOT_TOKEN (401 Unauthorized): "
            "the token was revoked or mistyped; get the current one from @BotFather"
        ) from None
    except TelegramNetworkError as error:
        raise ServiceError(
            f"cannot reach the Bot API server {settings.telegram_api} ({type(error).__name__}); check the network "
            "or SOBESEDNIK_BOT_TELEGRAM_API"
        ) from None
    logger.info("bot @%s (id %d) starting", me.username, me.id)
    await bot.set_my_commands([BotCommand(command=name, description=text) for name, text in texts.COMMANDS.items()])
    if settings.webhook_url is None:
        await bot.delete_webhook(drop_pending_updates=False)


async def _serve_polling(bot: Bot, dispatcher: Dispatcher, runner: UpdateRunner, settings: BotSettings,
                         stop: asyncio.Event) -> None:
    await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data)
    logger.info("polling for updates")
    try:
        await poll(bot, runner, stop, allowed_updates=dispatcher.resolve_used_update_types(),
                   shutdown_timeout=settings.shutdown_timeout)
    finally:
        await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data)


def _healthz(store: HistoryStore) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /healthz: 200 while the bot can do its job, 503 with the reason when its history cannot be written."""

    async def healthz(request: web.Request) -> web.Response:
        if store.problem is not None:
            return web.Response(status=503, text=store.problem)
        return web.Response(text="ok")

    return healthz


async def _serve_webhook(bot: Bot, dispatcher: Dispatcher, runner: UpdateRunner, settings: BotSettings,
                         stop: asyncio.Event) -> None:
    assert settings.webhook_url is not None and settings.webhook_secret is not None  # checked by BotSettings
    app = web.Application()
    # Answers 401 to calls without the secret header; handles updates in the background after answering 200.
    app.router.add_post(settings.webhook_path, webhook_handler(runner, settings.webhook_secret.get_secret_value()))
    app.router.add_get(HEALTH_PATH, _healthz(dispatcher["store"]))  # the container's healthcheck (`bot/health.py`)
    web_runner = web.AppRunner(app)
    await web_runner.setup()
    try:
        await web.TCPSite(web_runner, settings.webhook_host, settings.webhook_port).start()
        logger.info("webhook listening on %s:%d%s", settings.webhook_host, settings.webhook_port, settings.webhook_path)
        # Only once we listen: Telegram starts calling right away. Replicas all set the same URL and secret.
        await bot.set_webhook(
            settings.webhook_url,
            secret_token=settings.webhook_secret.get_secret_value(),
            allowed_updates=dispatcher.resolve_used_update_types(),
        )
        await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data)
        await stop.wait()
    finally:
        # Stop taking calls first (Telegram retries them, on this replica's successor or another), then let the
        # running handlers finish before the session and the stores close under them.
        await web_runner.cleanup()
        await runner.drain(settings.shutdown_timeout)
        await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data)


async def run_bot(settings: BotSettings, stop: asyncio.Event) -> None:
    """Run until `stop` is set; every resource opened here is closed here."""
    store = open_store(settings.storage, max_messages=settings.history_max_messages)
    throttle = build_throttle(settings)
    api_key = settings.service_api_key.get_secret_value() if settings.service_api_key else None
    client = ServiceClient(
        settings.service_url, api_key=api_key, timeout=settings.service_timeout, deadline=settings.service_deadline
    )
    seen = open_recent_updates(settings.storage)
    bot = build_bot(settings, store)
    try:
        dispatcher = build_dispatcher(settings, store, client, throttle)
        runner = UpdateRunner(dispatcher, bot, seen)
        await _prepare(bot, dispatcher, settings)
        if settings.webhook_url is None:
            await _serve_polling(bot, dispatcher, runner, settings, stop)
        else:
            await _serve_webhook(bot, dispatcher, runner, settings, stop)
    finally:
        await bot.session.close()
        await seen.close()
        await client.aclose()
        await throttle.close()
        await store.close()
        logger.info("bot stopped")


def _settings_for_logs(settings: BotSettings) -> dict[str, object]:
    values = settings.model_dump(exclude={"token", "service_api_key", "webhook_secret"})
    values["storage"] = settings.storage_for_logs()
    return values


def bot(settings: BotSettings) -> None:
    """The `sobesednik bot` stage: run until SIGTERM or SIGINT, then stop cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.info("settings: %s", _settings_for_logs(settings))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_bot(settings, stop)

    asyncio.run(main())
