"""How far audit forwarding got, and reading the audit file from there.

Apart from forwarding.py so that ``audit verify`` reads the cursor without
importing the HTTP client (every CLI run pays for its imports).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .audit import GENESIS_HASH, TAIL_BYTES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cursor:
    """The last record the service confirmed: 0-based index, its hash, the byte offset after it."""

    index: int = -1
    hash: str = GENESIS_HASH
    offset: int = 0


def load_cursor(path: Path) -> Cursor | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Cursor(index=int(data["index"]), hash=str(data["hash"]), offset=int(data["offset"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("audit forwarding cursor %s is unreadable (%s); starting over", path, exc)
        return None


def save_cursor(path: Path, cursor: Cursor) -> None:
    """Write atomically: a crash leaves the old cursor or the new one, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(asdict(cursor)), encoding="utf-8")
    os.replace(temporary, path)


def line_hash(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("hash"), str):
        return str(record["hash"])
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def cursor_matches(path: Path, cursor: Cursor) -> bool:
    """Does the file still end its confirmed part with the record the cursor names?"""
    if cursor.offset == 0:
        return cursor.index == -1 and cursor.hash == GENESIS_HASH
    if not path.exists() or path.stat().st_size < cursor.offset:
        return False
    with path.open("rb") as handle:
        start = max(0, cursor.offset - TAIL_BYTES)
        handle.seek(start)
        chunk = handle.read(cursor.offset - start)
    if not chunk.endswith(b"\n"):
        return False
    last = chunk[:-1].rsplit(b"\n", 1)[-1]
    return line_hash(last.decode("utf-8", errors="replace")) == cursor.hash


def read_lines(path: Path, offset: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` complete lines from ``offset``, each with its own offset.

    A last line without its newline is still being written: it is left for later.
    """
    lines: list[tuple[int, str]] = []
    if not path.exists():
        return lines
    with path.open("rb") as handle:
        handle.seek(offset)
        position = offset
        for raw in handle:
            if not raw.endswith(b"\n") or len(lines) >= limit:
                break
            lines.append((position, raw.decode("utf-8", errors="replace")))
            position += len(raw)
    return lines
