"""The SQLite files the module keeps (tasks; Lift OS memories): how they are opened.

WAL lets readers and the writer overlap; ``synchronous=FULL`` makes a commit
durable before the caller is told it happened. Each file's schema is versioned
with ``PRAGMA user_version`` and migrated step by step, in one transaction, so a
failed migration leaves the file as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path


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
