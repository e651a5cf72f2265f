"""Prometheus metrics of one app: requests by route and status, latency, tokens, queue depth, batch sizes.

Each app gets its own `CollectorRegistry`, so tests can build many apps in one process; `MetricsMiddleware`
is a plain ASGI middleware (it sees the status of streamed responses too and times them to their last byte).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sobesednik_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("sobesednik_request_seconds", "Time to the last byte of the response",
                                 ["route"], registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))
        self.tokens = Counter("sobesednik_generated_tokens", "Tokens generated", registry=self.registry)
        self.queue_depth = Gauge("sobesednik_queue_depth", "Rows waiting to start decoding", registry=self.registry)
        self.batch_size = Histogram("sobesednik_batch_size", "Rows that start decoding together (a batch, or a join)",
                                    registry=self.registry, buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256))

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)


class MetricsMiddleware:
    """Count and time every HTTP request by its route template (not the raw path: bounded label values)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
