"""Tracked tasks: an in-memory store and a bounded, event-driven runner.

Each submitted task becomes one ``asyncio`` task that waits on a semaphore, so at
most ``max_concurrent`` run at once and the rest wait without polling: an idle
module uses no CPU. Finished records are kept for ``retention_seconds`` and
pruned when the store is next used (no clean-up loop either). Records live in
memory only: a restart forgets them, which callers learn from a 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from .errors import NotReady, QueueFullError

logger = logging.getLogger(__name__)

Work = Callable[[], Awaitable[dict[str, Any]]]
Listener = Callable[["TaskRecord"], Awaitable[None]]


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(eq=False)
class TaskRecord:
    operation: str
    owner: str | None = None
    id: UUID = field(default_factory=uuid4)
    status: TaskStatus = TaskStatus.QUEUED
    created_at: datetime = field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": str(self.id),
            "operation": self.operation,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "result": self.result,
            "error": self.error,
        }


class TaskManager:
    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queued: int,
        timeout_seconds: float,
        retention_seconds: float,
        on_change: Listener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._max_queued = max_queued
        self._timeout = timeout_seconds
        self._retention = retention_seconds
        self._on_change = on_change
        self._clock = clock
        self._records: dict[UUID, TaskRecord] = {}
        self._finished: deque[tuple[float, UUID]] = deque()  # finish order = expiry order
        # Strong refs by task id: the event loop itself keeps only weak ones.
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self._counts = dict.fromkeys(TaskStatus, 0)
        self._accepting = True
        self._cancel_reason = "cancelled"

    # Counters ---------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._counts[TaskStatus.QUEUED]

    @property
    def active(self) -> int:
        return self._counts[TaskStatus.RUNNING]

    @property
    def accepting(self) -> bool:
        return self._accepting

    # Store ------------------------------------------------------------------
    def _prune(self) -> None:
        cutoff = self._clock() - self._retention
        while self._finished and self._finished[0][0] <= cutoff:
            _, task_id = self._finished.popleft()
            self._records.pop(task_id, None)

    def get(self, task_id: UUID) -> TaskRecord | None:
        self._prune()
        return self._records.get(task_id)

    def __len__(self) -> int:
        return len(self._records)

    # Running ----------------------------------------------------------------
    def submit(self, operation: str, work: Work, *, owner: str | None = None) -> TaskRecord:
        """Record a task and start it; it runs when a concurrency slot frees up."""
        if not self._accepting:
            raise NotReady("the module is shutting down and accepts no new tasks")
        self._prune()
        in_flight = self.queued + self.active
        if in_flight >= self._max_queued:
            raise QueueFullError(
                f"{in_flight} tasks are queued or running (limit MAX_QUEUED_TASKS="
                f"{self._max_queued}); retry later",
                retry_after=1,
            )
        record = TaskRecord(operation=operation, owner=owner)
        self._records[record.id] = record
        self._counts[TaskStatus.QUEUED] += 1
        task = asyncio.create_task(self._run(record, work), name=f"task-{record.id}")
        self._tasks[record.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record.id, None))
        return record

    async def wait(self, record: TaskRecord) -> TaskRecord:
        """Until the task has finished (without cancelling it if the waiter is cancelled)."""
        task = self._tasks.get(record.id)
        if task is not None:
            await asyncio.wait({task})
        return record

    def _move(self, record: TaskRecord, status: TaskStatus) -> None:
        self._counts[record.status] -= 1
        self._counts[status] += 1
        record.status = status
        if status is TaskStatus.RUNNING:
            record.started_at = utc_now()
        elif status.finished:
            record.finished_at = utc_now()
            self._finished.append((self._clock(), record.id))

    async def _notify(self, record: TaskRecord) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change(record)
        except Exception:
            # A failing listener (audit disk full, say) must not corrupt task state.
            logger.exception("task listener failed for %s (%s)", record.id, record.status)

    async def _run(self, record: TaskRecord, work: Work) -> None:
        try:
            async with self._semaphore:
                self._move(record, TaskStatus.RUNNING)
                await self._notify(record)
                deadline = asyncio.timeout(self._timeout)
                try:
                    async with deadline:
                        result = await work()
                except Exception as exc:
                    if isinstance(exc, TimeoutError) and deadline.expired():
                        # CPU work in a worker thread cannot be interrupted: the
                        # thread finishes on its own and its result is dropped.
                        # Inputs are bounded (MAX_VALUES), so the overrun is short.
                        record.error = f"timed out after {self._timeout:g} s (TASK_TIMEOUT_SECONDS)"
                    else:
                        record.error = f"{type(exc).__name__}: {exc}"
                    self._move(record, TaskStatus.FAILED)
                else:
                    record.result = result
                    self._move(record, TaskStatus.SUCCEEDED)
        except asyncio.CancelledError:
            if not record.status.finished:
                record.error = self._cancel_reason
                self._move(record, TaskStatus.CANCELLED)
                await self._notify(record)
            raise
        await self._notify(record)

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop accepting, let in-flight tasks finish for the grace period, cancel the rest."""
        self._accepting = False
        pending = set(self._tasks.values())
        if pending and grace_seconds > 0:
            _, pending = await asyncio.wait(pending, timeout=grace_seconds)
        if not pending:
            return
        self._cancel_reason = (
            f"cancelled: the module shut down before the task finished "
            f"(SHUTDOWN_GRACE_SECONDS={grace_seconds:g})"
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
