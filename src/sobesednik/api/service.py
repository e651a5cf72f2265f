"""The model's lifecycle, which the app's lifespan owns: loading, warm-up, the Batcher, and the failure story.

Loading happens in the background so that `/healthz` answers at once and `/readyz` turns ready only after the
model produced its first token; then `serving` (`serving.Serving`, which owns every request) exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from sobesednik.api.metrics import Metrics
from sobesednik.api.serving import Serving
from sobesednik.api.settings import ApiSettings
from sobesednik.errors import SobesednikError
from sobesednik.inference.batcher import Batcher
from sobesednik.inference.generator import Generator

logger = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: ApiSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.serving: Serving | None = None
        self.load_error: str | None = None
        self.created = int(time.time())

    @property
    def ready(self) -> bool:
        return self.serving is not None

    async def start(self, stack: contextlib.AsyncExitStack, generator: Generator | None) -> None:
        """Load the model (which warms it up: `Generator.warm_up`) or warm up the one given, then start batching."""
        # Loading, warm-up and every batch run on this one thread (see Batcher).
        executor = ThreadPoolExecutor(1, thread_name_prefix="sobesednik-generate")
        stack.callback(executor.shutdown, wait=False)
        loop = asyncio.get_running_loop()
        try:
            if generator is None:
                generator = await loop.run_in_executor(executor, self._load)
            else:
                await loop.run_in_executor(executor, generator.warm_up)
        except Exception as error:  # any failure must show in /readyz, not leave it "loading" forever
            self.load_error = str(error) if isinstance(error, SobesednikError) else f"{type(error).__name__}: {error}"
            logger.error("cannot load the model: %s", self.load_error, exc_info=not isinstance(error, SobesednikError))
            return
        batcher = await stack.enter_async_context(Batcher(
            generator, max_batch_size=self.settings.max_batch_size, max_wait_ms=self.settings.max_wait_ms,
            join_fraction=self.settings.join_fraction, max_queue=self.settings.max_queue,
            on_batch=self.metrics.batch_size.observe, executor=executor))
        self.metrics.watch_queue(lambda: batcher.queued)
        self.serving = Serving(self.settings, self.metrics, generator, batcher, self.created)
        logger.info("model %s ready", ", ".join(self.model_names))

    def _load(self) -> Generator:
        settings = self.settings
        if settings.adapter:
            return Generator.load_personas(settings.model, settings.personas, dtype=settings.dtype,
                                           quantize=settings.quantize)
        return Generator.load(settings.model, dtype=settings.dtype, quantize=settings.quantize)

    @property
    def model_names(self) -> list[str]:
        """What /v1/models lists: the base (or the one model), then every persona."""
        return [self.settings.served_name, *self.settings.personas]
