"""The FastAPI app factory: `create_app(settings)` wires routes, error handlers, metrics and the lifespan.

The lifespan owns the model: it starts loading it in the background (so `/healthz` answers at once), warms it
up, runs the batcher, and stops it on shutdown. Tests can hand in a loaded `Generator` to skip loading.

    sobesednik serve --model MODEL_DIR      # or: uvicorn --factory sobesednik.api.app:app_from_env
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from sobesednik import __version__
from sobesednik.api.errors import install_error_handlers
from sobesednik.api.guard import RequestGuard
from sobesednik.api.metrics import Metrics, MetricsMiddleware
from sobesednik.api.routes import chat, completions, health, models
from sobesednik.api.service import Service
from sobesednik.api.settings import ApiSettings
from sobesednik.inference.generator import Generator


def create_app(settings: ApiSettings, *, generator: Generator | None = None) -> FastAPI:
    """The service for `settings.model` (or for `generator`, already loaded)."""
    metrics = Metrics()
    service = Service(settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            loading = asyncio.create_task(service.start(stack, generator), name="sobesednik-load")
            try:
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading

    app = FastAPI(title="sobesednik", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible replies from a dialogue model trained on a Telegram chat. "
                              "See docs/api.md.")
    app.state.service = service
    install_error_handlers(app)
    for module in (chat, completions, models, health):
        app.include_router(module.router)
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts the guard's 401 and 413 too
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory`: settings from the environment."""
    return create_app(ApiSettings())


def check_personas(settings: ApiSettings) -> None:
    """Refuse, before loading any weights: a RUN_DIR as the base of personas, a path without an adapter, an
    adapter trained on a base of another shape (configs compared, not names)."""
    from pathlib import Path

    from sobesednik.errors import ConfigError
    from sobesednik.inference.adapters import adapter_dir, check_base
    from sobesednik.modeling.load import is_run_dir, load_config

    if is_run_dir(Path(settings.model)):
        raise ConfigError(f"--model {settings.model} is a RUN_DIR, and with --adapter it must be their base: pass "
                          "the base model the runs were trained on (`base` in their config.yaml) as --model and "
                          f"this run as --adapter NAME={settings.model}")
    base_config = load_config(settings.model)
    for name, path in settings.personas.items():
        check_base(name, adapter_dir(path), settings.model, base_config)


def serve(settings: ApiSettings) -> None:
    """The `serve` stage: check the model path, set torch threads, run uvicorn until interrupted."""
    import logging
    from pathlib import Path

    import torch
    import uvicorn

    from sobesednik.modeling.load import check_model_source, is_run_dir, run_base

    if settings.adapter:
        check_personas(settings)
    # A wrong path fails here, in one line, not in the background; a RUN_DIR's weights are its base's.
    model = Path(settings.model)
    check_model_source(run_base(model) if is_run_dir(model) else settings.model)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shown = settings.model_dump(exclude={"key"}) | {"key": "set" if settings.key else "not set"}
    logging.getLogger(__name__).info("serving with %s", shown)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
