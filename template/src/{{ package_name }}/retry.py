"""Exponential back-off with jitter for calls to platform services.

Delays double from ``initial`` up to ``maximum``; each is drawn between half
and all of its nominal value ("equal jitter") so many modules restarted at
once do not retry in lock-step against a recovering service.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """Endless delays: ~initial, ~2*initial, ... capped at ``maximum``."""
    nominal = min(initial, maximum)
    while True:
        yield random.uniform(nominal / 2, nominal)  # noqa: S311 - jitter, not cryptography
        nominal = min(nominal * 2, maximum)
