"""Tracked tasks: durable records and a bounded, event-driven runner.

A task is an operation name plus the validated input its processor needs. It
is written to the task store (store.py, SQLite) as ``queued`` before
``submit`` returns, so the caller's 202 always names a task that survives a
restart. Each task then waits in a first-in, first-out line for one of
``max_concurrent`` slots (no polling: an idle module uses no CPU), becomes an
``asyncio`` task when it gets one, and runs its processor in a worker thread,
under TASK_TIMEOUT_SECONDS (or, for a small input to a processor that says it
is cheap, on the event loop: see ``SmallOnLoop``).

Processors are pure functions of their input. That is what makes redelivery
safe: a task interrupted by a crash, or still running when a graceful shutdown
ran out of time, is simply run again from the start on the next start-up.

States: queued -> running -> succeeded | failed, and queued | running ->
cancelled (by a caller). At shutdown a running task past the grace period goes
back to queued instead, and queued tasks stay queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from .errors import NotReady, QueueFullError, TaskConflict, TaskNotFound
from .ids import new_uuid7

if TYPE_CHECKING:
    from .store import Page, TaskStore

logger = logging.getLogger(__name__)

Runner = Callable[[dict[str, Any]], dict[str, Any]]
Listener = Callable[["TaskRecord"], Awaitable[None]]


@dataclass(frozen=True)
class SmallOnLoop:
    """A runner whose small inputs run on the event loop instead of a worker thread.

    Handing a task to a thread (the pool's queue, a thread wake-up, the GIL going
    back and forth, a future back to the loop) costs more than the built-in
    processors spend on a few hundred values: at most about 50 us for 256. With
    those run in place, a flood of small tasks finished 25-30 % sooner (submitted
    and drained). Up to ``max_values`` values no timeout applies, which the bound
    makes moot; larger inputs, and every runner not wrapped in this, go to the
    thread as before.
    """

    run: Runner
    max_values: int

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.run(payload)

    def small(self, payload: dict[str, Any]) -> bool:
        values = payload.get("values")
        return isinstance(values, list) and len(values) <= self.max_values


def runs_on_loop(runner: Runner, payload: dict[str, Any]) -> bool:
    """Whether ``execute`` runs this input in place, on the event loop (see SmallOnLoop)."""
    return isinstance(runner, SmallOnLoop) and runner.small(payload)


# A task found ``running`` at start-up was interrupted by a crash. One that
# keeps taking the process down (out of memory, say) must not do so forever.
MAX_RECOVERIES = 3


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
    id: UUID = field(default_factory=new_uuid7)  # time-ordered: see ids.py
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


@dataclass(eq=False, slots=True)
class _Live:
    """A task this process is responsible for: queued here or running."""

    record: TaskRecord
    payload: dict[str, Any]
    # Created when the task gets a slot. Under a flood nearly every task waits,
    # and a parked asyncio task (its coroutine, frame and waiter) cost each
    # submission more than the line does.
    task: asyncio.Task[None] | None = None
    in_line: bool = False  # waiting in TaskManager._waiting
    slot: bool = False  # holds one of the max_concurrent slots
    requeue: bool = False  # set at shutdown: back to queued, not cancelled
    ended: asyncio.Future[None] | None = None  # made by the first waiter


def _failure(exc: Exception) -> str:
    """A processor's exception as the task's error, wherever the processor ran."""
    return f"{type(exc).__name__}: {exc}"


async def execute(
    pool: ThreadPoolExecutor,
    runner: Runner,
    payload: dict[str, Any],
    limit_seconds: float,
    *,
    abandon: Callable[[], bool] = lambda: False,
) -> tuple[dict[str, Any] | None, str | None]:
    """Run ``runner(payload)`` in ``pool`` for at most ``limit_seconds`` (a small input
    to a ``SmallOnLoop`` runner: here, at once): (result, None) or (None, reason).

    Shared by both task backends. ``abandon()`` true means the caller is
    shutting down and hands the task back (it is not waited for).
    """
    if runs_on_loop(runner, payload):
        try:
            return runner(payload), None
        except Exception as exc:
            return None, _failure(exc)
    work = asyncio.wrap_future(pool.submit(runner, payload))
    deadline = asyncio.timeout(limit_seconds)
    try:
        async with deadline:
            # shield: cancelling this task must not detach us from the thread.
            return await asyncio.shield(work), None
    except TimeoutError:
        if not deadline.expired():
            raise
        return None, f"timed out after {limit_seconds:g} s (TASK_TIMEOUT_SECONDS)"
    except Exception as exc:
        return None, _failure(exc)
    finally:
        # A thread cannot be interrupted. After a timeout or a cancel the slot
        # stays taken until the thread returns (its result is dropped), so
        # running work never exceeds max_concurrent_tasks. Inputs are bounded
        # (MAX_VALUES), so the overrun is short. A cancel that arrives during
        # this wait (a caller's, after a timeout) is delivered once it ends.
        cancelled = False
        while not work.done() and not abandon():
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError


class TaskBackend(Protocol):
    """What the module core needs from its tasks, whichever backend holds them.

    ``TaskManager`` (below): SQLite in DATA_DIR, one process (task_backend
    embedded). ``RedisTaskManager`` (redis_tasks.py): Redis Streams and hashes,
    shared by every replica (task_backend redis).
    """

    runners: dict[str, Runner]

    @property
    def queued(self) -> int: ...
    @property
    def active(self) -> int: ...
    @property
    def accepting(self) -> bool: ...
    async def start(self) -> int: ...
    def check_admission(self) -> None: ...
    async def submit(
        self, operation: str, payload: dict[str, Any], *, owner: str | None = None
    ) -> TaskRecord: ...
    async def get(self, task_id: UUID) -> TaskRecord | None: ...
    async def page(
        self,
        *,
        owner: str | None,
        status: TaskStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page: ...
    async def wait(self, task_id: UUID) -> TaskRecord | None: ...
    async def cancel(self, task_id: UUID, reason: str = "cancelled") -> TaskRecord: ...
    def stop_accepting(self, grace_seconds: float) -> None: ...
    async def drain(self, grace_seconds: float) -> bool: ...
    async def shutdown(self, grace_seconds: float) -> None: ...


class TaskManager:
    def __init__(
        self,
        store: TaskStore,
        runners: Mapping[str, Runner],
        *,
        max_concurrent: int,
        max_queued: int,
        timeout_seconds: float,
        on_change: Listener | None = None,
    ) -> None:
        self._store = store
        # operation -> processor; more may be registered before they are submitted.
        self.runners: dict[str, Runner] = dict(runners)
        self._max_concurrent = max_concurrent
        self._busy = 0  # slots taken
        self._waiting: deque[_Live] = deque()  # for a slot, oldest first
        # As many threads as slots: CPU work can never outnumber the bound.
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="task")
        self._max_queued = max_queued
        self._timeout = timeout_seconds
        self._on_change = on_change
        self._live: dict[UUID, _Live] = {}
        # Live tasks by state, kept with every change: probes read it in O(1).
        self._states: Counter[TaskStatus] = Counter()
        self._accepting = True
        self._deadline: float | None = None  # loop time when the shutdown grace ends
        self._grace = 0.0

    # Counters ---------------------------------------------------------------
    @property
    def queued(self) -> int:
        return self._states[TaskStatus.QUEUED]

    @property
    def active(self) -> int:
        return self._states[TaskStatus.RUNNING]

    def _hold(self, live: _Live) -> None:
        self._live[live.record.id] = live
        self._states[live.record.status] += 1

    def _release(self, task_id: UUID) -> None:
        live = self._live.pop(task_id, None)
        if live is not None:
            self._states[live.record.status] -= 1
            if live.ended is not None and not live.ended.done():
                live.ended.set_result(None)

    @property
    def accepting(self) -> bool:
        return self._accepting

    # Start-up ---------------------------------------------------------------
    async def start(self) -> int:
        """Resume the tasks a previous run left unfinished; returns how many."""
        resumed = 0
        for found in await self._store.recover():
            record, payload = found.record, found.payload
            problem = None
            if record.operation not in self.runners:
                problem = f"operation {record.operation!r} is no longer provided by this module"
            elif payload is None:
                problem = "its input was not stored, so it cannot run again"
            elif found.recoveries > MAX_RECOVERIES:
                problem = f"abandoned: the module stopped while running it {found.recoveries} times"
            if problem is not None or payload is None:
                record.error = problem
                await self._settle(record, TaskStatus.FAILED)
                continue
            # Processors are pure: running an interrupted task again from its
            # stored input gives the same result it would have given.
            self._launch(_Live(record, payload))
            resumed += 1
        if resumed:
            logger.info("resumed %d unfinished task(s) from %s", resumed, self._store.path)
        return resumed

    # Submitting -------------------------------------------------------------
    def check_admission(self) -> None:
        """Raise what ``submit`` would for a task arriving now: NotReady once shutting
        down, QueueFullError at MAX_QUEUED_TASKS."""
        if not self._accepting:
            raise NotReady("the module is shutting down and accepts no new tasks; retry later")
        in_flight = len(self._live)
        if in_flight >= self._max_queued:
            raise QueueFullError(
                f"{in_flight} tasks are queued or running (limit MAX_QUEUED_TASKS="
                f"{self._max_queued}); retry later",
                retry_after=1,
            )

    async def submit(
        self, operation: str, payload: dict[str, Any], *, owner: str | None = None
    ) -> TaskRecord:
        """Persist a task as queued, then schedule it; it runs when a slot frees up."""
        self.check_admission()
        if operation not in self.runners:
            raise ValueError(f"no runner for operation {operation!r}")
        live = _Live(TaskRecord(operation=operation, owner=owner), payload)
        self._hold(live)  # counts against the bound while it is written
        try:
            await self._store.insert(live.record, payload)
        except BaseException:
            self._release(live.record.id)
            raise
        self._launch(live)
        return live.record

    def _launch(self, live: _Live) -> None:
        if live.record.status.finished:
            # Cancelled while submit was storing it (it was listed already).
            self._release(live.record.id)
            return
        if live.record.id not in self._live:
            self._hold(live)
        live.in_line = True
        self._waiting.append(live)
        if not self._accepting:
            self._keep_queued(live)
        self._start_waiting()

    @staticmethod
    def _keep_queued(live: _Live) -> None:
        """The module stops accepting: a waiting task stays queued for the next start."""
        if live.ended is not None and not live.ended.done():
            live.ended.set_result(None)  # its waiters are done with it here

    def _start_waiting(self) -> None:
        """Give the free slots to the tasks that have waited longest."""
        while self._waiting and self._busy < self._max_concurrent and self._accepting:
            live = self._waiting.popleft()
            live.in_line = False
            self._busy += 1
            live.slot = True
            live.task = asyncio.create_task(self._run(live), name=f"task-{live.record.id}")
            # A task cancelled before its first step never runs _run's cleanup.
            live.task.add_done_callback(partial(self._task_done, live))

    def _free_slot(self, live: _Live) -> None:
        if live.slot:
            live.slot = False
            self._busy -= 1
            self._start_waiting()

    def _task_done(self, live: _Live, _task: asyncio.Task[None]) -> None:
        self._free_slot(live)
        if self._live.get(live.record.id) is live:
            self._release(live.record.id)

    # Reading ----------------------------------------------------------------
    async def get(self, task_id: UUID) -> TaskRecord | None:
        live = self._live.get(task_id)
        if live is not None:
            return live.record  # at least as fresh as its stored row
        return await self._store.get(task_id)

    async def page(
        self,
        *,
        owner: str | None,
        status: TaskStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        page = await self._store.page(owner=owner, status=status, limit=limit, cursor=cursor)
        for index, record in enumerate(page.records):
            live = self._live.get(record.id)
            if live is not None:
                page.records[index] = live.record
        return page

    async def wait(self, task_id: UUID) -> TaskRecord | None:
        """Until this process is done with the task (without cancelling it if the waiter is),
        then its record; a client's long poll bounds it with a timeout. Every task of
        this backend is this process's: its end is a future here, nothing is re-read.

        A task still waiting for a slot when the module stops accepting is done
        with here: it stays queued for the next start.
        """
        live = self._live.get(task_id)
        if live is not None and (live.task is not None or self._accepting):
            if live.ended is None:
                live.ended = asyncio.get_running_loop().create_future()
            await asyncio.wait({live.ended})
        return await self.get(task_id)

    # Transitions ------------------------------------------------------------
    async def _settle(self, record: TaskRecord, status: TaskStatus) -> None:
        """Move to ``status``, store it, tell the listener.

        The in-memory change happens before the first await, so anything the
        event loop runs next already sees it.
        """
        self._enter(record, status)
        try:
            try:
                await self._store.update(record)
            except (ValueError, TypeError) as exc:  # a result JSON cannot hold
                record.status, record.result = TaskStatus.FAILED, None
                record.error = f"the result cannot be stored as JSON: {exc}"
                await self._store.update(record)
        except NotReady:
            # The row keeps its previous status; at worst the task runs again
            # after a restart, which is safe for pure processors.
            logger.exception("could not store task %s as %s", record.id, status)
        if status is not TaskStatus.QUEUED:
            await self._notify(record)

    def _enter(self, record: TaskRecord, status: TaskStatus) -> None:
        """The in-memory side of a transition: status, its time, the counters."""
        live = self._live.get(record.id)
        if live is not None and live.record is record:
            self._states[record.status] -= 1
            self._states[status] += 1
        record.status = status
        if status is TaskStatus.RUNNING:
            record.started_at = utc_now()
        elif status is TaskStatus.QUEUED:
            record.started_at = None
        else:
            record.finished_at = utc_now()

    async def _notify(self, record: TaskRecord) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change(record)
        except Exception:
            # A failing listener (audit disk full, say) must not corrupt task state.
            logger.exception("task listener failed for %s (%s)", record.id, record.status)

    # Running ----------------------------------------------------------------
    async def _run(self, live: _Live) -> None:
        record = live.record
        try:
            try:
                if not self._accepting or record.status.finished:
                    return  # draining: it stays queued, stored, for the next start
                if runs_on_loop(self.runners[record.operation], live.payload):
                    # Not stored as running: the run ends microseconds later, in
                    # the next step, and the row is written once, finished. A crash
                    # in between leaves it queued, so it runs again from its stored
                    # input as it would from a row left running (minus counting the
                    # crash against it, which guards against long, heavy runs).
                    # That write was about 15 % of the CPU a small task takes to run.
                    self._enter(record, TaskStatus.RUNNING)
                    await self._notify(record)
                else:
                    await self._settle(record, TaskStatus.RUNNING)
                result, error = await self._execute(live)
            finally:
                # The slot bounds running work, so it is free while the outcome is
                # stored (the in-memory status changes before _settle's first await).
                self._free_slot(live)
            if record.status.finished:
                return  # cancelled by a caller meanwhile
            # Once the outcome exists, a shutdown's cancellation must not cut its storing
            # short: the store drops a write whose caller gave up, and the row would say
            # "running" after a clean stop, with the result lost. It is one write and
            # one audit record, so the shutdown waits for it.
            storing = asyncio.ensure_future(self._store_outcome(record, result, error))
            try:
                await asyncio.shield(storing)
            except asyncio.CancelledError:
                await storing
                raise
        except asyncio.CancelledError:
            if live.requeue:
                if record.status is TaskStatus.RUNNING:
                    await self._settle(record, TaskStatus.QUEUED)
            elif not record.status.finished:
                record.error = "cancelled"
                await self._settle(record, TaskStatus.CANCELLED)
            raise
        finally:
            self._release(record.id)

    async def _store_outcome(
        self, record: TaskRecord, result: dict[str, Any] | None, error: str | None
    ) -> None:
        if error is None:
            record.result = result
            await self._settle(record, TaskStatus.SUCCEEDED)
        else:
            record.error = error
            await self._settle(record, TaskStatus.FAILED)

    async def _execute(self, live: _Live) -> tuple[dict[str, Any] | None, str | None]:
        """Run the processor (see ``execute``): (result, None) or (None, reason)."""
        runner = self.runners[live.record.operation]
        return await execute(
            self._pool, runner, live.payload, self._timeout, abandon=lambda: live.requeue
        )

    async def cancel(self, task_id: UUID, reason: str = "cancelled") -> TaskRecord:
        """Cancel a queued or running task; 409 once finished, 404 when unknown."""
        live = self._live.get(task_id)
        record = live.record if live is not None else await self._store.get(task_id)
        if record is None:
            raise TaskNotFound(f"task {task_id} not found")
        if record.status.finished:
            raise TaskConflict(
                f"task {task_id} already {record.status.value}: "
                "only queued or running tasks can be cancelled"
            )
        record.error = reason
        # Not started: waiting in the line, or still being stored by submit.
        waiting = live if live is not None and live.task is None else None
        if waiting is not None and waiting.in_line:
            waiting.in_line = False
            self._waiting.remove(waiting)  # O(queue), but only on a caller's cancel
        elif live is not None and live.task is not None:
            live.task.cancel()
        try:
            await self._settle(record, TaskStatus.CANCELLED)
        finally:
            if waiting is not None:
                self._release(task_id)  # no asyncio task will do it
        return record

    # Shutdown ---------------------------------------------------------------
    def stop_accepting(self, grace_seconds: float) -> None:
        """Refuse new tasks and start no queued ones; the grace period starts now."""
        self._accepting = False
        for live in self._waiting:
            self._keep_queued(live)
        if self._deadline is None:
            self._grace = grace_seconds
            self._deadline = asyncio.get_running_loop().time() + grace_seconds

    async def drain(self, grace_seconds: float) -> bool:
        """Stop accepting and wait (until the grace ends) for running tasks; True if all ended."""
        self.stop_accepting(grace_seconds)
        assert self._deadline is not None  # noqa: S101 - set just above
        pending = {live.task for live in self._live.values() if live.task is not None}
        remaining = self._deadline - asyncio.get_running_loop().time()
        if pending and remaining > 0:
            _, pending = await asyncio.wait(pending, timeout=remaining)
        return not pending

    async def shutdown(self, grace_seconds: float) -> None:
        """Drain; tasks still running after the grace go back to queued for the next start."""
        if not await self.drain(grace_seconds):
            leftovers = [live for live in self._live.values() if live.task is not None]
            running = sum(1 for live in leftovers if live.record.status is TaskStatus.RUNNING)
            if running:
                logger.warning(
                    "%d task(s) still running after the %g s grace (SHUTDOWN_GRACE_SECONDS): "
                    "stored as queued, they run again on the next start",
                    running,
                    self._grace,
                )
            tasks = []
            for live in leftovers:
                live.requeue = True
                if live.task is not None:
                    live.task.cancel()
                    tasks.append(live.task)
            await asyncio.gather(*tasks, return_exceptions=True)
        # Threads still computing a dropped result are not waited for here; the
        # interpreter joins them at exit (bounded by MAX_VALUES).
        self._pool.shutdown(wait=False, cancel_futures=True)
