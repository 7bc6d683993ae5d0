"""The memory-service backend: the platform's KSE memory service over HTTP.

Contract (the platform's integration guide):
  POST {MEMORY_SERVICE_URL}/memory/store  {key, value, metadata: {type, module, version,
       indexed_at, tags, index[, expires_at]}, context: {org_id[, user_id]}}
       -> 201 (or 200 for an update) {"memory_id": "..."}
  POST {MEMORY_SERVICE_URL}/memory/search {query, context, filters, limit,
       include_highlights, search_type: "semantic"|"keyword"}
       -> 200 {"results": [{"memory_id", "score", ...}], "total", "query_time"}
Both carry ``Authorization: Bearer <token>`` when a token is configured.

Transport errors and 429/502/503/504 are retried with back-off; a store is
safe to retry because a key is stored once per organisation (a repeat
updates). When retries run out the caller gets MemoryUnavailable (503) naming
the URL. The service's other 4xx answers are the caller's problem: 422 with
the service's message, except 401/403, which mean this module's own token is
wrong (503: no caller can fix that).

Tenancy holds even if the service misbehaves: a result whose context is not
the request's organisation (or user, when one was asked for) is dropped.

The service owns the memory lifecycle, so clean-up and archiving are refused,
and ``recent`` is refused too: the guide has no listing endpoint, and a made-up
query would return an arbitrary subset passed off as "the user's memories".
Insights therefore need a query with this backend.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import RequestRejected, StartupError
from ..retry import backoff_delays
from ..tls import client_context
from .config import KseConfig
from .errors import MemoryUnavailable
from .store import (
    ArchiveReport,
    Criteria,
    Hit,
    MemoryDraft,
    MemoryRecord,
    SemanticStatus,
    StoreOutcome,
)

logger = logging.getLogger(__name__)

STORE_PATH = "/memory/store"
SEARCH_PATH = "/memory/search"
# The guide's health check: a one-result search in a system context.
HEALTH_SEARCH: dict[str, Any] = {
    "query": "health check test",
    "context": {"user_id": "health_check", "org_id": "system"},
    "limit": 1,
}
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_MAX_SECONDS = 5.0
_MESSAGE_CHARS = 200
LIFECYCLE_REASON = (
    "the memory service owns the memory lifecycle (expiry and archiving): "
    "this module cannot clean up or archive its memories"
)
RECENT_REASON = (
    "listing a user's memories needs the embedded backend: the memory service can only "
    "search, so give insights a 'query'"
)


def _message(response: httpx.Response) -> str:
    """The service's own explanation, one line, truncated."""
    text = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("detail", "error", "message"):
            if isinstance(body.get(field), str):
                text = body[field]
                break
    if not text:
        text = response.text
    text = " ".join(text.split())
    if len(text) > _MESSAGE_CHARS:
        text = text[: _MESSAGE_CHARS - 1] + "…"
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _context(criteria: Criteria) -> dict[str, str]:
    context = {"org_id": criteria.org_id}
    if criteria.user_id is not None:
        context["user_id"] = criteria.user_id
    return context


def _filters(criteria: Criteria) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if criteria.types:
        filters["type"] = criteria.types[0] if len(criteria.types) == 1 else list(criteria.types)
    if criteria.module is not None:
        filters["module"] = criteria.module
    if criteria.tags:
        filters["tags"] = list(criteria.tags)
    if criteria.created_after is not None:
        filters["created_after"] = criteria.created_after.isoformat()
    if criteria.created_before is not None:
        filters["created_before"] = criteria.created_before.isoformat()
    return filters


class RemoteStore:
    """MemoryStore backed by the memory service; one pooled client for every call."""

    kind = "memory_service"

    def __init__(
        self, config: KseConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if config.service_url is None:
            raise StartupError("the memory service backend needs MEMORY_SERVICE_URL")
        self.url = config.service_url.rstrip("/")
        self._config = config
        self._transport = transport  # tests serve the service in-process
        self._client: httpx.AsyncClient | None = None

    @property
    def semantic(self) -> SemanticStatus:
        return SemanticStatus(available=True)  # the service embeds

    async def open(self) -> None:
        # Created here, inside the event loop; the service may be down now: /ready says so.
        if self._client is not None:
            return
        headers = {"Accept": "application/json"}
        if self._config.service_token:
            headers["Authorization"] = f"Bearer {self._config.service_token}"
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=self._config.timeout_seconds,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            transport=self._transport,
            verify=client_context(),
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _post(self, path: str, body: dict[str, Any], *, retries: int) -> httpx.Response:
        """POST, retrying transport errors and RETRY_STATUSES; a final answer otherwise."""
        client = self._client
        if client is None:
            raise MemoryUnavailable(f"the memory service client for {self.url} is not open")
        delays = backoff_delays(self._config.retry_initial_seconds, RETRY_MAX_SECONDS)
        attempts = retries + 1
        for attempt in range(1, attempts + 1):
            try:
                response = await client.post(path, json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = _message(response)
            if attempt < attempts:
                delay = next(delays)
                logger.debug("memory service %s%s: %s; retrying", self.url, path, problem)
                await asyncio.sleep(delay)
        raise MemoryUnavailable(
            f"the memory service at {self.url} cannot answer ({problem}; "
            f"{attempts} attempt{'s' if attempts > 1 else ''})"
        )

    def _answer(self, response: httpx.Response, expected: tuple[int, ...]) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            raise MemoryUnavailable(
                f"the memory service at {self.url} refused this module's credentials "
                f"({_message(response)}): check the memory service token"
            )
        if 400 <= status < 500:
            raise RequestRejected(f"the memory service refused the request: {_message(response)}")
        if status not in expected:
            raise MemoryUnavailable(
                f"the memory service at {self.url} failed: {_message(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise MemoryUnavailable(f"the memory service at {self.url} answered without JSON")
        return body

    async def check(self) -> None:
        # One try: a readiness probe must answer quickly, and the next probe retries.
        response = await self._post(SEARCH_PATH, HEALTH_SEARCH, retries=0)
        if response.status_code != 200:
            raise MemoryUnavailable(
                f"the memory service at {self.url} failed its health search: {_message(response)}"
            )

    async def store(self, draft: MemoryDraft) -> StoreOutcome:
        now = self._config.clock()
        expires = now + draft.ttl_seconds if draft.ttl_seconds is not None else None
        metadata: dict[str, Any] = {
            "type": draft.memory_type,
            "module": draft.module,
            "version": draft.version,
            "indexed_at": datetime.fromtimestamp(now, UTC).isoformat(),
            "tags": list(draft.tags),
            "index": draft.index,
        }
        if expires is not None:
            metadata["expires_at"] = datetime.fromtimestamp(expires, UTC).isoformat()
        context = _context(Criteria(org_id=draft.org_id, user_id=draft.user_id))
        body = {"key": draft.key, "value": draft.value, "metadata": metadata, "context": context}
        response = await self._post(STORE_PATH, body, retries=self._config.retry_attempts)
        answer = self._answer(response, (200, 201))
        memory_id = answer.get("memory_id")
        if not isinstance(memory_id, str) or not memory_id:
            raise MemoryUnavailable(
                f"the memory service at {self.url} stored the memory but sent no memory_id"
            )
        created = response.status_code == 201
        record = draft.stored(
            memory_id,
            created_at=now if created else None,  # an update's creation time is unknown
            stored_at=now,
            expires_at=expires,
        )
        return StoreOutcome(record=record, created=created)

    async def keyword_search(
        self, criteria: Criteria, query: str, limit: int, *, highlights: bool
    ) -> list[Hit]:
        return await self._search("keyword", criteria, query, limit, highlights)

    async def semantic_search(self, criteria: Criteria, query: str, limit: int) -> list[Hit]:
        return await self._search("semantic", criteria, query, limit, False)

    async def _search(
        self, search_type: str, criteria: Criteria, query: str, limit: int, highlights: bool
    ) -> list[Hit]:
        body = {
            "query": query,
            "context": _context(criteria),
            "filters": _filters(criteria),
            "limit": limit,
            "include_highlights": highlights,
            "search_type": search_type,
        }
        response = await self._post(SEARCH_PATH, body, retries=self._config.retry_attempts)
        results = self._answer(response, (200,)).get("results")
        if not isinstance(results, list):
            raise MemoryUnavailable(
                f"the memory service at {self.url} answered a search without a results list"
            )
        hits: list[Hit] = []
        dropped = 0
        for item in results:
            hit = self._hit(item, criteria)
            if hit is None:
                dropped += 1
            else:
                hits.append(hit)
        if dropped:
            logger.warning(
                "memory service %s returned %d result(s) outside the request's context or "
                "without a memory_id; they were dropped",
                self.url,
                dropped,
            )
        return hits[:limit]

    @staticmethod
    def _hit(item: object, criteria: Criteria) -> Hit | None:
        """One result mapped to a Hit; None when it is malformed or not the caller's."""
        if not isinstance(item, dict):
            return None
        memory_id = item.get("memory_id")
        context = item.get("context")
        if not isinstance(memory_id, str) or not memory_id or not isinstance(context, dict):
            return None
        # Tenancy: an unverifiable organisation is as foreign as a wrong one.
        if context.get("org_id") != criteria.org_id:
            return None
        user_id = context.get("user_id")
        if criteria.user_id is not None and user_id != criteria.user_id:
            return None
        metadata = item.get("metadata")
        meta: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
        tags = meta.get("tags")
        value = item.get("value")
        score = item.get("score")
        highlights = item.get("highlights")
        record = MemoryRecord(
            memory_id=memory_id,
            key=_text(item.get("key")),
            value=value if isinstance(value, dict) else {},
            memory_type=_text(meta.get("type")),
            module=_text(meta.get("module")),
            version=_text(meta.get("version")),
            index=_text(meta.get("index")),
            tags=tuple(tag for tag in tags if isinstance(tag, str))
            if isinstance(tags, list)
            else (),
            org_id=criteria.org_id,
            user_id=user_id if isinstance(user_id, str) else None,
            created_at=_time(meta.get("created_at")),
            updated_at=_time(meta.get("updated_at")),
            indexed_at=_time(meta.get("indexed_at")),
            expires_at=_time(meta.get("expires_at")),
        )
        number = (
            float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0
        )
        return Hit(
            record=record,
            score=number if math.isfinite(number) else 0.0,
            highlights=tuple(text for text in highlights if isinstance(text, str))
            if isinstance(highlights, list)
            else (),
        )

    async def recent(self, criteria: Criteria, limit: int) -> list[MemoryRecord]:
        raise RequestRejected(RECENT_REASON)

    async def cleanup_expired(self) -> int:
        raise RequestRejected(LIFECYCLE_REASON)

    async def archive(self, before: datetime, org_id: str | None) -> ArchiveReport:
        raise RequestRejected(LIFECYCLE_REASON)
