"""Pure ASGI middleware that bounds request bodies: in size (the policy's
max_request_bytes) and in time (REQUEST_BODY_TIMEOUT_SECONDS).

FastAPI reads the whole body before any dependency runs, so the cap must sit
below it. Declared Content-Length is checked first; a body without one (chunked)
is read here up to the cap and replayed to the app, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .settings import env_name

_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limit: Callable[[], int | None]) -> None:
        self.app = app
        self._limit = limit  # read per request: the policy is loaded at start-up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No route reads a GET/HEAD/OPTIONS body: skip the check on the probe path.
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        limit = self._limit()
        if limit is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await reply(send, 400, "invalid Content-Length header")
                return
            if too_large:
                await reply(send, 413, f"request body exceeds {limit} bytes")
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length: buffer up to the cap, then replay.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await reply(send, 413, f"request body exceeds {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send)


class BodyDeadline:
    """A body must arrive whole within ``seconds`` of the app's first read of it: 408 if not.

    uvicorn sets no such limit: a client that sent its headers and then stalled held
    its request open until the server stopped, which then cut it off as a 500. The
    deadline is armed by the first read (a route that never reads the body is never
    timed) and disarmed once the body is complete; when it passes, the read still
    waiting is cancelled and the client gets 408 on a closed connection. One timer
    per request, on the loop kept from the lifespan (see sqlite.SqliteStore._loop).
    Every route reads its body before it answers, so nothing was sent yet by then.
    A request still waiting for its body when the server's shutdown cancels it
    gets 503 instead.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            if scope["type"] == "lifespan":
                self._loop = asyncio.get_running_loop()
            await self.app(scope, receive, send)
            return
        loop = self._loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:  # not run by a task (never so under uvicorn): nothing to cancel
            await self.app(scope, receive, send)
            return
        timer: asyncio.TimerHandle | None = None
        expired = False
        reading = False  # inside a read of the body: a cancel then found nothing sent

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        async def receive_in_time() -> Message:
            nonlocal timer, reading
            if timer is None:  # the first read arms it, once
                timer = loop.call_later(self.seconds, expire)
            reading = True
            message = await receive()
            reading = False
            if message["type"] != "http.request" or not message.get("more_body", False):
                timer.cancel()
            return message

        cancelling = task.cancelling()
        try:
            await self.app(scope, receive_in_time, send)
        except asyncio.CancelledError:
            # Answered only when one cancel cut a read short: our deadline's (408), or
            # the server's at the end of its shutdown drain (503, where uvicorn would
            # answer 500 and log a traceback). A cancel on top of it goes on as it came.
            if not (expired or reading) or task.uncancel() > cancelling:
                raise
            if expired:
                seconds = f"{self.seconds:g}"
                await reply(
                    send,
                    408,
                    f"the request body did not arrive within {seconds} s "
                    f"({env_name('request_body_timeout_seconds')})",
                )
            else:
                await reply(
                    send,
                    503,
                    "the module is shutting down; retry the request",
                    headers=[(b"retry-after", b"1")],
                )
        finally:
            if timer is not None:
                timer.cancel()


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def reply(
    send: Send,
    status: int,
    detail: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = True,
) -> None:
    """Answer with ``{"detail": ...}`` without reaching the app.

    ``close`` (the default for refused bodies) drops the connection, so an
    unread request body cannot be mistaken for the next request.
    """
    body = json.dumps({"detail": detail}).encode("utf-8")
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *(headers or ()),
    ]
    if close:
        response_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
