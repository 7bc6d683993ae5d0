"""Append-only, hash-chained JSON-lines audit trail at ``DATA_DIR/audit.jsonl``.

Each record carries ``prev_hash`` (the previous record's ``hash``) and its own
``hash``: sha256 over the record's canonical JSON without ``hash``. Editing,
reordering or deleting a record breaks the chain from that record on, which
``verify`` reports. Truncating the tail cannot be detected from the file alone:
with the audit service's URL set, records are also forwarded to it
(forwarding.py), and ``verify_chain`` compares the file with the forwarding
cursor ``DATA_DIR/audit.forwarded``, so cutting forwarded records is reported.

What is written depends on the policy's audit level:
  none      nothing
  basic     lifecycle (module start/stop, task transitions, policy violations)
  detailed  + who asked (subject, client address, method, path)
  verbose   + payload summaries (value counts); raw values only when the policy
            sets record_payloads and data handling is not encrypted
Secrets and tokens are never written: keys that look like them are dropped at
any depth (inside lists too), and bearer tokens or JWTs found inside any string
value are replaced by ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from .context import current_request_id
from .timestamps import utc_now_iso

logger = logging.getLogger(__name__)


class AuditLevel(IntEnum):
    """Ordered so that ``level >= AuditLevel.DETAILED`` reads as intended."""

    NONE = 0
    BASIC = 1
    DETAILED = 2
    VERBOSE = 3

    @classmethod
    def parse(cls, name: str) -> AuditLevel:
        return cls[name.upper()]


GENESIS_HASH = "0" * 64
_SECRET_HINTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "credential",
    "jwt",
    "api_key",
    "apikey",
    "private_key",
    "cookie",
)
# Secrets that hide in free text (an error message, a header echoed back).
_SECRET_TEXT = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"  # Authorization header values
    r"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # JWTs (base64url JSON)
)
# "eyJ" + 4 + "." + 4 + "." (a JWT); "bearer" + " " + 8 (a header) is longer.
_SHORTEST_SECRET = 13
REDACTED = "[redacted]"
# How far back from a point in the file its last record is looked for (records are far smaller).
TAIL_BYTES = 1 << 20


# One encoder for every record: json.dumps with options builds a new one per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical(value: Any) -> bytes:
    return _CANONICAL(value).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


@functools.lru_cache(maxsize=4096)  # records reuse a few key names; checked for every record
def is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(hint in lowered for hint in _SECRET_HINTS)


def _utf8(text: str) -> str:
    """The text as it can be written: a lone surrogate (JSON may carry one as
    \\ud800) has no UTF-8 form, so it becomes '?' rather than fail the record."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def _scrub_value(value: Any) -> Any:
    # Strings first, and short ones as they are: most values are short strings,
    # and no match of _SECRET_TEXT is shorter than _SHORTEST_SECRET.
    if isinstance(value, str):
        value = _utf8(value)
        return value if len(value) < _SHORTEST_SECRET else _SECRET_TEXT.sub(REDACTED, value)
    if isinstance(value, dict | Mapping):  # dict first: a cheaper check than the ABC's
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    return value


def scrub(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys that may hold secrets and redact tokens in strings, at any depth."""
    return {
        _utf8(str(key)): _scrub_value(value)
        for key, value in data.items()
        if not is_secret_key(str(key))
    }


@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking an audit file.

    ``records`` counts the records read (all of them when intact); ``broken_at``
    is the 0-based index (= line number - 1) of the first bad record.
    """

    records: int
    broken_at: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify_chain(path: Path, cursor: Mapping[str, Any] | None = None) -> ChainReport:
    """Check every record's hash and link; stop at the first one that breaks.

    ``cursor`` is the forwarding cursor (``{"index", "hash"}`` of the last record
    the audit service confirmed): the file must still hold that record, so a tail cut
    after forwarding is found too.
    """
    count = 0
    expected_prev = GENESIS_HASH
    hashes: dict[int, str] = {}
    want = None if cursor is None else cursor.get("index")
    if path.exists():
        with path.open("rb") as handle:
            for index, raw in enumerate(handle):
                count = index + 1
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    return ChainReport(count, index, "not a readable JSON record")
                if not isinstance(record, dict):
                    return ChainReport(count, index, "not a JSON object")
                if record.get("prev_hash") != expected_prev:
                    return ChainReport(
                        count,
                        index,
                        "prev_hash link broken: it does not match the hash of "
                        + ("the genesis value" if index == 0 else f"record {index - 1}")
                        + " (a record was removed, inserted or reordered here)",
                    )
                if record.get("hash") != record_hash(record):
                    return ChainReport(
                        count, index, "hash mismatch: the record's content was changed"
                    )
                expected_prev = record["hash"]
                if index == want:
                    hashes[index] = expected_prev
    if cursor is not None and isinstance(want, int) and want >= 0:
        if want >= count:
            return ChainReport(
                count,
                count,
                f"records {count}..{want} were forwarded to the audit service but are missing "
                "from the file (the tail was cut)",
            )
        if hashes.get(want) != cursor.get("hash"):
            return ChainReport(
                count,
                want,
                "hash mismatch: differs from the hash the audit service confirmed for this record",
            )
    return ChainReport(count)


def verify(path: Path) -> int | None:
    """Index (0-based line) of the first record that breaks the chain, or None if intact."""
    return verify_chain(path).broken_at


def _last_hash(path: Path) -> str:
    """The hash to chain the next record to: read only the file's tail."""
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS_HASH
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - TAIL_BYTES))
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


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


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
        # Told about every appended line (its byte offset in the file and the
        # line itself); must not block: the audit forwarder only enqueues.
        self.on_append: Callable[[int, str], None] | None = None
        self._prev_hash = GENESIS_HASH
        self._size = 0
        self._fd: int | None = None  # O_APPEND descriptor, kept from open() to close()
        # Lines chained but not yet written, each with the future its writer awaits.
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        # The loop open() ran on, kept for record() (as SqliteStore._loop: a lookup
        # costs a system call on Python 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return self.level > AuditLevel.NONE

    async def open(self) -> None:
        if not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
        self._prev_hash = await asyncio.to_thread(_last_hash, self.path)
        self._size = await asyncio.to_thread(_size, self.path)

    def close(self) -> None:
        self._loop = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, lines: bytes) -> None:
        # One O_APPEND write of whole lines, straight to the page cache: microseconds,
        # so it runs on the event loop (a thread hop, or an open and close per record,
        # each let other threads take the GIL and cost more than the write). After a
        # rename the module writes to the new file once restarted, starting a new chain;
        # a file truncated under it (copytruncate) gets records chained to the lost ones
        # (docs/integration.md: rotate with the module stopped).
        # No fsync: a crash may lose the last records, which verify() cannot see
        # (see above).
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        view = memoryview(lines)
        while view:
            view = view[os.write(self._fd, view) :]

    def _flush(self) -> None:
        """Write every pending line at once (scheduled by the first record of a loop step)."""
        batch, self._pending = self._pending, []
        try:
            self._append(b"".join(line for line, _ in batch))
        except OSError as exc:
            # Perhaps part of the batch reached the file: chain on from what is there.
            self._prev_hash, self._size = _last_hash(self.path), _size(self.path)
            for _, written in batch:
                if not written.done():
                    written.set_exception(OSError(exc.errno, exc.strerror, str(self.path)))
            return
        for line, written in batch:
            if self.on_append is not None:
                self.on_append(self._size, line.decode("utf-8"))
            self._size += len(line)
            if not written.done():
                written.set_result(None)

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
            "ts": utc_now_iso(),
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
        """Append one record; returns its hash (None when the level records nothing)
        once the record is in the file; raises OSError if it could not be written."""
        record = self.build(event, data, actor=actor, values=values)
        if record is None:
            return None
        # Chained now, written at the end of this loop step together with every other
        # record made in it (one write for all): hash order is file order, no lock.
        record["prev_hash"] = self._prev_hash
        body = canonical(record)
        digest = self._prev_hash = hashlib.sha256(body).hexdigest()
        # The line is the hashed body with "hash" appended last: one serialisation
        # per record, and verify() re-canonicalises what it reads anyway.
        line = b'%s,"hash":"%s"}\n' % (body[:-1], digest.encode("ascii"))
        loop = self._loop or asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._pending.append((line, written))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        await written
        return digest

    def verify(self) -> int | None:
        return verify(self.path)
