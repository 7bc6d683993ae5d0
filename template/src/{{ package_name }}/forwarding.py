"""Forwarding the audit trail to the audit service, without ever blocking a request.

The audit service is the platform's (BLUX: blux-guard); its URL is a setting
(Settings.audit_forward_url). Contract with it (docs/integration.md):
  POST {audit service}/v1/audit/records
  body: one audit record, the exact JSON line written to the local file
        (so the service can recompute ``hash`` and check ``prev_hash``)
  2xx: stored; 409: already stored (a duplicate after a retry), treated as stored;
  anything else, or no answer: retried with exponential back-off and jitter.

The local file ``DATA_DIR/audit.jsonl`` stays the source of truth. ``AuditLog``
hands each appended line (with its byte offset) to ``offer``, which only puts it
on a bounded queue; one task awaits that queue and sends records one at a time,
in file order. After every confirmed record the cursor ``DATA_DIR/audit.forwarded``
(``{"index", "hash", "offset"}`` of the last confirmed record) is saved, so:

- records not yet confirmed at shutdown (the flush has a short deadline) or lost
  to a crash are read back from the file and sent at the next start;
- when the queue overflows (the service is down for long), the dropped entries
  are read back from the file too: a record whose offset is ahead of the cursor
  first makes the sender catch up from the file.

A crash between a send and the cursor save re-sends one record: the service's
409 makes that harmless. Every record therefore arrives at least once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx

from .forward_cursor import (
    Cursor,
    cursor_matches,
    line_hash,
    load_cursor,
    read_lines,
    save_cursor,
)
from .retry import backoff_delays
from .tls import client_context

logger = logging.getLogger(__name__)

RECORDS_PATH = "/v1/audit/records"
_BATCH_LINES = 500


class AuditForwarder:
    def __init__(
        self,
        base_url: str,
        audit_path: Path,
        cursor_path: Path,
        *,
        timeout: float,
        retry_initial: float,
        retry_max: float,
        queue_size: int = 10_000,
    ) -> None:
        self.url = base_url.rstrip("/") + RECORDS_PATH
        self.audit_path = audit_path
        self.cursor_path = cursor_path
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.cursor = Cursor()
        self.forwarded = 0  # confirmed by the service since start
        self.dropped = 0  # queue overflows (caught up from the file later)
        self._queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(queue_size)
        self._accepting = False
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        cursor = await asyncio.to_thread(load_cursor, self.cursor_path)
        if cursor is not None and not await asyncio.to_thread(
            cursor_matches, self.audit_path, cursor
        ):
            logger.warning(
                "audit forwarding cursor %s does not match %s (file replaced or cut); "
                "forwarding the whole file again (the service answers 409 for records it has)",
                self.cursor_path,
                self.audit_path,
            )
            cursor = None
        self.cursor = cursor or Cursor()
        self._client = httpx.AsyncClient(timeout=self.timeout, verify=client_context())
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="audit-forwarder")
        logger.info("forwarding audit records to %s", self.url)

    def offer(self, offset: int, line: str) -> None:
        """Called by AuditLog for each appended line; never blocks or raises."""
        if not self._accepting:
            return
        try:
            self._queue.put_nowait((offset, line))
        except asyncio.QueueFull:
            if self.dropped == 0:
                logger.warning(
                    "audit forwarding queue full (the audit service is slow or down); "
                    "the records stay in %s and are sent from there later",
                    self.audit_path,
                )
            self.dropped += 1

    async def _run(self) -> None:
        try:
            await self._catch_up(None)  # the backlog from earlier runs
            while True:
                item = await self._queue.get()
                if item is None:  # stop(): send whatever the file still holds
                    await self._catch_up(None)
                    return
                offset, line = item
                if offset > self.cursor.offset:  # entries were dropped: read them back
                    await self._catch_up(offset)
                if offset == self.cursor.offset:
                    await self._send(offset, line)
                # offset < cursor: already sent while catching up from the file.
        except asyncio.CancelledError:
            raise
        except Exception:
            # The file is the source of truth: the next start resumes from the cursor.
            logger.exception("audit forwarding stopped; unsent records are retried at next start")

    async def _catch_up(self, until: int | None) -> None:
        while until is None or self.cursor.offset < until:
            lines = await asyncio.to_thread(
                read_lines, self.audit_path, self.cursor.offset, _BATCH_LINES
            )
            if not lines:
                return
            for offset, line in lines:
                if until is not None and offset >= until:
                    return
                await self._send(offset, line)

    async def _send(self, offset: int, line: str) -> None:
        assert self._client is not None  # noqa: S101 - start() sets it
        body = line.rstrip("\n").encode("utf-8")
        delays = backoff_delays(self.retry_initial, self.retry_max)
        failures = 0
        try:
            json.loads(body)
        except ValueError:
            # A torn line (crash mid-write): no service would accept it, and
            # retrying it would stall forwarding for good. `audit verify` reports it.
            logger.error("audit record %d is not valid JSON; not forwarded", self.cursor.index + 1)
            failures = -1
        while failures >= 0:
            try:
                response = await self._client.post(
                    self.url, content=body, headers={"Content-Type": "application/json"}
                )
                if response.is_success or response.status_code == 409:
                    break
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            failures += 1
            delay = next(delays)
            log = logger.warning if failures == 1 or failures % 10 == 0 else logger.debug
            log(
                "audit record %d not forwarded to %s (%s, attempt %d); retrying in %.2fs",
                self.cursor.index + 1,
                self.url,
                problem,
                failures,
                delay,
            )
            await asyncio.sleep(delay)
        self.cursor = Cursor(
            index=self.cursor.index + 1,
            hash=line_hash(line.rstrip("\n")),
            offset=offset + len(line.encode("utf-8")),
        )
        await asyncio.to_thread(save_cursor, self.cursor_path, self.cursor)
        self.forwarded += 1

    async def stop(self, deadline: float) -> None:
        """Flush for at most ``deadline`` seconds; what is left goes at next start."""
        self._accepting = False
        task, self._task = self._task, None
        if task is not None:
            try:
                async with asyncio.timeout(deadline):
                    await self._queue.put(None)
                    await task
            except TimeoutError:
                logger.warning(
                    "audit forwarding: records after #%d not confirmed by %s within %.1fs; "
                    "they are sent at next start",
                    self.cursor.index,
                    self.url,
                    deadline,
                )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "forwarded": self.forwarded,
            "last_forwarded_index": self.cursor.index,
            "queued": self.pending,
        }
