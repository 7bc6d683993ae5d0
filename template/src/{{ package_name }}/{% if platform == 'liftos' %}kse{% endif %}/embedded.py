"""The embedded memory backend: SQLite with FTS5, in one file (``config.database``).

One connection, used only from one dedicated worker thread, as in the task
store: the event loop never waits on disk and writes apply in call order. WAL
lets readers and the writer overlap; ``synchronous=FULL`` makes a stored memory
durable before the caller hears it was stored. The schema is versioned with
``PRAGMA user_version``.

A memory is one row of ``memories`` (UNIQUE per organisation and key: storing
a key again updates it in place) plus one row of the FTS5 table
``memories_fts`` (its key, its value flattened to words, its tags and type),
kept in step in the same transaction. Keyword search ranks by bm25. Semantic
search needs an Embedder: each memory's text is embedded when stored, and a
query is compared by cosine similarity with every candidate that passes the
filters (a linear scan, fine for one module's memories; the memory service is
the answer for more).

Expired memories are invisible at once and deleted by cleanup_expired().
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import heapq
import itertools
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ..errors import RequestRejected, StartupError
from ..ids import new_uuid4
from ..sqlite import SqliteStore
from .config import KseConfig
from .embedding import NO_EMBEDDER_REASON, checked_vectors, dot, pack, unit, unpack
from .errors import MemoryUnavailable
from .store import (
    ArchiveReport,
    Criteria,
    Hit,
    MemoryDraft,
    MemoryRecord,
    SemanticStatus,
    StoreOutcome,
    moment,
)
from .text import flatten_value, fts_expression, memory_text

T = TypeVar("T")


_SCHEMA_V1 = """
CREATE TABLE memories (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- also the FTS rowid
    memory_id   TEXT NOT NULL UNIQUE,
    org_id      TEXT NOT NULL,
    user_id     TEXT,
    key         TEXT NOT NULL,
    type        TEXT NOT NULL,
    module      TEXT NOT NULL,
    version     TEXT NOT NULL,
    index_name  TEXT NOT NULL,
    tags        TEXT NOT NULL,                      -- JSON array of strings
    value       TEXT NOT NULL,                      -- JSON object
    created_at  REAL NOT NULL,                      -- Unix seconds, UTC
    updated_at  REAL NOT NULL,
    indexed_at  REAL NOT NULL,
    expires_at  REAL,                               -- NULL: never
    embedding   BLOB,                               -- unit vector, little-endian float32
    UNIQUE (org_id, key)
);
CREATE INDEX memories_user ON memories (org_id, user_id, created_at);
CREATE INDEX memories_created ON memories (created_at);
CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE VIRTUAL TABLE memories_fts USING fts5(
    key, body, tags, type, tokenize = 'unicode61 remove_diacritics 2'
);
"""

# Version -> the SQL that brings the previous version to it; add one to change the schema.
_MIGRATIONS = {1: _SCHEMA_V1}
SCHEMA_VERSION = max(_MIGRATIONS)

_COLUMNS = (
    "m.memory_id, m.org_id, m.user_id, m.key, m.type, m.module, m.version, m.index_name, "
    "m.tags, m.value, m.created_at, m.updated_at, m.indexed_at, m.expires_at"
)
# Column weights (key, body, tags, type): a word in the key says most about a memory.
_BM25 = "bm25(memories_fts, 4.0, 1.0, 2.0, 1.0)"
# Plain-text markers: highlights are shown to people, and HTML markers would
# make a stored "<script>" part of the markup.
HIGHLIGHT_OPEN = "**"
HIGHLIGHT_CLOSE = "**"
_SNIPPET_TOKENS = 16
# Semantic search compares the query with at most this many newest candidates.
SEMANTIC_SCAN_LIMIT = 20_000
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def fts5_available() -> bool:
    """Whether this Python's SQLite was built with FTS5."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text)")
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


def _record(row: sqlite3.Row) -> MemoryRecord:
    return MemoryRecord(
        memory_id=row["memory_id"],
        key=row["key"],
        value=json.loads(row["value"]),
        memory_type=row["type"],
        module=row["module"],
        version=row["version"],
        index=row["index_name"],
        tags=tuple(json.loads(row["tags"])),
        org_id=row["org_id"],
        user_id=row["user_id"],
        created_at=moment(row["created_at"]),
        updated_at=moment(row["updated_at"]),
        indexed_at=moment(row["indexed_at"]),
        expires_at=moment(row["expires_at"]),
    )


def _where(criteria: Criteria, now: float) -> tuple[str, list[Any]]:
    """SQL conditions on ``memories AS m``: always the organisation, never the expired."""
    clauses = ["m.org_id = ?", "(m.expires_at IS NULL OR m.expires_at > ?)"]
    params: list[Any] = [criteria.org_id, now]
    if criteria.user_id is not None:
        clauses.append("m.user_id = ?")
        params.append(criteria.user_id)
    if criteria.types:
        clauses.append(f"m.type IN ({', '.join('?' * len(criteria.types))})")
        params.extend(criteria.types)
    if criteria.module is not None:
        clauses.append("m.module = ?")
        params.append(criteria.module)
    for tag in criteria.tags:
        clauses.append("EXISTS (SELECT 1 FROM json_each(m.tags) AS t WHERE t.value = ?)")
        params.append(tag)
    if criteria.created_after is not None:
        clauses.append("m.created_at >= ?")
        params.append(criteria.created_after.timestamp())
    if criteria.created_before is not None:
        clauses.append("m.created_at < ?")
        params.append(criteria.created_before.timestamp())
    return " AND ".join(clauses), params


def _delete(db: sqlite3.Connection, where: str, params: list[Any]) -> int:
    """Delete the memories matching ``where`` (on ``memories AS m``) and their FTS rows."""
    chosen = f"SELECT m.seq FROM memories AS m WHERE {where}"  # noqa: S608 - constant clauses
    db.execute(f"DELETE FROM memories_fts WHERE rowid IN ({chosen})", params)  # noqa: S608
    return db.execute(f"DELETE FROM memories WHERE seq IN ({chosen})", params).rowcount  # noqa: S608


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EmbeddedStore(SqliteStore):
    """MemoryStore on a local SQLite file; all work runs in the store's own thread."""

    kind = "embedded"
    what = "the memory store"
    unavailable = MemoryUnavailable
    failures = (sqlite3.Error, OSError)  # disk trouble, in the database or an archive
    migrations = _MIGRATIONS

    def __init__(self, config: KseConfig) -> None:
        super().__init__(config.database, thread_name="kse-store")
        self.archive_dir = config.archive_dir
        self._clock = config.clock
        self._embedder = config.embedder
        # Embedding is slow CPU work: its own thread keeps the store's thread free
        # for reads and writes meanwhile (and one thread suits models that are
        # not thread-safe).
        self._embed_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="kse-embed")
            if self._embedder is not None
            else None
        )

    @property
    def semantic(self) -> SemanticStatus:
        if self._embedder is None:
            return SemanticStatus(available=False, reason=NO_EMBEDDER_REASON)
        return SemanticStatus(available=True)

    # Lifecycle --------------------------------------------------------------
    def _open(self) -> None:
        if not fts5_available():
            raise StartupError(
                f"the embedded memory store needs SQLite's FTS5, which this Python's SQLite "
                f"{sqlite3.sqlite_version} lacks: use a Python whose SQLite has FTS5, or set "
                "MEMORY_SERVICE_URL to use the memory service"
            )
        super()._open()

    async def close(self) -> None:
        await super().close()
        if self._embed_thread is not None:
            self._embed_thread.shutdown(wait=True)

    async def check(self) -> None:
        await self._call(self._check)

    def _check(self) -> None:
        self._conn.execute("SELECT 1 FROM memories LIMIT 1").fetchall()

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    # Embedding --------------------------------------------------------------
    async def _embed(self, text: str) -> list[float] | None:
        """``text``'s unit vector (None for a zero vector), computed in the embedding thread."""
        embedder, thread = self._embedder, self._embed_thread
        if embedder is None or thread is None:
            raise RequestRejected(f"semantic search is unavailable: {NO_EMBEDDER_REASON}")
        try:
            future = asyncio.get_running_loop().run_in_executor(thread, embedder.embed, [text])
        except RuntimeError as exc:
            raise MemoryUnavailable(f"the memory store {self.path} is closed") from exc
        try:
            vectors = checked_vectors(await future, 1)
        except Exception as exc:  # a plug-in: whatever it raises is a server-side failure
            raise MemoryUnavailable(f"the embedder failed: {type(exc).__name__}: {exc}") from exc
        return unit(vectors[0])

    # Writes -----------------------------------------------------------------
    async def store(self, draft: MemoryDraft) -> StoreOutcome:
        vector = None
        if self._embedder is not None:
            vector = await self._embed(memory_text(draft.key, draft.value))
        # Group-committed (sqlite.py): a burst of stores shares one commit.
        return await self._write(self._store, draft, vector)

    def _store(self, draft: MemoryDraft, vector: list[float] | None) -> StoreOutcome:
        # Encoding happens here, off the event loop (values can be large).
        value = json.dumps(draft.value, allow_nan=False, separators=(",", ":"))
        tags = json.dumps(list(draft.tags))
        body = flatten_value(draft.value)
        blob = pack(vector) if vector is not None else None
        now = self._clock()
        expires = now + draft.ttl_seconds if draft.ttl_seconds is not None else None
        fields = (
            draft.user_id,
            draft.memory_type,
            draft.module,
            draft.version,
            draft.index,
            tags,
            value,
            now,
            now,
            expires,
            blob,
        )

        def write(db: sqlite3.Connection) -> tuple[int, str, float, bool]:
            row = db.execute(
                "SELECT seq, memory_id, created_at, expires_at FROM memories "
                "WHERE org_id = ? AND key = ?",
                (draft.org_id, draft.key),
            ).fetchone()
            if row is not None and row["expires_at"] is not None and row["expires_at"] <= now:
                # Expired is gone: the key starts a new memory rather than reviving the old one.
                _delete(db, "m.seq = ?", [row["seq"]])
                row = None
            if row is None:
                memory_id = str(new_uuid4())
                cursor = db.execute(
                    "INSERT INTO memories (memory_id, org_id, key, created_at, user_id, type, "
                    "module, version, index_name, tags, value, updated_at, indexed_at, "
                    "expires_at, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (memory_id, draft.org_id, draft.key, now, *fields),
                )
                seq = cursor.lastrowid
                assert seq is not None  # noqa: S101 - an INSERT always sets it
                created = (seq, memory_id, now, True)
            else:
                seq = row["seq"]
                db.execute(
                    "UPDATE memories SET user_id = ?, type = ?, module = ?, version = ?, "
                    "index_name = ?, tags = ?, value = ?, updated_at = ?, indexed_at = ?, "
                    "expires_at = ?, embedding = ? WHERE seq = ?",
                    (*fields, seq),
                )
                db.execute("DELETE FROM memories_fts WHERE rowid = ?", (seq,))
                created = (seq, row["memory_id"], row["created_at"], False)
            db.execute(
                "INSERT INTO memories_fts (rowid, key, body, tags, type) VALUES (?, ?, ?, ?, ?)",
                (seq, draft.key, body, " ".join(draft.tags), draft.memory_type),
            )
            return created

        _, memory_id, created_at, created = write(self._conn)  # inside _write's transaction
        record = draft.stored(memory_id, created_at=created_at, stored_at=now, expires_at=expires)
        return StoreOutcome(record=record, created=created)

    async def cleanup_expired(self) -> int:
        return await self._call(self._cleanup_expired)

    def _cleanup_expired(self) -> int:
        now = self._clock()
        return self._transaction(
            lambda db: _delete(db, "m.expires_at IS NOT NULL AND m.expires_at <= ?", [now])
        )

    async def archive(self, before: datetime, org_id: str | None) -> ArchiveReport:
        return await self._call(self._archive, before.timestamp(), org_id)

    def _archive(self, cutoff: float, org_id: str | None) -> ArchiveReport:
        """Write the chosen memories to a gzip JSON-lines file, then delete them.

        The rows are selected, written and deleted under one write transaction,
        so exactly the rows in the file are deleted. The file is complete and
        synced under its final name before the deletion commits; if anything
        fails, the transaction rolls back and the file is removed, so a memory
        is never lost and never left half-archived. Expired memories are not
        archived: their time-to-live was a promise to forget them.
        """
        now = self._clock()
        where = "m.created_at < ? AND (m.expires_at IS NULL OR m.expires_at > ?)"
        params: list[Any] = [cutoff, now]
        if org_id is not None:
            where += " AND m.org_id = ?"
            params.append(org_id)
        files: list[Path] = []

        def move(db: sqlite3.Connection) -> ArchiveReport:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM memories AS m WHERE {where} ORDER BY m.seq",  # noqa: S608
                params,
            )
            first = rows.fetchone()
            if first is None:
                return ArchiveReport(archived=0, file=None)
            self.archive_dir.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".archive-", suffix=".tmp", dir=self.archive_dir)
            files.append(Path(temp))
            written = 0
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb") as archive:
                    for row in itertools.chain([first], rows):
                        record = _record(row)
                        line = {
                            "memory_id": record.memory_id,
                            "key": record.key,
                            "value": record.value,
                            "metadata": record.metadata(),
                            "context": record.context(),
                        }
                        archive.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                        written += 1
                raw.flush()
                os.fsync(raw.fileno())
            target = self.archive_dir / self._archive_name(now, org_id)
            os.replace(temp, target)
            files[-1] = target
            _fsync_directory(self.archive_dir)
            deleted = _delete(db, where, params)
            if deleted != written:  # cannot happen under the write lock; refuse if it does
                raise sqlite3.DatabaseError(f"archived {written} memories but matched {deleted}")
            return ArchiveReport(archived=written, file=target)

        try:
            return self._transaction(move)
        except BaseException:
            for path in files:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise

    @staticmethod
    def _archive_name(now: float, org_id: str | None) -> str:
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        scope = "all" if org_id is None else "org-" + _UNSAFE_IN_NAME.sub("_", org_id)[:64]
        return f"memories-{stamp}-{scope}-{new_uuid4().hex[:8]}.jsonl.gz"

    # Reads ------------------------------------------------------------------
    async def keyword_search(
        self, criteria: Criteria, query: str, limit: int, *, highlights: bool
    ) -> list[Hit]:
        expression = fts_expression(query)  # on the loop: a 422 needs no trip to the thread
        return await self._call(self._keyword_search, criteria, expression, limit, highlights)

    def _keyword_search(
        self, criteria: Criteria, expression: str, limit: int, highlights: bool
    ) -> list[Hit]:
        where, params = _where(criteria, self._clock())
        snippet = "snippet(memories_fts, -1, ?, ?, ?, ?)" if highlights else "NULL"
        marks: list[Any] = (
            [HIGHLIGHT_OPEN, HIGHLIGHT_CLOSE, "…", _SNIPPET_TOKENS] if highlights else []
        )
        rows = self._conn.execute(
            f"SELECT {_COLUMNS}, {_BM25} AS bm, {snippet} AS snip "  # noqa: S608 - constant clauses
            "FROM memories_fts JOIN memories AS m ON m.seq = memories_fts.rowid "
            f"WHERE memories_fts MATCH ? AND {where} ORDER BY bm LIMIT ?",
            (*marks, expression, *params, limit),
        ).fetchall()
        # bm25 is lower-is-better (negative); the score is its negation.
        return [
            Hit(
                record=_record(row),
                score=-row["bm"],
                highlights=(row["snip"],) if row["snip"] else (),
            )
            for row in rows
        ]

    async def semantic_search(self, criteria: Criteria, query: str, limit: int) -> list[Hit]:
        vector = await self._embed(query)
        if vector is None:  # a zero vector is similar to nothing
            return []
        return await self._call(self._semantic_search, criteria, vector, limit)

    def _semantic_search(self, criteria: Criteria, vector: list[float], limit: int) -> list[Hit]:
        where, params = _where(criteria, self._clock())
        rows = self._conn.execute(
            f"SELECT {_COLUMNS}, m.embedding FROM memories AS m "  # noqa: S608 - constant clauses
            f"WHERE m.embedding IS NOT NULL AND {where} "
            "ORDER BY m.created_at DESC, m.seq DESC LIMIT ?",
            (*params, SEMANTIC_SCAN_LIMIT),
        )
        scored: list[tuple[float, sqlite3.Row]] = []
        for row in rows:
            stored = unpack(row["embedding"])
            if len(stored) != len(vector):  # embedded by another embedder: not comparable
                continue
            similarity = dot(vector, stored)
            if similarity > 0:  # orthogonal or opposite: unrelated, not a weak match
                scored.append((similarity, row))
        best = heapq.nlargest(limit, scored, key=lambda pair: pair[0])
        return [Hit(record=_record(row), score=score) for score, row in best]

    async def recent(self, criteria: Criteria, limit: int) -> list[MemoryRecord]:
        return await self._call(self._recent, criteria, limit)

    def _recent(self, criteria: Criteria, limit: int) -> list[MemoryRecord]:
        where, params = _where(criteria, self._clock())
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM memories AS m WHERE {where} "  # noqa: S608 - constant clauses
            "ORDER BY m.created_at DESC, m.seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_record(row) for row in rows]
