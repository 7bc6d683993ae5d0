"""What a memory backend is: the MemoryStore protocol and the values it exchanges.

Two backends implement it: EmbeddedStore (SQLite + FTS5 in one file, the
default) and RemoteStore (the platform's memory service over HTTP). The
service (service.py) enforces module.json's rules and tenancy before a backend
is called; backends still filter by organisation on every read, so a bug above
them cannot leak another organisation's memories.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .models import ContextView, MetadataView


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@dataclass(frozen=True)
class SemanticStatus:
    """Whether semantic search can run on this backend and, if not, why."""

    available: bool
    reason: str | None = None


@dataclass(frozen=True)
class MemoryDraft:
    """A memory to store, already checked and tagged by the service."""

    key: str
    value: dict[str, Any]
    memory_type: str
    module: str
    version: str
    index: str
    tags: tuple[str, ...]
    org_id: str
    user_id: str | None
    ttl_seconds: int | None = None

    def stored(
        self,
        memory_id: str,
        *,
        created_at: float | None,
        stored_at: float,
        expires_at: float | None,
    ) -> MemoryRecord:
        """The record of this draft once stored (Unix seconds; created_at None: unknown)."""
        return MemoryRecord(
            memory_id=memory_id,
            key=self.key,
            value=self.value,
            memory_type=self.memory_type,
            module=self.module,
            version=self.version,
            index=self.index,
            tags=self.tags,
            org_id=self.org_id,
            user_id=self.user_id,
            created_at=moment(created_at),
            updated_at=moment(stored_at),
            indexed_at=moment(stored_at),
            expires_at=moment(expires_at),
        )


@dataclass(frozen=True)
class MemoryRecord:
    """A stored memory as a backend returns it (times are UTC; unknown ones None)."""

    memory_id: str
    key: str
    value: dict[str, Any]
    memory_type: str
    module: str
    version: str
    index: str
    tags: tuple[str, ...]
    org_id: str
    user_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    indexed_at: datetime | None
    expires_at: datetime | None

    def metadata(self) -> MetadataView:
        return {
            "type": self.memory_type,
            "module": self.module,
            "version": self.version,
            "index": self.index,
            "tags": list(self.tags),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "indexed_at": iso(self.indexed_at),
            "expires_at": iso(self.expires_at),
        }

    def context(self) -> ContextView:
        return {"org_id": self.org_id, "user_id": self.user_id}


@dataclass(frozen=True)
class StoreOutcome:
    record: MemoryRecord
    created: bool  # False: an existing key of the organisation was updated


@dataclass(frozen=True)
class Criteria:
    """Which memories a read may return. ``types`` empty: any; tags: all must be present.

    Times are ``[created_after, created_before)``.
    """

    org_id: str
    user_id: str | None = None
    types: tuple[str, ...] = ()
    module: str | None = None
    tags: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class Hit:
    """One search result; ``score`` is higher-is-better on the backend's own scale."""

    record: MemoryRecord
    score: float
    highlights: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchiveReport:
    archived: int
    file: Path | None  # None when nothing matched: no empty archive files


class MemoryStore(Protocol):
    """A memory backend. Every method is a coroutine that never blocks the event loop."""

    @property
    def kind(self) -> str:
        """The backend's name for describe(): "embedded" or "memory_service"."""
        ...

    @property
    def semantic(self) -> SemanticStatus: ...

    async def open(self) -> None:
        """Prepare to serve; StartupError when this backend can never work as configured."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Readiness: return if the backend can serve, else raise MemoryUnavailable(reason)."""

    async def store(self, draft: MemoryDraft) -> StoreOutcome: ...

    async def keyword_search(
        self, criteria: Criteria, query: str, limit: int, *, highlights: bool
    ) -> list[Hit]: ...

    async def semantic_search(self, criteria: Criteria, query: str, limit: int) -> list[Hit]: ...

    async def recent(self, criteria: Criteria, limit: int) -> list[MemoryRecord]:
        """Memories matching ``criteria`` (a user and a window), newest first."""
        ...

    async def cleanup_expired(self) -> int:
        """Delete memories past their expiry; how many were deleted."""
        ...

    async def archive(self, before: datetime, org_id: str | None) -> ArchiveReport:
        """Move memories created before ``before`` (of one organisation, or all) to a file."""
        ...
