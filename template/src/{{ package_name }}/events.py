"""Publishing platform events under the doctrine policy.

An allowed event is written as one structured JSON log line on the
``<package>.events`` logger and, with task_backend redis, also added to the
platform event stream in Redis (EVENTS_STREAM, see redis_tasks.py), where
other modules consume it through their consumer groups.
Payloads carry ids and statuses only, never task data, so logging them is safe
even when data handling is encrypted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .audit import AuditLog
from .errors import PolicyViolation
from .policy import PolicyEnforcer
from .timestamps import utc_now_iso

logger = logging.getLogger(__name__)

_encode = json.JSONEncoder(sort_keys=True, default=str).encode


Sink = Callable[[Mapping[str, Any]], Awaitable[None]]


class EventPublisher:
    def __init__(self, enforcer: PolicyEnforcer, audit: AuditLog, sink: Sink | None = None) -> None:
        self._enforcer = enforcer
        self._audit = audit
        self._sink = sink  # the Redis event stream, with task_backend redis
        self.published = 0

    async def publish(self, event_type: str, payload: Mapping[str, Any]) -> None:
        """Publish or raise PolicyViolation (which is audited) when not allowed."""
        try:
            self._enforcer.check_produce(event_type)
        except PolicyViolation as exc:
            await self._audit.record(
                "policy.violation",
                {"action": "produce", "event_type": event_type, "reason": exc.reason},
            )
            raise
        await self._emit(event_type, payload)

    async def publish_if_allowed(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        """For events the module emits on its own: skipped quietly when not declared/allowed.

        Not declaring ``analysis.ready``, say, is a choice, not a violation.
        """
        if not self._enforcer.may_produce(event_type):
            logger.debug("event %s not published: not declared or not allowed", event_type)
            return False
        await self._emit(event_type, payload)
        return True

    async def _emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        message = {
            "event": event_type,
            "source": self._enforcer.manifest.name,
            "time": utc_now_iso(),
            "payload": dict(payload),
        }
        logger.info(_encode(message))
        if self._sink is not None:
            try:
                await self._sink(message)
            except Exception:
                # An unreachable bus must not fail the task that produced the event.
                logger.exception("event %s not delivered to the event stream", event_type)
                return
        self.published += 1
