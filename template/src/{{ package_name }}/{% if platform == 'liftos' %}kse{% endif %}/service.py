"""MemoryService: the memory layer the app calls, enforcing module.json's KSE rules.

Every refusal is a domain error with a one-line reason naming the rule (and
the module.json field where there is one):
  - a memory type must be declared in kse_integration.memory_types (422);
  - tenancy: a caller whose token carries an org_id claim may only name that
    organisation (403), and a read only ever returns the named organisation's
    memories (backends filter by it on every read);
  - search_capabilities: an undeclared mode is refused (422) and hybrid search
    runs only the declared legs; date filters need "temporal", a user filter
    (``context.user_id`` in a search) and insights need "contextual";
  - semantic search that is declared but unavailable (embedded backend without
    an embedder) is refused in mode "semantic" with the reason; hybrid search
    then runs keyword only and says so in ``semantic`` and ``weights``.
A memory's index is ``index_prefix + memory_type``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ..errors import ModuleError, PolicyViolation, RequestRejected
from .config import KseConfig
from .embedded import EmbeddedStore
from .insights import Evidence, confidence, summarise
from .models import (
    AppliedWeights,
    ArchiveResult,
    BatchItem,
    BatchResult,
    BatchStoreRequest,
    InsightsRequest,
    InsightsResult,
    SearchHit,
    SearchMode,
    SearchRequest,
    SearchResult,
    SemanticView,
    StoredMemory,
    StoreRequest,
    Weights,
)
from .remote import RemoteStore
from .search import Combination, applied_weights, combine
from .store import Criteria, Hit, MemoryDraft, MemoryRecord, MemoryStore
from .tags import merge_tags, sanitise_tag

FIELD = "module.json kse_integration"
# Hybrid search asks each leg for this many times ``limit`` candidates, so a
# memory ranked low by one leg but high by the other can still surface.
CANDIDATE_FACTOR = 2
# Insights look at no more than this many memories.
INSIGHTS_EVIDENCE = 100
MAX_ARCHIVE_DAYS = 36500


def _not_declared(capability: str, what: str) -> str:
    return f"{what} needs {capability!r}, which is not declared in {FIELD}.search_capabilities"


class MemoryService:
    """Stores, searches and summarises memories on one backend, under module.json's rules."""

    def __init__(self, config: KseConfig, backend: MemoryStore) -> None:
        self.config = config
        self.backend = backend

    @classmethod
    def from_config(
        cls, config: KseConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> MemoryService:
        """The memory service backend when ``service_url`` is set, else the embedded one.

        ``transport`` (tests) serves the memory service in-process.
        """
        backend: MemoryStore
        if config.service_url is not None:
            backend = RemoteStore(config, transport=transport)
        else:
            backend = EmbeddedStore(config)
        return cls(config, backend)

    # Lifecycle --------------------------------------------------------------
    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    async def check(self) -> None:
        """Readiness: MemoryUnavailable (503) with the reason when memories cannot be served."""
        await self.backend.check()

    @property
    def owns_lifecycle(self) -> bool:
        """Whether expiry and archiving are this module's job (the embedded store) or the
        memory service's."""
        return self.backend.kind == "embedded"

    def describe(self) -> dict[str, Any]:
        status = self.backend.semantic
        return {
            "backend": self.backend.kind,
            "module": self.config.module,
            "memory_types": list(self.config.memory_types),
            "search_capabilities": sorted(self.config.search_capabilities),
            "index_prefix": self.config.index_prefix,
            "semantic": {
                "declared": "semantic" in self.config.search_capabilities,
                "available": status.available,
                "reason": status.reason,
            },
        }

    # Rules ------------------------------------------------------------------
    def _check_type(self, memory_type: str) -> None:
        if memory_type not in self.config.memory_types:
            declared = ", ".join(self.config.memory_types)
            raise RequestRejected(
                f"memory type {memory_type!r} is not declared in {FIELD}.memory_types "
                f"(declared: {declared})"
            )

    @staticmethod
    def _check_org(org_id: str, org_claim: str | None) -> None:
        if org_claim is not None and org_id != org_claim:
            raise PolicyViolation(
                f"context.org_id {org_id!r} is not the caller's organisation (the token's "
                "org_id claim): memories of another organisation are out of reach"
            )

    def _declared(self, capability: str) -> bool:
        return capability in self.config.search_capabilities

    def _semantic_view(self) -> SemanticView:
        """Whether semantic search can serve a request here, and why not."""
        if not self._declared("semantic"):
            return {"available": False, "reason": _not_declared("semantic", "semantic search")}
        status = self.backend.semantic
        return {"available": status.available, "reason": status.reason}

    def _plan(self, mode: SearchMode, weights: Weights) -> tuple[tuple[str, ...], AppliedWeights]:
        """Which legs run for ``mode``, and their applied weights."""
        semantic = self._semantic_view()
        if mode == "keyword":
            if not self._declared("keyword"):
                raise RequestRejected(_not_declared("keyword", "mode 'keyword'"))
            legs: tuple[str, ...] = ("keyword",)
        elif mode == "semantic":
            if not semantic["available"]:
                raise RequestRejected(f"mode 'semantic' is unavailable: {semantic['reason']}")
            legs = ("semantic",)
        else:
            runnable = [
                leg
                for leg, ok in (
                    ("semantic", semantic["available"]),
                    ("keyword", self._declared("keyword")),
                )
                if ok
            ]
            if not runnable:
                raise RequestRejected(
                    f"hybrid search has nothing to run: {semantic['reason']}; and "
                    + _not_declared("keyword", "keyword search")
                )
            requested = {"semantic": weights.semantic, "keyword": weights.keyword}
            # Legs asked for weight 0 are skipped, unless that leaves nothing to run.
            legs = tuple(leg for leg in runnable if requested[leg] > 0) or tuple(runnable)
        return legs, applied_weights(weights.semantic, weights.keyword, legs)

    # Writes -----------------------------------------------------------------
    async def store(self, request: StoreRequest, *, org_claim: str | None) -> StoredMemory:
        self._check_type(request.memory_type)
        self._check_org(request.context.org_id, org_claim)
        draft = MemoryDraft(
            key=request.key,
            value=request.value,
            memory_type=request.memory_type,
            module=self.config.module,
            version=self.config.version,
            index=self.config.index_prefix + request.memory_type,
            tags=merge_tags(request.tags, request.value),
            org_id=request.context.org_id,
            user_id=request.context.user_id,
            ttl_seconds=request.ttl_seconds,
        )
        outcome = await self.backend.store(draft)
        record = outcome.record
        return {
            "memory_id": record.memory_id,
            "key": record.key,
            "index": record.index,
            "created": outcome.created,
            "metadata": record.metadata(),
            "context": record.context(),
        }

    async def store_batch(
        self, request: BatchStoreRequest, *, org_claim: str | None
    ) -> BatchResult:
        """Store every item, ``batch_size`` at a time; each item's outcome in request order.

        A refused item (undeclared type, another organisation, backend failure)
        fails alone; the others are stored.
        """
        limit = self.config.max_batch_items
        if len(request.items) > limit:
            raise RequestRejected(
                f"a batch may hold at most {limit} items (KSE max_batch_items); "
                f"this one has {len(request.items)}"
            )
        gate = asyncio.Semaphore(self.config.batch_size)

        async def one(index: int, item: StoreRequest) -> BatchItem:
            async with gate:
                try:
                    stored = await self.store(item, org_claim=org_claim)
                except ModuleError as exc:
                    return {
                        "index": index,
                        "key": item.key,
                        "status": "failed",
                        "error": exc.reason,
                    }
            return {
                "index": index,
                "key": item.key,
                "status": "stored",
                "memory_id": stored["memory_id"],
            }

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(i, item)) for i, item in enumerate(request.items)]
        items = [task.result() for task in tasks]
        stored = sum(1 for item in items if item["status"] == "stored")
        return {"stored": stored, "failed": len(items) - stored, "items": items}

    # Reads ------------------------------------------------------------------
    async def search(self, request: SearchRequest, *, org_claim: str | None) -> SearchResult:
        started = time.perf_counter()
        self._check_org(request.context.org_id, org_claim)
        filters = request.filters
        for memory_type in filters.types():
            self._check_type(memory_type)
        if filters.temporal and not self._declared("temporal"):
            raise RequestRejected(_not_declared("temporal", "a date filter"))
        if request.context.user_id is not None and not self._declared("contextual"):
            raise RequestRejected(_not_declared("contextual", "a user filter (context.user_id)"))
        tags = tuple(dict.fromkeys(sanitise_tag(tag) for tag in filters.tags or ()))
        if "" in tags:
            raise RequestRejected("filters.tags: a tag needs letters or digits")
        after, before = filters.window()
        criteria = Criteria(
            org_id=request.context.org_id,
            user_id=request.context.user_id,
            types=filters.types(),
            module=filters.module,
            tags=tags,
            created_after=after,
            created_before=before,
        )
        legs, weights = self._plan(request.mode, request.weights)
        combination, hits = await self._run(
            criteria, request.query, legs, weights, request.limit, request.include_highlights
        )
        results: list[SearchHit] = []
        for ranked in combination.ranked:
            found = hits[ranked.memory_id]
            record = found[0].record
            highlights = [text for hit in found for text in hit.highlights]
            results.append(
                {
                    "memory_id": record.memory_id,
                    "key": record.key,
                    "value": record.value,
                    "metadata": record.metadata(),
                    "context": record.context(),
                    "score": round(ranked.score, 6),
                    "scores": {
                        "semantic": _round(ranked.semantic),
                        "keyword": _round(ranked.keyword),
                    },
                    # Unique, keyword ones first; none unless asked for.
                    "highlights": list(dict.fromkeys(highlights))
                    if request.include_highlights
                    else [],
                }
            )
        return {
            "results": results,
            "total": combination.total,
            "query_time": round(time.perf_counter() - started, 6),
            "mode": request.mode,
            "modes_used": list(legs),
            "weights": weights,
            "semantic": self._semantic_view(),
        }

    async def _run(
        self,
        criteria: Criteria,
        query: str,
        legs: Sequence[str],
        weights: AppliedWeights,
        limit: int,
        highlights: bool,
    ) -> tuple[Combination, dict[str, list[Hit]]]:
        """Run the legs concurrently and combine them; also every hit by memory_id."""
        pool = limit * CANDIDATE_FACTOR if len(legs) > 1 else limit
        calls: list[Coroutine[Any, Any, list[Hit]]] = []
        for leg in legs:
            if leg == "keyword":
                calls.append(
                    self.backend.keyword_search(criteria, query, pool, highlights=highlights)
                )
            else:
                calls.append(self.backend.semantic_search(criteria, query, pool))
        # Every leg finishes before a failure is raised: none is left running unobserved.
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        found: dict[str, list[Hit]] = {}
        for leg, outcome in zip(legs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            found[leg] = outcome
        by_id: dict[str, list[Hit]] = {}
        # Keyword hits first: their highlights come first.
        for leg in ("keyword", "semantic"):
            for hit in found.get(leg, []):
                by_id.setdefault(hit.record.memory_id, []).append(hit)

        def scored(leg: str) -> list[tuple[str, float]]:
            return [(hit.record.memory_id, hit.score) for hit in found.get(leg, [])]

        combination = combine(scored("semantic"), scored("keyword"), weights, limit)
        return combination, by_id

    async def insights(self, request: InsightsRequest, *, org_claim: str | None) -> InsightsResult:
        """Aggregate one user's memories of the last ``days`` days, with a confidence score.

        With a query, the memories are a hybrid search restricted to the user and
        the window (relevance: the search score); without one, the user's newest
        memories in the window (relevance 1.0). At most INSIGHTS_EVIDENCE.
        """
        if not self._declared("contextual"):
            raise RequestRejected(_not_declared("contextual", "insights"))
        context = request.context
        self._check_org(context.org_id, org_claim)
        if request.memory_type is not None:
            self._check_type(request.memory_type)
        now = datetime.fromtimestamp(self.config.clock(), UTC)
        since = now - timedelta(days=request.days)
        criteria = Criteria(
            org_id=context.org_id,
            user_id=context.user_id,
            types=(request.memory_type,) if request.memory_type is not None else (),
            created_after=since,
        )
        pairs: list[tuple[MemoryRecord, float]]
        if request.query is None:
            records = await self.backend.recent(criteria, INSIGHTS_EVIDENCE)
            pairs = [(record, 1.0) for record in records]
        else:
            legs, weights = self._plan("hybrid", Weights())
            combination, hits = await self._run(
                criteria, request.query, legs, weights, INSIGHTS_EVIDENCE, False
            )
            pairs = [
                (hits[ranked.memory_id][0].record, ranked.score) for ranked in combination.ranked
            ]
        evidence = [
            Evidence(
                memory_id=record.memory_id,
                memory_type=record.memory_type,
                module=record.module,
                tags=record.tags,
                created_at=record.created_at,
                relevance=relevance,
            )
            for record, relevance in pairs
        ]
        return {
            "user_id": context.user_id,
            "org_id": context.org_id,
            "insight_type": request.insight_type,
            "window": {"days": request.days, "start": since.isoformat(), "end": now.isoformat()},
            "insights": summarise(evidence),
            "evidence": [item.memory_id for item in evidence],
            "confidence_score": confidence(evidence),
            "generated_at": now.isoformat(),
        }

    # Maintenance (operators, not callers) -------------------------------------
    async def cleanup_expired(self) -> int:
        """Delete expired memories now; how many. (Expired ones are already invisible.)"""
        return await self.backend.cleanup_expired()

    async def archive(self, older_than_days: int, org_id: str | None = None) -> ArchiveResult:
        """Move memories created more than ``older_than_days`` ago to a file in archive_dir."""
        if not 1 <= older_than_days <= MAX_ARCHIVE_DAYS:
            raise RequestRejected(
                f"older_than_days must be between 1 and {MAX_ARCHIVE_DAYS}, not {older_than_days}"
            )
        before = datetime.fromtimestamp(self.config.clock(), UTC) - timedelta(days=older_than_days)
        report = await self.backend.archive(before, org_id)
        return {
            "archived": report.archived,
            "file": str(report.file) if report.file is not None else None,
            "before": before.isoformat(),
        }


def _round(value: float | None) -> float | None:
    return round(value, 6) if value is not None else None
