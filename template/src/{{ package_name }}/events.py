"""Publishing platform events under the doctrine policy.

There is no remote event bus yet: an allowed event is written as one structured
JSON log line on the ``<package>.events`` logger, which a log shipper can
forward. Swap ``_emit`` for a real transport when blux-lite offers one.
Payloads carry ids and statuses only, never task data, so logging them is safe
even when data handling is encrypted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .audit import AuditLog
from .errors import PolicyViolation
from .policy import PolicyEnforcer

logger = logging.getLogger(__name__)


class EventPublisher:
    def __init__(self, enforcer: PolicyEnforcer, audit: AuditLog) -> None:
        self._enforcer = enforcer
        self._audit = audit
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
        self._emit(event_type, payload)

    async def publish_if_allowed(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        """For events the module emits on its own: skipped quietly when not declared/allowed.

        Not declaring ``analysis.ready``, say, is a choice, not a violation.
        """
        if not self._enforcer.may_produce(event_type):
            logger.debug("event %s not published: not declared or not allowed", event_type)
            return False
        self._emit(event_type, payload)
        return True

    def _emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        message = {
            "event": event_type,
            "source": self._enforcer.manifest.name,
            "time": datetime.now(UTC).isoformat(),
            "payload": dict(payload),
        }
        logger.info(json.dumps(message, sort_keys=True, default=str))
        self.published += 1
