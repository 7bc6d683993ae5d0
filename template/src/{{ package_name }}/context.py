"""The current request's id, carried to everything the request causes.

The request middleware sets it; asyncio tasks and ``asyncio.to_thread`` copy
the context they are created in, so a task submitted during a request keeps the
request's id in its logs and audit records without passing it around.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from .ids import new_uuid4_text

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Accept a caller's id only if it is short and harmless in logs and headers.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def current_request_id() -> str | None:
    return request_id.get()


def accept_or_new(incoming: bytes | None) -> str:
    """The caller's X-Request-ID if it is sane, else a fresh uuid4."""
    if incoming is not None:
        try:
            text = incoming.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _SANE_ID.match(text):
            return text
    return new_uuid4_text()
