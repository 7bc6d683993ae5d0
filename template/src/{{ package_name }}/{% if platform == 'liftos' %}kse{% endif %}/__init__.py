"""KSE memory: the module's memories stored, searched and summarised (Lift OS).

MemoryService enforces module.json's kse_integration rules and tenancy over one
of two backends: an embedded SQLite + FTS5 file (default) or the platform's
memory service (MEMORY_SERVICE_URL).
"""

from __future__ import annotations

from .config import SEARCH_CAPABILITIES, KseConfig
from .embedded import EmbeddedStore
from .embedding import NO_EMBEDDER_REASON, Embedder
from .errors import MemoryUnavailable
from .models import (
    BatchStoreRequest,
    InsightsRequest,
    MemoryContext,
    SearchFilters,
    SearchRequest,
    StoreRequest,
)
from .remote import RemoteStore
from .service import MemoryService
from .store import MemoryStore

__all__ = [
    "NO_EMBEDDER_REASON",
    "SEARCH_CAPABILITIES",
    "BatchStoreRequest",
    "EmbeddedStore",
    "Embedder",
    "InsightsRequest",
    "KseConfig",
    "MemoryContext",
    "MemoryService",
    "MemoryStore",
    "MemoryUnavailable",
    "RemoteStore",
    "SearchFilters",
    "SearchRequest",
    "StoreRequest",
]
