"""The SQLite files the module keeps (tasks; Lift OS memories): how they are opened and used.

WAL lets readers and the writer overlap; ``synchronous=FULL`` makes a commit
durable before the caller is told it happened. Each file's schema is versioned
with ``PRAGMA user_version`` and migrated step by step, in one transaction, so a
failed migration leaves the file as it was. A store (``SqliteStore``) uses its one
connection from one dedicated thread: the event loop never waits on disk.

Writes (``_write``) are group-committed: every write issued in the same pass of
the event loop, or while the thread is busy, joins the next transaction, so a
burst of N writes costs one commit (one fsync) instead of N, and each caller
still returns only once its write is durable. The thread is handed a batch at
the end of the loop's pass, not at its first write: handed it at once, it woke
mid-pass, took the GIL from the loop and committed about three writes at a
time (a thread switch per three task submissions under load; submissions ran
11 % faster with the batch handed over at the end, in alternating runs).
Writes apply in the order they were issued. Other work (``_call``) runs
between batches, so it may run before a write issued just ahead of it that has
not been committed yet; a caller that needs its own write first awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import NotReady, StartupError

T = TypeVar("T")
# A write queued for the next group commit, and the future its caller awaits.
_Write = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
# What the thread hands back per write: (future, value, error).
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _OneWriteFailed(Exception):
    """A write of a batch run without savepoints raised: run the batch again with them."""


def open_database(path: Path, steps: Mapping[int, str]) -> sqlite3.Connection:
    """Open (or create) ``path``, migrated to its newest version: ``steps[v]`` is the SQL
    that brings version v-1 to v. Raises sqlite3.Error (or OSError) when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)  # explicit transactions
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode unavailable (journal_mode={mode})")
        db.execute("PRAGMA synchronous = FULL")
        _migrate(db, steps)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, steps: Mapping[int, str]) -> None:
    newest = max(steps)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > newest:
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this module's ({newest}); "
            "it was written by a newer release"
        )
    if version == newest:
        return
    script = "".join(steps[v] for v in range(version + 1, newest + 1))
    try:
        db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {newest};\nCOMMIT;")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class SqliteStore:
    """One SQLite file, used only from its own thread: reads through ``_call``,
    writes through ``_write`` (group-committed).

    Subclasses name themselves (``what``), the 503 error callers get when the file
    cannot serve (``unavailable``), the failures that mean that (``failures``), and
    their schema (``migrations``).
    """

    what: ClassVar[str]
    unavailable: ClassVar[type[NotReady]]
    failures: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)
    migrations: ClassVar[Mapping[int, str]]

    def __init__(self, path: Path, *, thread_name: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._batch: list[_Write] = []
        self._batch_lock = threading.Lock()  # the batch is filled by the loop, taken by the thread
        self._flushing = False  # a flush is queued or running and will take what is added
        self._handing: asyncio.Handle | None = None  # hands the batch over at the pass's end
        # The loop the store was opened on, kept for _write: Python 3.11's
        # asyncio.get_running_loop() makes a getpid() system call every time (to notice
        # a fork), and under a submission flood those calls here and in the audit log
        # were 6 % of the event loop's time on this VM (py-spy --native).
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            # Submitted synchronously: calls reach the thread in the order they were made.
            future = loop.run_in_executor(self._thread, function, *args)
        except RuntimeError as exc:  # the thread is shut down: the store was closed
            raise self.unavailable(f"{self.what} {self.path} is closed") from exc
        try:
            return await future
        except self.failures as exc:
            raise self.unavailable(f"{self.what} {self.path} failed: {exc}") from exc

    async def _write(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` in the store's thread inside a transaction shared with
        the other writes issued meanwhile; returns once that transaction is committed.

        ``function`` must not begin or end a transaction itself. If it raises, only its
        own changes are rolled back (a savepoint) and only its caller sees the error.
        """
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._batch_lock:
            self._batch.append((function, args, future))
            start, self._flushing = not self._flushing, True
        if start:
            self._handing = loop.call_soon(self._hand_over, loop)
        try:
            return await future
        except self.failures as exc:
            raise self.unavailable(f"{self.what} {self.path} failed: {exc}") from exc

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, after the writes of a pass were issued: start the thread's flush."""
        self._handing = None
        _deliver(self._queue_flush(loop))

    def _queue_flush(self, loop: asyncio.AbstractEventLoop) -> list[_Outcome]:
        """Queue a flush of the waiting batch in the store's thread. If the thread is
        shut down (the store was closed), the batch's writes will never run: they are
        taken out and returned as failed, for the caller to deliver."""
        try:
            self._thread.submit(self._flush, loop)
        except RuntimeError:
            with self._batch_lock:
                batch, self._batch = self._batch, []
                self._flushing = False
            closed = self.unavailable(f"{self.what} {self.path} is closed")
            return [(future, None, closed) for _, _, future in batch]
        return []

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the store's thread: commit the waiting batch. Writes that arrive meanwhile
        form the next batch, queued behind any read issued meanwhile, so a steady
        stream of writes cannot hold reads back."""
        with self._batch_lock:
            batch, self._batch = self._batch, []
        outcomes = self._commit(batch)
        with self._batch_lock:
            more = bool(self._batch)
            self._flushing = more
        if more:
            outcomes += self._queue_flush(loop)  # the writes that arrived meanwhile
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(_deliver, outcomes)

    def _commit(self, batch: list[_Write]) -> list[_Outcome]:
        """Commit the batch in one transaction, each write failing alone.

        Tried first without a savepoint per write: two statements fewer each, 4 % of
        a task's instructions (three writes a task). When a write raises, that
        transaction is rolled back and the batch runs again with a savepoint around
        each write, so only the failed one is undone and only its caller sees it.
        """
        try:
            try:
                return self._run_batch(batch, isolated=False)
            except _OneWriteFailed:  # rolled back: again, each write on its own
                return self._run_batch(batch, isolated=True)
        except Exception as exc:  # nothing of the batch was committed
            return [(future, None, exc) for _, _, future in batch]

    def _run_batch(self, batch: list[_Write], *, isolated: bool) -> list[_Outcome]:
        """The batch's writes in one transaction. Not ``isolated``, a write that raises
        rolls the whole transaction back (_OneWriteFailed)."""
        outcomes: list[_Outcome] = []
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            for function, args, future in batch:
                # Read across threads, but only ever set to true by the loop: at
                # worst a write whose caller gave up is applied anyway, as before.
                if future.cancelled():
                    continue
                if isolated:
                    db.execute("SAVEPOINT one_write")
                try:
                    value = function(*args)
                except Exception as exc:
                    if not isolated:
                        raise _OneWriteFailed from exc  # rolled back below
                    db.execute("ROLLBACK TO one_write")
                    outcomes.append((future, None, exc))
                else:
                    outcomes.append((future, value, None))
                if isolated:
                    db.execute("RELEASE one_write")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcomes

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise self.unavailable(f"{self.what} {self.path} is not open")
        return self._db

    async def open(self) -> None:
        """Open (or create and migrate) the file; StartupError, with the reason, when it cannot."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._loop.run_in_executor(self._thread, self._open)
        except (sqlite3.Error, OSError) as exc:
            raise StartupError(
                f"cannot open {self.what} {self.path}{self._where()}: {exc}"
            ) from exc

    def _where(self) -> str:
        """Which setting places the file, for the message when it cannot be opened."""
        return ""

    def _open(self) -> None:
        self._db = open_database(self.path, self.migrations)

    async def close(self) -> None:
        if self._handing is not None:  # writes issued before close are committed before it
            self._handing.cancel()
            self._hand_over(asyncio.get_running_loop())
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)
        self._loop = None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _deliver(outcomes: list[_Outcome]) -> None:
    """On the event loop: hand each writer its outcome (callers may have gone)."""
    for future, value, error in outcomes:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
