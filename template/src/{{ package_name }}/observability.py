"""The request pipeline around the routes: pure ASGI middleware only.

Outermost first: RequestObserver (request id, metrics), CORS (when origins are
configured), RateLimit (per client, probes exempt), BodyDeadline (408),
BodySizeLimit (413), then the app. Pure ASGI classes instead of
``@app.middleware("http")`` keep the per-request cost to a few function calls:
no extra task, no body streaming through an anyio memory channel.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import accept_or_new, request_id
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .middleware import BodyDeadline, BodySizeLimit, reply
from .settings import Settings

if TYPE_CHECKING:
    from .core import ModuleCore

PROBES = frozenset({"/health", "/ready", "/metrics"})
REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "<unmatched>"  # one label for every unknown path: no cardinality blow-up


class RequestObserver:
    """Request id in (X-Request-ID) and out, in-flight count, request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                incoming = value
                break
        rid = accept_or_new(incoming)
        rid_header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        token = request_id.set(rid)
        metrics = self.metrics
        status = 500  # what the client gets if the app raises before answering
        metrics.in_flight += 1
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.in_flight -= 1
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            metrics.observe(scope["method"], template, status, time.perf_counter() - started)
            request_id.reset(token)


class LoopSweptStorage(MemoryStorage):
    """limits' in-memory storage, its expired counters dropped from the event loop.

    MemoryStorage expires counters from a timer thread it starts 10 ms after a hit
    whenever none is running: under steady load, a new thread every 10 ms, about
    15 us per request. Here a counter still expires when it is next read
    (MemoryStorage.get does that), and a sweep on the event loop, scheduled only
    while counters exist, drops those of clients that did not come back. An idle
    module runs nothing. All calls come from the event loop (the middleware).
    Counters only: the fixed window RateLimit uses; moving-window entries, which
    MemoryStorage's thread also trims, are not used here.
    """

    def __init__(self, sweep_every_seconds: float) -> None:
        super().__init__()
        self.sweep_every_seconds = sweep_every_seconds
        self._sweep: asyncio.TimerHandle | None = None

    # Replaces MemoryStorage's private timer-thread scheduling, called on every hit.
    # Should limits rename it, its own timer thread takes over again: slower, still right.
    def _MemoryStorage__schedule_expiry(self) -> None:
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self.sweep_every_seconds, self.sweep)

    def sweep(self) -> None:
        self._sweep = None
        now = time.time()  # limits keeps expiries in wall-clock time
        for key, expiry in list(self.expirations.items()):
            if expiry <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)
        if self.expirations:
            self._MemoryStorage__schedule_expiry()


class RateLimit:
    """Fixed-window request limit per client address (the ``limits`` library, in memory).

    Keyed by the peer address uvicorn reports (behind a proxy, set uvicorn's
    FORWARDED_ALLOW_IPS to the proxy's addresses so that is the real client).
    Probes are exempt so an orchestrator never sees a 429.
    """

    def __init__(self, app: ASGIApp, *, requests: int, window_seconds: int) -> None:
        self.app = app
        self.item = RateLimitItemPerSecond(requests, window_seconds)
        self.storage = LoopSweptStorage(sweep_every_seconds=window_seconds)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.reason = f"rate limit exceeded: {requests} requests per {window_seconds} s per client"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client[0] if client else "unknown"
        if self.limiter.hit(self.item, key):
            await self.app(scope, receive, send)
            return
        reset_at = self.limiter.get_window_stats(self.item, key).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        await reply(
            send,
            429,
            f"{self.reason}; retry in {retry_after} s",
            headers=[(b"retry-after", str(retry_after).encode("ascii"))],
            close=False,
        )


def install(app: FastAPI, settings: Settings, core: Callable[[], ModuleCore | None]) -> Metrics:
    """Add the middleware stack and GET /metrics to the app."""
    metrics = Metrics(core)

    def body_limit() -> int | None:
        current = core()
        return current.policy.max_request_bytes if current is not None else None

    # add_middleware wraps: the last added runs first. The deadline sits outside the
    # size cap, which reads a body without Content-Length itself: its reads are timed too.
    app.add_middleware(BodySizeLimit, limit=body_limit)
    app.add_middleware(BodyDeadline, seconds=settings.request_body_timeout_seconds)
    if settings.rate_limit_requests > 0:
        app.add_middleware(
            RateLimit,
            requests=settings.rate_limit_requests,
            window_seconds=settings.rate_limit_window_seconds,
        )
    if settings.cors_origins:
        # Bearer tokens travel in a header, not cookies: no credentials needed,
        # and '*' is refused by Settings anyway.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
        )
    app.add_middleware(RequestObserver, metrics=metrics)

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition: HTTP requests, latency, tasks by state, in-flight."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return metrics
