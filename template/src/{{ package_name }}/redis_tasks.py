"""Tasks and events in Redis, shared by every replica (task_backend: redis).

Layout (``<p>`` is REDIS_KEY_PREFIX, ``<module>:`` by default):

- ``<p>tasks``: a Stream with one entry per task to run and the consumer
  group ``workers``. Every replica reads it with XREADGROUP ... BLOCK, one
  entry per free slot, so work spreads over the replicas that have capacity
  and an idle replica waits in Redis instead of polling.
- ``<p>task:<id>``: a hash with the task's state (status, times, owner,
  input until it finishes, result or error). Any replica answers for any
  task from it. A finished task's hash expires after TASK_RETENTION_SECONDS.
- ``<p>owner:<subject>``: a sorted set of the owner's task ids by submission
  order, for listing (entries whose hash expired are dropped when read).

Delivery and redelivery. A replica takes an entry, marks the task running
(Lua, atomic with the state check), runs the processor, stores the result,
and only then acknowledges (XACK) and deletes the entry. While it runs, the
replica renews its claim every third of TASK_CLAIM_TIMEOUT_SECONDS. An entry
whose replica died stops being renewed; after TASK_CLAIM_TIMEOUT_SECONDS
another replica takes it over with XAUTOCLAIM and runs the task again from its
stored input. A redelivered entry whose task is already finished (the replica
died after storing the result, before the ack) is acknowledged and skipped:
each task is stored as finished once, and the first stored result wins.
Processors are pure functions of their input, so a task re-run after a crash
gives the result the lost run would have given. A task redelivered more than
MAX_RECOVERIES times (it keeps killing its replica) is failed as abandoned.

Cancelling writes ``cancelled`` to the hash; the replica running it drops its
result when it finishes (the stored state wins), and a queued entry is skipped
when read. At shutdown a task still running after the grace period is handed
back: put back to ``queued`` and re-added to the stream for another replica.

Events go to one platform stream (EVENTS_STREAM) with a ``type`` field; this
module reads it through its own consumer group (named after the module), so
each event reaches one replica of each consuming module, at least once.

Redis Cluster is not supported: the scripts touch several keys of one task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from .errors import ModuleError, NotReady, QueueFullError, StartupError, TaskConflict, TaskNotFound
from .settings import Settings, env_name
from .store import Page, decode_cursor, encode_compact, encode_cursor
from .tasks import (
    MAX_RECOVERIES,
    Listener,
    Runner,
    TaskRecord,
    TaskStatus,
    _Live,
    execute,
    utc_now,
)

logger = logging.getLogger(__name__)

Redis = aioredis.Redis

GROUP = "workers"
# Newest task ids kept per owner for listing; older ones are still readable by id.
OWNER_INDEX_CAP = 10_000
# Events kept in the platform stream (approximate trim on every publish).
EVENTS_MAXLEN = 100_000
# A long poll (GET /v1/tasks/{id}?wait=) re-reads a task run elsewhere this often.
WAIT_FIRST_PAUSE_SECONDS = 0.05
WAIT_LAST_PAUSE_SECONDS = 1.0


class BlockingReads:
    """A reader's own Redis connection for its blocking reads, which can be woken to stop.

    A reader is not cancelled in the middle of a Redis command: with redis-py's
    asyncio client, about one such cancel in a hundred lands while a reply is
    being read, is swallowed, and leaves the reader waiting forever for a reply
    that never comes (seen with redis-py 8.1; the bug family of
    redis/redis-py#2028), which hung shutdown. Instead the reader checks a stop
    flag between commands, and ``stop`` ends its current blocking read at once
    with CLIENT UNBLOCK: the read answers "nothing", like a timeout. Where the
    server refuses CLIENT commands, the read ends at its BLOCK timeout.
    """

    def __init__(self, client: aioredis.Redis, block_ms: int) -> None:
        self._shared = client
        self.client = client.client()  # one connection of the pool, kept for the reader
        self.block_ms = block_ms
        self._id: int | None = None

    async def ready(self) -> None:
        """Learn the connection's id before a blocking read (again after a reconnect)."""
        if self._id is None:
            try:
                self._id = int(await self.client.client_id())
            except ResponseError:
                self._id = -1  # CLIENT refused: stop waits for the BLOCK timeout

    def lost(self) -> None:
        """After an error the connection may be new, with a new id."""
        self._id = None

    async def stop(self, reader: asyncio.Task[None] | None, what: str) -> None:
        """Wake ``reader`` (already told to stop) until it ends; cancel only as a last resort."""
        deadline = asyncio.get_running_loop().time() + self.block_ms / 1000 + 1
        while reader is not None and not reader.done():
            if self._id is not None and self._id >= 0:
                try:
                    await self._shared.client_unblock(self._id)
                except RedisError:
                    self._id = -1
            # Woken between two commands, the reader sees the flag before the next.
            await asyncio.wait({reader}, timeout=0.05)
            if asyncio.get_running_loop().time() > deadline:
                reader.cancel()
                done, _ = await asyncio.wait({reader}, timeout=1)
                if not done:
                    logger.warning("the %s did not stop; it ends with its connection", what)
                break
        await self.client.aclose()


_SUBMIT = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[7]) then return -1 end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'operation', ARGV[2], 'status', 'queued', 'created_at', ARGV[5],
           'payload', ARGV[6], 'seq', seq, 'deliveries', 0)
if ARGV[4] == '1' then redis.call('HSET', KEYS[2], 'owner', ARGV[3]) end
redis.call('ZADD', KEYS[4], seq, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[8]) + 1))
redis.call('XADD', KEYS[1], '*', 'task_id', ARGV[1])
return seq
"""

# -> {'run', deliveries, hash fields...} | {'skip', status} | {'missing'}
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status ~= 'queued' and status ~= 'running' then return {'skip', status} end
local n = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'runner', ARGV[1])
return {'run', tostring(n), redis.call('HGETALL', KEYS[1])}
"""

# Queued or running -> finished; -> 'ok' | the status it already had | '' (unknown).
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return '' end
if status ~= 'queued' and status ~= 'running' then return status end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'result', ARGV[3]) end
if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
redis.call('HDEL', KEYS[1], 'payload', 'runner')
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 'ok'
"""

# Hand a task this consumer runs back to the stream (shutdown past the grace).
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') == 'running'
   and redis.call('HGET', KEYS[1], 'runner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'status', 'queued')
  redis.call('HDEL', KEYS[1], 'started_at', 'runner')
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('XADD', KEYS[2], '*', 'task_id', ARGV[4])
  return 1
end
return 0
"""

# Renew this consumer's claim on an entry, unless another replica took it over.
_RENEW = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 1 and p[1][2] == ARGV[3] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
  return 1
end
return 0
"""


def consumer_name() -> str:
    """Unique per process: a restarted pod must not inherit its predecessor's claims."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:8]}"


def connect(settings: Settings) -> Redis:
    password = settings.redis_password
    return aioredis.Redis.from_url(
        settings.redis_url,
        password=password.get_secret_value() if password is not None else None,
        decode_responses=True,
        health_check_interval=30,
        socket_connect_timeout=5,
    )


async def ping(client: aioredis.Redis, settings: Settings) -> None:
    """StartupError naming the setting when Redis cannot be reached."""
    try:
        await client.ping()
    except RedisError as exc:
        raise StartupError(
            f"cannot reach Redis ({env_name('redis_url')}, task_backend redis): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _stamp(moment: datetime | None) -> str:
    return repr(moment.timestamp()) if moment is not None else ""


def _moment(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


def _record(task_id: UUID, fields: Mapping[str, str]) -> TaskRecord:
    created = _moment(fields.get("created_at"))
    return TaskRecord(
        operation=fields["operation"],
        owner=fields.get("owner"),
        id=task_id,
        status=TaskStatus(fields["status"]),
        created_at=created if created is not None else utc_now(),
        started_at=_moment(fields.get("started_at")),
        finished_at=_moment(fields.get("finished_at")),
        result=json.loads(fields["result"]) if "result" in fields else None,
        error=fields.get("error"),
    )


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class _Unavailable(NotReady):
    """Redis cannot be reached: 503, retry later."""


async def _guard(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except RedisError as exc:
        raise _Unavailable(
            f"the task backend (Redis) is unavailable: {type(exc).__name__}; retry later"
        ) from exc


class RedisTaskManager:
    """The TaskBackend over Redis; same API and states as the embedded TaskManager."""

    def __init__(
        self,
        client: aioredis.Redis,
        runners: Mapping[str, Runner],
        *,
        prefix: str,
        max_concurrent: int,
        max_queued: int,
        timeout_seconds: float,
        retention_seconds: float,
        claim_timeout_seconds: float,
        on_change: Listener | None = None,
        consumer: str | None = None,
    ) -> None:
        self._redis = client
        self.runners: dict[str, Runner] = dict(runners)
        self._prefix = prefix
        self._stream = f"{prefix}tasks"
        self.consumer = consumer or consumer_name()
        self._max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="task")
        self._max_queued = max_queued
        self._timeout = timeout_seconds
        self._retention = max(1, round(retention_seconds))
        self._claim_ms = max(1, round(claim_timeout_seconds * 1000))
        # The blocking read returns at least this often, to take over stale entries.
        self._block_ms = max(10, min(self._claim_ms // 2, 5000))
        self._on_change = on_change
        self._live: dict[UUID, _Live] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._reads = BlockingReads(client, self._block_ms)
        self._accepting = True
        self._deadline: float | None = None
        self._grace = 0.0
        self._submit = client.register_script(_SUBMIT)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._requeue = client.register_script(_REQUEUE)
        self._renew = client.register_script(_RENEW)

    def _key(self, task_id: UUID | str) -> str:
        return f"{self._prefix}task:{task_id}"

    def _owner_key(self, owner: str | None) -> str:
        return f"{self._prefix}owner:" + ("-" if owner is None else f"s:{owner}")

    # Counters (this replica) -------------------------------------------------
    @property
    def queued(self) -> int:
        return sum(1 for live in self._live.values() if live.record.status is TaskStatus.QUEUED)

    @property
    def active(self) -> int:
        return sum(1 for live in self._live.values() if live.record.status is TaskStatus.RUNNING)

    @property
    def accepting(self) -> bool:
        return self._accepting

    # Start-up ---------------------------------------------------------------
    async def start(self) -> int:
        """Create the consumer group if needed and start taking work; nothing to resume here:
        unfinished tasks wait in the stream, and stale claims are taken over as they age.
        """
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._reader = asyncio.create_task(self._read_loop(), name="task-reader")
        return 0

    # Submitting -------------------------------------------------------------
    def check_admission(self) -> None:
        """NotReady once shutting down. The queue bound is shared by every replica, so
        only ``submit`` checks it, in the same script that adds the task."""
        if not self._accepting:
            raise NotReady("the module is shutting down and accepts no new tasks; retry later")

    async def submit(
        self, operation: str, payload: dict[str, Any], *, owner: str | None = None
    ) -> TaskRecord:
        self.check_admission()
        if operation not in self.runners:
            raise ValueError(f"no runner for operation {operation!r}")
        record = TaskRecord(operation=operation, owner=owner)
        encoded = await asyncio.to_thread(encode_compact, payload)
        seq = await _guard(
            self._submit(
                keys=[
                    self._stream,
                    self._key(record.id),
                    f"{self._prefix}seq",
                    self._owner_key(owner),
                ],
                args=[
                    str(record.id),
                    operation,
                    owner or "",
                    "1" if owner is not None else "0",
                    _stamp(record.created_at),
                    encoded,
                    self._max_queued,
                    OWNER_INDEX_CAP,
                ],
            )
        )
        if int(seq) < 0:
            raise QueueFullError(
                f"{self._max_queued} tasks are queued or running across all replicas "
                f"(limit {env_name('max_queued_tasks')}); retry later",
                retry_after=1,
            )
        return record

    # Reading ----------------------------------------------------------------
    async def get(self, task_id: UUID) -> TaskRecord | None:
        live = self._live.get(task_id)
        if live is not None:
            return live.record
        fields = await _guard(self._redis.hgetall(self._key(task_id)))
        return _record(task_id, fields) if fields else None

    async def page(
        self,
        *,
        owner: str | None,
        status: TaskStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        before = decode_cursor(cursor) if cursor is not None else None
        index = self._owner_key(owner)
        top: str = f"({before}" if before is not None else "+inf"
        found: list[tuple[int, TaskRecord]] = []
        while len(found) <= limit:
            batch: list[tuple[str, float]] = await _guard(
                self._redis.zrevrangebyscore(
                    index, top, "-inf", start=0, num=max(limit + 1, 50), withscores=True
                )
            )
            if not batch:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for member, _ in batch:
                    pipe.hgetall(f"{self._prefix}task:{member}")
                rows: list[dict[str, str]] = await _guard(pipe.execute())
            gone = []
            for (member, score), fields in zip(batch, rows, strict=True):
                if not fields:
                    gone.append(member)  # expired after TASK_RETENTION_SECONDS
                    continue
                record = _record(UUID(member), fields)
                live = self._live.get(record.id)
                record = live.record if live is not None else record
                if status is None or record.status is status:
                    found.append((int(score), record))
            if gone:
                await _guard(self._redis.zrem(index, *gone))
            top = f"({int(batch[-1][1])}"
        more = len(found) > limit
        found = found[:limit]
        return Page(
            records=[record for _, record in found],
            next_cursor=encode_cursor(found[-1][0]) if more else None,
        )

    async def wait(self, task_id: UUID) -> TaskRecord | None:
        """Until the task has finished, then its record (a client's long poll bounds
        it with a timeout). A task this replica runs is awaited; one still in the
        stream or run by another replica is re-read, 50 ms apart at first and at
        most 1 s apart, only for as long as someone waits."""
        pause = WAIT_FIRST_PAUSE_SECONDS
        while True:
            live = self._live.get(task_id)
            if live is not None and live.task is not None:
                await asyncio.wait({live.task})
            record = await self.get(task_id)
            if record is None or record.status.finished:
                return record
            await asyncio.sleep(pause)
            pause = min(pause * 2, WAIT_LAST_PAUSE_SECONDS)

    # Taking work ------------------------------------------------------------
    async def _read_loop(self) -> None:
        while self._accepting:  # cleared by stop_accepting; see BlockingReads
            await self._slots.acquire()
            if not self._accepting:  # stopped while every slot was busy
                self._slots.release()
                return
            try:
                entry = await self._next()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except RedisError as exc:
                self._slots.release()
                self._reads.lost()
                logger.warning("cannot read tasks from Redis (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)  # back-off while Redis is unreachable
                continue
            if entry is None:
                self._slots.release()
                continue
            if not self._accepting:
                # Taken during the last blocking read, after the stop: back to
                # the stream at once for another replica, not left to time out.
                self._slots.release()
                await self._give_back(*entry)
                return
            run = asyncio.create_task(self._run(*entry), name=f"task-{entry[1]}")
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)

    async def _next(self) -> tuple[str, str] | None:
        """A stale entry of a dead replica if there is one, else the next new one
        (blocking in Redis up to half the claim timeout)."""
        reads = self._reads
        await reads.ready()
        claimed: Any = await reads.client.xautoclaim(
            self._stream, GROUP, self.consumer, min_idle_time=self._claim_ms, count=1
        )
        for message_id, fields in claimed[1]:
            if fields:
                logger.info("taking over task %s from a replica that stopped", fields["task_id"])
                return message_id, fields["task_id"]
        answer: Any = await reads.client.xreadgroup(
            GROUP, self.consumer, {self._stream: ">"}, count=1, block=self._block_ms
        )
        for _, messages in answer or []:
            for message_id, fields in messages:
                return message_id, fields["task_id"]
        return None

    async def _ack(self, message_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, GROUP, message_id)
            pipe.xdel(self._stream, message_id)
            await pipe.execute()

    async def _store_finish(self, record: TaskRecord) -> str:
        """Write a final state unless the task already has one; 'ok' or the state it had."""
        result = None
        if record.result is not None:
            try:
                result = encode_compact(record.result)
            except (ValueError, TypeError) as exc:
                record.status, record.result = TaskStatus.FAILED, None
                record.error = f"the result cannot be stored as JSON: {exc}"
        answer: str = await self._finish(
            keys=[self._key(record.id)],
            args=[
                record.status.value,
                _stamp(record.finished_at),
                result or "",
                record.error or "",
                "1" if result is not None else "0",
                "1" if record.error is not None else "0",
                self._retention,
            ],
        )
        return answer

    async def _run(self, message_id: str, raw_id: str) -> None:
        live: _Live | None = None
        try:
            task_id = UUID(raw_id)
            started = await self._start(
                keys=[self._key(task_id)], args=[self.consumer, _stamp(utc_now())]
            )
            if started[0] != "run":
                # Finished already (redelivered after its result was stored but
                # before the ack), cancelled while queued, or expired: done.
                await self._ack(message_id)
                return
            deliveries, fields = int(started[1]), _pairs(started[2])
            record = _record(task_id, fields)
            problem = None
            if record.operation not in self.runners:
                problem = f"operation {record.operation!r} is not provided by this module"
            elif "payload" not in fields:
                problem = "its input was not stored, so it cannot run"
            elif deliveries > MAX_RECOVERIES + 1:
                problem = f"abandoned: replicas stopped while running it {deliveries - 1} times"
            if problem is not None:
                record.status, record.error, record.finished_at = (
                    TaskStatus.FAILED,
                    problem,
                    utc_now(),
                )
                if await self._store_finish(record) == "ok":
                    await self._notify(record)
                await self._ack(message_id)
                return
            payload = json.loads(fields["payload"])
            live = _Live(record, payload, task=asyncio.current_task())
            self._live[task_id] = live
            await self._notify(record)  # running
            renewing = asyncio.create_task(self._keep_claim(message_id))
            try:
                result, error = await execute(
                    self._pool,
                    self.runners[record.operation],
                    payload,
                    self._timeout,
                    abandon=lambda: live is not None and live.requeue,
                )
            finally:
                renewing.cancel()
            if record.status.finished:
                await self._ack(message_id)  # cancelled meanwhile on this replica
                return
            record.status = TaskStatus.SUCCEEDED if error is None else TaskStatus.FAILED
            record.result, record.error, record.finished_at = result, error, utc_now()
            stored = await self._store_finish(record)
            if stored == "ok":
                await self._notify(record)
            else:
                # Cancelled through another replica meanwhile: the stored state wins.
                self._live.pop(task_id, None)
            # Ack only once the result is stored: a crash before this line
            # redelivers the entry, and the finished state makes it a no-op.
            await self._ack(message_id)
        except asyncio.CancelledError:
            if live is not None and live.requeue:
                await self._hand_back(message_id, live.record)
            elif live is not None:
                await self._ack(message_id)  # cancelled by a caller: state already stored
            raise
        except (RedisError, ValueError) as exc:
            # Not acked: the entry is taken over after the claim timeout.
            logger.error("task entry %s could not be processed: %s", message_id, exc)
        finally:
            if live is not None:
                self._live.pop(live.record.id, None)
            self._slots.release()

    async def _keep_claim(self, message_id: str) -> None:
        """Renew the claim while the task runs, so a live replica's task is not taken over."""
        interval = self._claim_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._renew(keys=[self._stream], args=[GROUP, message_id, self.consumer])
            except RedisError as exc:
                logger.warning("could not renew the claim on %s: %s", message_id, exc)

    async def _hand_back(self, message_id: str, record: TaskRecord) -> None:
        if await self._give_back(message_id, str(record.id)):
            record.status, record.started_at = TaskStatus.QUEUED, None

    async def _give_back(self, message_id: str, task_id: str) -> bool:
        """Requeue an entry this replica holds as a new one; False if Redis refused."""
        try:
            await self._requeue(
                keys=[self._key(task_id), self._stream],
                args=[self.consumer, GROUP, message_id, task_id],
            )
        except RedisError as exc:
            logger.error("could not hand task %s back (%s): taken over later", task_id, exc)
            return False
        return True

    async def _notify(self, record: TaskRecord) -> None:
        if self._on_change is None:
            return
        try:
            await self._on_change(record)
        except Exception:
            logger.exception("task listener failed for %s (%s)", record.id, record.status)

    # Cancelling -------------------------------------------------------------
    async def cancel(self, task_id: UUID, reason: str = "cancelled") -> TaskRecord:
        live = self._live.get(task_id)
        record = live.record if live is not None else await self.get(task_id)
        if record is None:
            raise TaskNotFound(f"task {task_id} not found")
        before = record.status
        record.status, record.error, record.finished_at = TaskStatus.CANCELLED, reason, utc_now()
        answer = await _guard(self._store_finish(record))
        if answer != "ok":
            record.status = before
            if not answer:
                raise TaskNotFound(f"task {task_id} not found")
            raise TaskConflict(
                f"task {task_id} already {answer}: only queued or running tasks can be cancelled"
            )
        if live is not None and live.task is not None:
            live.task.cancel()
        await self._notify(record)
        return record

    # Shutdown ---------------------------------------------------------------
    def stop_accepting(self, grace_seconds: float) -> None:
        """Refuse new tasks and take no more from the stream; the grace starts now."""
        self._accepting = False  # the reader ends after its current read
        if self._deadline is None:
            self._grace = grace_seconds
            self._deadline = asyncio.get_running_loop().time() + grace_seconds

    async def drain(self, grace_seconds: float) -> bool:
        self.stop_accepting(grace_seconds)
        assert self._deadline is not None  # noqa: S101 - set just above
        pending = set(self._runs)
        remaining = self._deadline - asyncio.get_running_loop().time()
        if pending and remaining > 0:
            _, pending = await asyncio.wait(pending, timeout=remaining)
        return not pending

    async def shutdown(self, grace_seconds: float) -> None:
        """Drain; tasks still running after the grace go back to the stream for other replicas."""
        if not await self.drain(grace_seconds):
            leftovers = list(self._live.values())
            if leftovers:
                logger.warning(
                    "%d task(s) still running after the %g s grace (SHUTDOWN_GRACE_SECONDS): "
                    "handed back to the queue for another replica",
                    len(leftovers),
                    self._grace,
                )
            for live in leftovers:
                live.requeue = True
            runs = list(self._runs)
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
        await self._reads.stop(self._reader, "task reader")
        self._pool.shutdown(wait=False, cancel_futures=True)


EventHandler = Callable[[str, dict[str, Any], str], Awaitable[None]]


class RedisEventBus:
    """Platform events in one Redis stream: XADD to publish, a consumer group to consume."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        stream: str,
        group: str,
        claim_timeout_seconds: float,
        consumer: str | None = None,
    ) -> None:
        self._redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer or consumer_name()
        self._claim_ms = max(1, round(claim_timeout_seconds * 1000))
        self._block_ms = max(10, min(self._claim_ms // 2, 5000))
        self._reader: asyncio.Task[None] | None = None
        self._reads = BlockingReads(client, self._block_ms)
        self._stopping = False

    async def publish(self, message: Mapping[str, Any]) -> None:
        fields = {
            "type": str(message["event"]),
            "source": str(message["source"]),
            "time": str(message["time"]),
            "payload": json.dumps(message["payload"], sort_keys=True, default=str),
        }
        await _guard(
            self._redis.xadd(self.stream, fields, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
        )

    async def start(self, handler: EventHandler) -> None:
        try:
            # "$": only events published from now on (a new module does not replay history).
            await self._redis.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._reader = asyncio.create_task(self._consume(handler), name="event-reader")

    async def _consume(self, handler: EventHandler) -> None:
        while not self._stopping:  # see BlockingReads
            try:
                await self._reads.ready()
                claimed: Any = await self._reads.client.xautoclaim(
                    self.stream, self.group, self.consumer, min_idle_time=self._claim_ms, count=10
                )
                messages = [m for m in claimed[1] if m[1]]
                if not messages:
                    answer: Any = await self._reads.client.xreadgroup(
                        self.group,
                        self.consumer,
                        {self.stream: ">"},
                        count=10,
                        block=self._block_ms,
                    )
                    messages = [m for _, batch in answer or [] for m in batch]
            except RedisError as exc:
                self._reads.lost()
                logger.warning("cannot read events from Redis (%s); retrying in 1 s", exc)
                await asyncio.sleep(1)
                continue
            for message_id, fields in messages:
                if await self._handle(handler, message_id, fields):
                    await self._redis.xack(self.stream, self.group, message_id)

    async def _handle(self, handler: EventHandler, message_id: str, fields: dict[str, str]) -> bool:
        """True to acknowledge. A refused event is logged and acknowledged (retrying would
        refuse it again); NotReady leaves it pending, for another replica to take over."""
        try:
            payload = json.loads(fields.get("payload", "{}"))
            if not isinstance(payload, dict):
                raise ValueError("payload is not a JSON object")
            await handler(fields.get("type", ""), payload, fields.get("source", "unknown"))
        except NotReady:
            return False
        except (ModuleError, ValueError) as exc:
            logger.warning("event %s (%s) refused: %s", message_id, fields.get("type"), exc)
        except RedisError:
            return False
        return True

    async def stop(self) -> None:
        """Stop consuming: the batch in hand is handled (and acknowledged) first."""
        self._stopping = True
        await self._reads.stop(self._reader, "event reader")
