"""uvicorn's HTTP protocol (httptools) with deadlines for request heads and stalled responses.

uvicorn sets none: a client that opened a connection and sent nothing, or sent
part of a request line and headers and then stalled, held the connection (a file
descriptor and its buffers) until the server stopped; enough of them starve the
process of descriptors. Its keep-alive timeout only covers a connection that sits
silent after a response: the first byte of a next request disarms it.

Here the head (request line and headers) must arrive within ``head_timeout``
seconds of the moment the connection can take it: from the connection's opening
for its first request, from the first byte of each later one (blank lines and
the rest of a body the app did not read count as such bytes). One timer per
connection, armed only while a head is outstanding, so a request whose head comes
in one packet (the usual case) costs a few attribute checks. When the deadline
passes: a partial head gets 408 and the connection is closed; a connection that
sent no head is closed silently, as uvicorn closes an idle keep-alive one. The
body has its own deadline in the app (middleware.BodyDeadline).

Responses have one too: a client that reads nothing while the module has more to
send (the transport paused writing: the kernel's buffers and uvicorn's are full)
holds the request's task and the unsent response in memory, and uvicorn waits
for it without end. If writing stays paused for ``write_timeout`` seconds, the
connection is aborted; the request's task then ends, as for any client that went
away. A slow reader that keeps reading resumes writing and restarts the clock.
No cost per request: the timer exists only while writing is paused.
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import env_name

logger = logging.getLogger(__name__)


class DeadlineProtocol(HttpToolsProtocol):
    # Set per server by with_deadlines().
    head_timeout: float = 10.0
    write_timeout: float = 60.0

    _head_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _in_head = False  # the parser is inside a request's line and headers: some has arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Most heads arrive whole, and the parser completed them just now. Bytes that
        # begin no request (the blank lines the parser skips) still disarmed uvicorn's
        # keep-alive timer: the connection would be held if nothing were armed.
        if self._head_timer is None and (self._in_head or self._between_requests()):
            self._arm()

    def _between_requests(self) -> bool:
        cycle = self.cycle
        return (
            (cycle is None or cycle.response_complete)
            and self.timeout_keep_alive_task is None
            and not self.transport.is_closing()
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    def _write_stalled(self) -> None:
        self._write_timer = None
        if self.transport.is_closing():
            return
        logger.info(
            "client %s read nothing of a response for %s s: connection aborted",
            self._peer(),
            f"{self.write_timeout:g}",
        )
        # abort, not close: close() would wait to flush what cannot drain.
        self.transport.abort()

    def _peer(self) -> str:
        return self.client[0] if self.client else "(unknown)"

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A pipelined head stalled behind a response still being written: close
            # once that response is complete, as uvicorn's own shutdown does.
            cycle.keep_alive = False
            return
        if not self._in_head:
            self.transport.close()  # no head begun: nobody to answer
            return
        seconds = f"{self.head_timeout:g}"
        logger.info(
            "request head from %s not complete within %s s: 408, connection closed",
            self._peer(),
            seconds,
        )
        detail = (
            f"the request line and headers did not arrive within {seconds} s "
            f"({env_name('request_header_timeout_seconds')})"
        )
        body = json.dumps({"detail": detail}).encode("utf-8")
        head = [b"HTTP/1.1 408 Request Timeout\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def with_deadlines(head_seconds: float, write_seconds: float) -> type[DeadlineProtocol]:
    """The protocol class for one server (uvicorn builds one instance per connection)."""

    class Protocol(DeadlineProtocol):
        head_timeout = head_seconds
        write_timeout = write_seconds

    return Protocol
