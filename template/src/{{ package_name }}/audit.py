"""Append-only, hash-chained JSON-lines audit trail at ``DATA_DIR/audit.jsonl``.

Each record carries ``prev_hash`` (the previous record's ``hash``) and its own
``hash``: sha256 over the record's canonical JSON without ``hash``. Editing,
reordering or deleting a record breaks the chain from that record on, which
``verify`` reports. Truncating the tail cannot be detected from the file alone;
shipping records to blux-guard would cover that (not implemented yet).

What is written depends on the policy's audit level:
  none      nothing
  basic     lifecycle (module start/stop, task transitions, policy violations)
  detailed  + who asked (subject, client address, method, path)
  verbose   + payload summaries (value counts); raw values only when the policy
            sets record_payloads and data handling is not encrypted
Secrets and tokens are never written: keys that look like them are dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .context import current_request_id
from .policy import AuditLevel

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
_SECRET_HINTS = ("token", "secret", "password", "authorization", "credential", "jwt")
_TAIL_BYTES = 1 << 20


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def scrub(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys that may hold secrets, at any depth."""
    clean: dict[str, Any] = {}
    for key, value in data.items():
        if any(hint in key.lower() for hint in _SECRET_HINTS):
            continue
        clean[key] = scrub(value) if isinstance(value, Mapping) else value
    return clean


def verify(path: Path) -> int | None:
    """Index (0-based line) of the first record that breaks the chain, or None if intact."""
    if not path.exists():
        return None
    expected_prev = GENESIS_HASH
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return index
            if not isinstance(record, dict) or record.get("prev_hash") != expected_prev:
                return index
            if record.get("hash") != record_hash(record):
                return index
            expected_prev = record["hash"]
    return None


def _last_hash(path: Path) -> str:
    """The hash to chain the next record to: read only the file's tail."""
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS_HASH
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return GENESIS_HASH
    last = lines[-1]
    try:
        record = json.loads(last)
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            return str(record["hash"])
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    # A torn last line (crash mid-write): chain on from its bytes so new records
    # still link, and let verify() point at the damage instead of hiding it.
    logger.warning("audit log %s ends with an unreadable record; verify() will report it", path)
    return hashlib.sha256(last).hexdigest()


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        level: AuditLevel,
        module: str,
        record_raw_payloads: bool = False,
    ) -> None:
        self.path = path
        self.level = level
        self.module = module
        self.record_raw_payloads = record_raw_payloads
        self._prev_hash = GENESIS_HASH
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.level > AuditLevel.NONE

    async def open(self) -> None:
        if not self.enabled:
            return
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._prev_hash = await asyncio.to_thread(_last_hash, self.path)

    def _append(self, line: str) -> None:
        # One write of one line in append mode; flushed on close. No fsync: a
        # crash may lose the last records, which verify() cannot see (see above).
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def build(
        self,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        actor: Mapping[str, Any] | None = None,
        values: Sequence[float] | None = None,
    ) -> dict[str, Any] | None:
        """The record body this level would write for an event (None: nothing)."""
        if not self.enabled:
            return None
        record: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(),
            "module": self.module,
            "event": event,
            "data": scrub(data or {}),
        }
        rid = current_request_id()  # the request that caused this, kept by its tasks too
        if rid is not None:
            record["request_id"] = rid
        if actor is not None and self.level >= AuditLevel.DETAILED:
            record["actor"] = scrub(actor)
        if values is not None and self.level >= AuditLevel.VERBOSE:
            summary: dict[str, Any] = {"values_count": len(values)}
            if self.record_raw_payloads:
                summary["values"] = list(values)
            record["payload"] = summary
        return record

    async def record(
        self,
        event: str,
        data: Mapping[str, Any] | None = None,
        *,
        actor: Mapping[str, Any] | None = None,
        values: Sequence[float] | None = None,
    ) -> str | None:
        """Append one record; returns its hash (None when the level records nothing)."""
        record = self.build(event, data, actor=actor, values=values)
        if record is None:
            return None
        # The lock keeps hash order equal to file order across concurrent writers;
        # the write itself runs in a thread so a slow disk does not stall the loop.
        async with self._lock:
            record["prev_hash"] = self._prev_hash
            record["hash"] = record_hash(record)
            line = canonical(record).decode("utf-8") + "\n"
            await asyncio.to_thread(self._append, line)
            self._prev_hash = record["hash"]
        return str(record["hash"])

    def verify(self) -> int | None:
        return verify(self.path)
