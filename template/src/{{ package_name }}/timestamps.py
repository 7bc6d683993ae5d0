"""ISO 8601 UTC timestamps for log lines, audit records and events, made cheaply.

``datetime.isoformat`` builds the whole text each time (2-3 us); the module writes
several timestamps per task, nearly all within one second of the previous one,
so the text up to the second is made once per second and the fraction appended.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

_second: tuple[int, str] = (-1, "")  # swapped whole: safe from any thread


def _to_second(seconds: int) -> str:
    global _second
    cached, text = _second
    if cached != seconds:
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (seconds, text)
    return text


def utc_now_iso() -> str:
    """Now, to the microsecond, as ``datetime.now(UTC).isoformat()`` writes it, except
    that the six fraction digits are always there (isoformat drops ``.000000``)."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return f"{_to_second(seconds)}.{nanos // 1000:06d}+00:00"


def utc_iso_millis(timestamp: float) -> str:
    """A ``time.time()`` value as ``datetime.fromtimestamp(timestamp, UTC)`` gives it
    (rounded to the microsecond, half to even) written with
    ``isoformat(timespec="milliseconds")`` (truncated to the millisecond)."""
    seconds = int(timestamp)
    micros = round((timestamp - seconds) * 1_000_000)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return f"{_to_second(seconds)}.{micros // 1000:03d}+00:00"
