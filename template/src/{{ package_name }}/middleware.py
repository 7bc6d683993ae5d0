"""Pure ASGI middleware that caps request bodies (the policy's max_request_bytes).

FastAPI reads the whole body before any dependency runs, so the cap must sit
below it. Declared Content-Length is checked first; a body without one (chunked)
is read here up to the cap and replayed to the app, so memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
