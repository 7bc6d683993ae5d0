"""Durable task records: one SQLite file in DATA_DIR (stdlib ``sqlite3``).

Every accepted task is written here as ``queued`` before its 202 answer leaves,
with the validated input its processor needs, so a restart (or a crash) loses
nothing that was accepted: the next start resumes whatever is still queued or
was running. Finished tasks keep their result or error for
TASK_RETENTION_SECONDS: reads stop returning them at once, and the next write
deletes them (at most once a minute; there is no clean-up loop). Their input is
dropped as soon as they finish.

One connection, used only from one dedicated worker thread: the event loop
never blocks on disk, and writes apply in the order they were issued. WAL mode
lets readers and the writer overlap; ``synchronous=FULL`` makes a commit
durable before the caller is told the task was accepted. Writes issued together
share one commit (sqlite.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from .errors import NotReady, RequestRejected
from .settings import env_name
from .sqlite import SqliteStore
from .tasks import TaskRecord, TaskStatus

T = TypeVar("T")

# Task inputs and results as stored; one encoder, where json.dumps with options
# would build a new one per call.
encode_compact = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


_SCHEMA_V1 = """
CREATE TABLE tasks (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: paging, resume order
    id          TEXT NOT NULL UNIQUE,
    operation   TEXT NOT NULL,
    owner       TEXT,                               -- the JWT subject; NULL without auth
    status      TEXT NOT NULL CHECK (status IN
                    ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at  REAL NOT NULL,                      -- Unix seconds, UTC
    started_at  REAL,
    finished_at REAL,
    payload     TEXT,                               -- processor input (JSON) until finished
    result      TEXT,                               -- JSON
    error       TEXT,
    recoveries  INTEGER NOT NULL DEFAULT 0          -- restarts that found it running
);
CREATE INDEX tasks_owner ON tasks (owner, seq);
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_unfinished ON tasks (status) WHERE status IN ('queued', 'running');
"""

# Version -> the SQL that brings the previous version to it; add one to change the schema.
_MIGRATIONS = {1: _SCHEMA_V1}
SCHEMA_VERSION = max(_MIGRATIONS)

_COLUMNS = "seq, id, operation, owner, status, created_at, started_at, finished_at, result, error"
_UNFINISHED = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
_KEPT = "(finished_at IS NULL OR finished_at > ?)"  # not past retention (parameter: cutoff)
PRUNE_EVERY_SECONDS = 60.0


class StoreUnavailable(NotReady):
    """The task database cannot be written (disk full, I/O error): 503, retry later."""


@dataclass(frozen=True)
class Recovered:
    """An unfinished task found at start-up, with what it needs to run again."""

    record: TaskRecord
    payload: dict[str, Any] | None
    recoveries: int


@dataclass(frozen=True)
class Page:
    records: list[TaskRecord]
    next_cursor: str | None


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _moment(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _record(row: sqlite3.Row) -> TaskRecord:
    created = _moment(row["created_at"])
    assert created is not None  # noqa: S101 - NOT NULL column
    return TaskRecord(
        operation=row["operation"],
        owner=row["owner"],
        id=UUID(row["id"]),
        status=TaskStatus(row["status"]),
        created_at=created,
        started_at=_moment(row["started_at"]),
        finished_at=_moment(row["finished_at"]),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=row["error"],
    )


_MAX_SEQ = 2**63 - 1  # SQLite's largest INTEGER: a larger one cannot even be compared


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"t1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor stands for; 422 for anything this module did not issue."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        seq = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        seq = 0
        prefix = ""
    if prefix != "t1" or not 1 <= seq <= _MAX_SEQ:
        raise RequestRejected("cursor is not one this module issued: use next_cursor as given")
    return seq


class TaskStore(SqliteStore):
    """Task rows in ``path``; all methods are coroutines run in the store's own thread."""

    what = "the task store"
    unavailable = StoreUnavailable
    migrations = _MIGRATIONS

    def __init__(
        self,
        path: Path,
        *,
        retention_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, thread_name="task-store")
        self._retention = retention_seconds
        self._clock = clock  # wall clock: retention must hold across restarts
        self._pruned_at: float | None = None

    def _where(self) -> str:
        return f" ({env_name('data_dir')})"

    # Writes -----------------------------------------------------------------
    async def insert(self, record: TaskRecord, payload: dict[str, Any]) -> None:
        row = (
            str(record.id),
            record.operation,
            record.owner,
            record.status.value,
            _epoch(record.created_at),
        )
        await self._write(self._insert, row, payload)

    def _insert(self, row: tuple[Any, ...], payload: dict[str, Any]) -> None:
        # JSON encoding happens here, off the event loop (inputs can be large).
        encoded = encode_compact(payload)
        self._prune()
        self._conn.execute(
            "INSERT INTO tasks (id, operation, owner, status, created_at, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (*row, encoded),
        )

    async def update(self, record: TaskRecord) -> None:
        """Store the record's current status, times, result and error.

        The fields are read now, on the event loop, so a later transition
        cannot leak into this write (a result is never changed once set).
        Raises ValueError if the result cannot be stored as JSON.
        """
        row = (
            record.status.value,
            _epoch(record.started_at),
            _epoch(record.finished_at),
            record.error,
            int(record.status.finished),
            str(record.id),
        )
        await self._write(self._update, row, record.result)

    def _update(self, row: tuple[Any, ...], result: dict[str, Any] | None) -> None:
        encoded = None
        if result is not None:
            encoded = encode_compact(result)
        # A finished task will not run again: its input is dropped at once.
        self._conn.execute(
            "UPDATE tasks SET status = ?, started_at = ?, finished_at = ?, error = ?, "
            "payload = CASE WHEN ? THEN NULL ELSE payload END, result = ? WHERE id = ?",
            (*row[:5], encoded, row[5]),
        )

    async def recover(self) -> list[Recovered]:
        """Unfinished tasks, oldest first; ones left ``running`` are put back to ``queued``."""
        return await self._call(self._recover)

    def _recover(self) -> list[Recovered]:
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            # Left running means the process stopped without a graceful drain.
            db.execute(
                "UPDATE tasks SET status = 'queued', started_at = NULL, "
                "recoveries = recoveries + 1 WHERE status = 'running'"
            )
            rows = db.execute(
                f"SELECT {_COLUMNS}, payload, recoveries FROM tasks "  # noqa: S608 - constant
                "WHERE status IN (?, ?) ORDER BY seq",
                _UNFINISHED,
            ).fetchall()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [
            Recovered(
                record=_record(row),
                payload=json.loads(row["payload"]) if row["payload"] is not None else None,
                recoveries=row["recoveries"],
            )
            for row in rows
        ]

    def _prune(self) -> None:
        """Delete tasks past retention, at most once every PRUNE_EVERY_SECONDS (in a write)."""
        now = self._clock()
        last = self._pruned_at
        if last is not None and last <= now < last + PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        self._conn.execute(
            "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at <= ?",
            (now - self._retention,),
        )

    # Reads ------------------------------------------------------------------
    def _cutoff(self) -> float:
        """Tasks that finished at or before this moment are past retention: never returned."""
        return self._clock() - self._retention

    async def get(self, task_id: UUID) -> TaskRecord | None:
        return await self._call(self._get, str(task_id))

    def _get(self, task_id: str) -> TaskRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE id = ? AND {_KEPT}",  # noqa: S608 - constant
            (task_id, self._cutoff()),
        ).fetchone()
        return _record(row) if row is not None else None

    async def page(
        self,
        *,
        owner: str | None,
        status: TaskStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        """Tasks owned by ``owner`` (``None``: tasks submitted without a subject), newest first."""
        before = decode_cursor(cursor) if cursor is not None else None
        return await self._call(self._page, owner, status, limit, before)

    def _page(
        self, owner: str | None, status: TaskStatus | None, limit: int, before: int | None
    ) -> Page:
        clauses: list[str] = ["owner IS ?", _KEPT]
        params: list[Any] = [owner, self._cutoff()]
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if before is not None:
            clauses.append("seq < ?")
            params.append(before)
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE {' AND '.join(clauses)} "  # noqa: S608 - constant clauses
            "ORDER BY seq DESC LIMIT ?",
            (*params, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(
            records=[_record(row) for row in rows],
            next_cursor=encode_cursor(rows[-1]["seq"]) if more else None,
        )

    async def counts(self) -> dict[str, int]:
        """Stored tasks within retention, by status (for operators and tests)."""
        return await self._call(self._counts)

    def _counts(self) -> dict[str, int]:
        rows = self._conn.execute(
            f"SELECT status, count(*) FROM tasks WHERE {_KEPT} GROUP BY status",  # noqa: S608 - constant
            (self._cutoff(),),
        )
        return {str(status): int(count) for status, count in rows}
